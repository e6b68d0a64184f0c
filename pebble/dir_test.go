package pebble

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pdb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tccd/tccd"
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

// The store TestDamagedDirectory damages: tableIDs transactions written
// and the store closed (into a table file), then reopened, logIDs more
// written, only in the write-ahead log, and the store left without a
// flush, as a crash leaves it. Every write is synced.
const (
	tableIDs = 200
	logIDs   = 100
)

func crashedStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var s *Store
	open := func() {
		var err error
		if s, err = Open(dir, Options{CacheSize: 1 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	create := func(from, n int) {
		for i := from; i < from+n; i++ {
			tx := &tccd.Transaction{ID: fmt.Sprintf("x%03d", i), State: tccd.StateConfirming, CreatedAt: time.Now()}
			if err := s.Create(t.Context(), tx, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	open()
	create(0, tableIDs)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	open()
	create(tableIDs, logIDs)
	// Store.Close would flush the log into a table; Pebble's Close does
	// not.
	s.stopFilter()
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	s.dirLock.Close()
	s.cache.Unref()
	return dir
}

// TestDamagedDirectory deletes or truncates each kind of file of a data
// directory and records what Open does: refuse with a *DamagedError that
// says what happened, or open — with everything, or silently without the
// writes of a damaged log. docs/RELIABILITY.md ("Damaged data directory")
// states these results.
func TestDamagedDirectory(t *testing.T) {
	// Each picks the files of one kind in dir.
	current := func(dir string) []string {
		d, err := pdb.Peek(dir, vfs.Default)
		if err != nil || !d.Exists {
			t.Fatalf("peek: %v", err)
		}
		return []string{filepath.Base(d.ManifestFilename)}
	}
	matching := func(pattern string) func(string) []string {
		return func(dir string) []string {
			m, _ := filepath.Glob(filepath.Join(dir, pattern))
			for i := range m {
				m[i] = filepath.Base(m[i])
			}
			return m
		}
	}
	older := func(dir string) []string {
		var out []string
		for _, n := range matching("MANIFEST-*")(dir) {
			if n != current(dir)[0] {
				out = append(out, n)
			}
		}
		return out
	}
	const all = tableIDs + logIDs
	for _, tc := range []struct {
		files   string
		pick    func(dir string) []string
		how     string // delete, empty, half, tail (cut 8 bytes off the end)
		refused string // in the DamagedError's message; "" when Open succeeds
		kept    int    // when Open succeeds: how many are there; -1: some of the log's lost
	}{
		{"current MANIFEST", current, "delete", "is missing: it was deleted", 0},
		{"current MANIFEST", current, "empty", "is empty: it was truncated", 0},
		// The current MANIFEST holds a large first record and a small
		// last one (measured: cuts up to byte 92 of 110 are refused): a
		// cut in the first is refused, one in the last is taken for a
		// crash's torn write and what comes before it read.
		{"current MANIFEST", current, "half", "malformed manifest", 0},
		{"current MANIFEST", current, "tail", "", all},
		{"older MANIFEST", older, "delete", "", all},
		{"marker.manifest", matching("marker.manifest.*"), "delete", "marker naming its current MANIFEST", 0},
		{"marker.format-version", matching("marker.format-version.*"), "delete", "marker of its format version", 0},
		{"write-ahead log", matching("*.log"), "delete", "write-ahead log (*.log) is missing", 0},
		{"write-ahead log", matching("*.log"), "empty", "", tableIDs},
		{"write-ahead log", matching("*.log"), "half", "", -1},
		{"table", matching("*.sst"), "delete", "missing", 0},
		{"table", matching("*.sst"), "empty", "table file (*.sst) truncated", 0},
		{"table", matching("*.sst"), "half", "table file (*.sst) truncated", 0},
		{"OPTIONS", matching("OPTIONS-*"), "delete", "", all},
		{"OPTIONS", matching("OPTIONS-*"), "empty", "", all},
		{"OPTIONS", matching("OPTIONS-*"), "half", "damaged", 0},
		{"LOCK", matching("LOCK"), "delete", "", all},
	} {
		t.Run(tc.how+" "+tc.files, func(t *testing.T) {
			dir := crashedStore(t)
			files := tc.pick(dir)
			if len(files) == 0 {
				t.Fatalf("no %s file", tc.files)
			}
			for _, f := range files {
				p := filepath.Join(dir, f)
				var err error
				switch tc.how {
				case "delete":
					err = os.Remove(p)
				case "empty":
					err = os.Truncate(p, 0)
				case "half":
					var st os.FileInfo
					if st, err = os.Stat(p); err == nil {
						err = os.Truncate(p, st.Size()/2)
					}
				case "tail":
					var st os.FileInfo
					if st, err = os.Stat(p); err == nil {
						err = os.Truncate(p, st.Size()-8)
					}
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(dir, Options{CacheSize: 1 << 20})
			if tc.refused != "" {
				var damaged *DamagedError
				if !errors.As(err, &damaged) || !strings.Contains(err.Error(), tc.refused) || !strings.Contains(err.Error(), "Restore the directory from a backup") {
					if err == nil {
						s.Close()
					}
					t.Fatalf("Open = %v, want a DamagedError saying %q", err, tc.refused)
				}
				t.Logf("%s", err)
				return
			}
			if err != nil {
				t.Fatalf("Open = %v, want it to open", err)
			}
			defer s.Close()
			// What is there is a prefix of what was written (the log is
			// read up to where it ends).
			kept := 0
			for i := range all {
				_, err := s.Get(t.Context(), fmt.Sprintf("x%03d", i))
				switch {
				case err == nil && kept == i:
					kept++
				case err == nil:
					t.Fatalf("x%03d is there but x%03d is not", i, kept)
				case tccd.ErrorCode(err) != tccd.ENotFound:
					t.Fatal(err)
				}
			}
			if tc.kept >= 0 && kept != tc.kept || tc.kept < 0 && (kept <= tableIDs || kept >= all) {
				t.Fatalf("%d of %d transactions there after Open, want %d", kept, all, tc.kept)
			}
			t.Logf("opens, %d of %d synced transactions there", kept, all)
		})
	}
}
