package pebble

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"strings"
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

// DamagedError is what Open returns when files of the data directory are
// missing or damaged — deleted or truncated by hand, or by a failing disk
// — as far as Open can tell: docs/RELIABILITY.md ("Damaged data
// directory") says what each kind of damage does, and which Open cannot
// see.
type DamagedError struct {
	Dir    string // the data directory
	Detail string // what is wrong, in words
	Err    error  // what Pebble said, when Pebble found it
}

func (e *DamagedError) Error() string {
	msg := fmt.Sprintf("data directory %s is damaged: %s", e.Dir, e.Detail)
	if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	return msg + ". " + damagedAdvice
}

func (e *DamagedError) Unwrap() error { return e.Err }

// damagedAdvice is what to do about a DamagedError.
const damagedAdvice = "Do not start tccd on it as it is. Restore the directory from a backup " +
	"taken while tccd was stopped; or move it aside and start on an empty one, and settle by hand " +
	"the participants of the transactions that were in flight in it: tccd will not finish them " +
	"(docs/RELIABILITY.md, \"Damaged data directory\")"

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

// inspect looks, before Pebble opens dir, for damage that Pebble does not
// report, or reports in its own terms: a marker file deleted, the current
// MANIFEST deleted or emptied, the write-ahead log deleted. Pebble would open a directory without its log, silently
// without the writes the log held (synced decisions among them): every
// store that Pebble has opened has a log (the current one, perhaps
// empty), so none means one was deleted.
func inspect(fs vfs.FS, dir string) error {
	names, err := fs.List(dir)
	if err != nil {
		return fmt.Errorf("list data directory %s: %w", dir, err)
	}
	var logs, others, formats int
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, "marker.format-version."):
			formats++
		case strings.HasSuffix(n, ".log"):
			logs++
		case strings.HasSuffix(n, ".sst"), strings.HasPrefix(n, "MANIFEST-"):
			others++
		}
	}
	desc, err := pdb.Peek(dir, fs)
	if err != nil {
		return &DamagedError{Dir: dir, Detail: "its marker files cannot be read", Err: err}
	}
	if !desc.Exists {
		if logs+others > 0 {
			return &DamagedError{Dir: dir, Detail: "the marker naming its current MANIFEST (marker.manifest.*) is missing, " +
				"though other files of the log are there: it was deleted"}
		}
		return nil // a new store
	}
	if formats == 0 {
		// Pebble would say only that the directory is "not pristine".
		return &DamagedError{Dir: dir, Detail: "the marker of its format version (marker.format-version.*) is missing: it was deleted"}
	}
	manifest := fs.PathBase(desc.ManifestFilename)
	st, err := fs.Stat(desc.ManifestFilename)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return &DamagedError{Dir: dir, Detail: manifest + ", the list of the log's table files, is missing: it was deleted"}
	case err != nil:
		return fmt.Errorf("data directory %s: %w", dir, err)
	case st.Size() == 0:
		return &DamagedError{Dir: dir, Detail: manifest + ", the list of the log's table files, is empty: it was truncated"}
	}
	if logs == 0 {
		return &DamagedError{Dir: dir, Detail: "its write-ahead log (*.log) is missing: it was deleted, " +
			"and with it the latest writes, decisions among them"}
	}
	return nil
}

// openError explains an error of Pebble's Open: a file missing or damaged
// is a DamagedError.
func openError(dir string, err error) error {
	switch {
	case pdb.IsCorruptionError(err):
		return &DamagedError{Dir: dir, Detail: "Pebble found a file of the log damaged", Err: err}
	case errors.Is(err, iofs.ErrNotExist):
		return &DamagedError{Dir: dir, Detail: "Pebble found a file of the log missing", Err: err}
	case strings.Contains(err.Error(), "object size mismatch"):
		// A table file shorter than the MANIFEST says; Pebble marks the
		// error neither as corruption nor otherwise.
		return &DamagedError{Dir: dir, Detail: "Pebble found a table file (*.sst) truncated", Err: err}
	}
	return fmt.Errorf("open store %s: %w", dir, err)
}
