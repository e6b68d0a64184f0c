package pebble

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestOpenInUse: a second Open of a directory that is open fails with an
// *InUseError naming the directory and its lock, on the real disk and in
// memory; once the first store is closed the directory opens again.
func TestOpenInUse(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, Options{CacheSize: 1 << 20})
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.Dir != dir || inUse.Lock != filepath.Join(dir, "LOCK") {
		t.Fatalf("second Open = %v, want an InUseError on %s", err, dir)
	}
	want := fmt.Sprintf("data directory %s is in use by another tccd (lock %s)", dir, filepath.Join(dir, "LOCK"))
	if err.Error() != want {
		t.Fatalf("second Open = %q, want %q", err, want)
	}
	// The lock on the directory itself holds even when LOCK is gone (a
	// second process would get past Pebble's lock then; this process's
	// Pebble keeps its own table of locks, so the directory's is tried
	// directly).
	if err := os.Remove(filepath.Join(dir, "LOCK")); err != nil {
		t.Fatal(err)
	}
	if f, err := flockDir(dir); !errors.As(err, &inUse) || inUse.Lock != dir || !strings.Contains(err.Error(), "LOCK file was deleted") {
		if f != nil {
			f.Close()
		}
		t.Fatalf("flock of the directory in use = %v, want an InUseError on the directory", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s.Close()

	fs := vfs.NewMem()
	m, err := Open("db", Options{CacheSize: 1 << 20, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := Open("db", Options{CacheSize: 1 << 20, FS: fs}); !errors.As(err, &inUse) {
		t.Fatalf("second Open in memory = %v, want an InUseError", err)
	}
}
