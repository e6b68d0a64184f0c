package pebble

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"syscall"

	pdb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// InUseError is what Open returns when another process — another tccd —
// holds the data directory, or another Store of this process does: the
// directory's lock is taken. One transaction log has one writer.
type InUseError struct {
	Dir  string // the data directory
	Lock string // the lock taken: its LOCK file, or the directory itself
	Note string // what else is known, or ""
	Err  error  // the error of the lock
}

func (e *InUseError) Error() string {
	msg := fmt.Sprintf("data directory %s is in use by another tccd (lock %s)", e.Dir, e.Lock)
	if e.Note != "" {
		msg += ": " + e.Note
	}
	return msg
}

func (e *InUseError) Unwrap() error { return e.Err }

// lockDir creates dir if needed and takes Pebble's lock on it, which Open
// hands to Pebble: the checks before Pebble opens the directory run under
// it too, while no other tccd can change the files. On the real disk it
// also takes flock(2) on the directory itself (see flockDir).
func lockDir(fs vfs.FS, dir string) (*dirLocks, error) {
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	l, err := pdb.LockDirectory(dir, fs)
	if err != nil {
		// Told apart from a held lock: a lock file that cannot be made
		// (permissions, a read-only disk) and the other errors of fcntl.
		var pe *iofs.PathError
		var errno syscall.Errno
		if errors.As(err, &pe) || (errors.As(err, &errno) && errno != syscall.EAGAIN && errno != syscall.EACCES) {
			return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
		}
		// EAGAIN or EACCES from fcntl: another process has it; or Pebble's
		// own refusal of a second lock within this process.
		return nil, &InUseError{Dir: dir, Lock: fs.PathJoin(dir, "LOCK"), Err: err}
	}
	locks := &dirLocks{pebble: l}
	if fs == vfs.Default {
		if locks.dir, err = flockDir(dir); err != nil {
			l.Close()
			return nil, err
		}
	}
	return locks, nil
}

// dirLocks are the locks a Store holds on its directory.
type dirLocks struct {
	pebble *pdb.Lock // on the LOCK file; handed to Pebble
	dir    *os.File  // with flock on it, or nil
}

// Close releases the locks; Pebble must have closed the database first.
func (l *dirLocks) Close() error {
	err := l.pebble.Close()
	if l.dir != nil {
		if cerr := l.dir.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// flockDir takes flock(2) on the directory itself, as well as Pebble's
// lock. Pebble's lock is on a file, LOCK: deleted while tccd runs, it lets
// a second tccd lock a new LOCK and open the same log (measured), and two
// writers corrupt it. A directory cannot be replaced so while tccd is in
// it. On a file system without flock Pebble's lock is all there is.
func flockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &InUseError{Dir: dir, Lock: dir, Err: err,
				Note: "its LOCK file was deleted or replaced while the other tccd runs; stop that one first"}
		}
		return nil, nil
	}
	return f, nil
}
