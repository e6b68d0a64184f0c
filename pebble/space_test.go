package pebble

import (
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tccd/tccd"
)

// TestSpaceGuard: with a reserve larger than any disk, every write is
// refused with a clear unavailable error; without one, writes pass.
func TestSpaceGuard(t *testing.T) {
	dir := t.TempDir()
	g := spaceGuard{fs: vfs.Default, dir: dir, min: 1 << 62}
	err := g.check()
	if tccd.ErrorCode(err) != tccd.EUnavailable || !strings.Contains(tccd.ErrorMessage(err), "nearly full") {
		t.Fatalf("check = %v", err)
	}
	g.min = 1
	g.checked = time.Time{}
	if err := g.check(); err != nil {
		t.Fatalf("check with space = %v", err)
	}
	off := spaceGuard{fs: vfs.Default, dir: dir}
	if err := off.check(); err != nil {
		t.Fatalf("no reserve: %v", err)
	}
	if err := (&spaceGuard{fs: vfs.Default, dir: dir + "/missing", min: 1}).check(); tccd.ErrorCode(err) != tccd.EUnavailable {
		t.Fatalf("unmeasurable disk: %v", err)
	}
}

// TestStoreRefusesWritesBelowReserve: a store whose reserve cannot be met
// refuses Create and Update, and stored state is unchanged.
func TestStoreRefusesWritesBelowReserve(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	tx := &tccd.Transaction{ID: "x", State: tccd.StateActive, CreatedAt: time.Now()}
	if err := s.Create(t.Context(), tx, true); err != nil {
		t.Fatal(err)
	}
	s.space = spaceGuard{fs: vfs.Default, dir: dir, min: 1 << 62}
	next := tx.Clone()
	next.State = tccd.StateConfirming
	if err := s.Update(t.Context(), next, true); tccd.ErrorCode(err) != tccd.EUnavailable {
		t.Fatalf("Update = %v", err)
	}
	if err := s.Create(t.Context(), &tccd.Transaction{ID: "y", State: tccd.StateActive}, true); tccd.ErrorCode(err) != tccd.EUnavailable {
		t.Fatalf("Create = %v", err)
	}
	got, err := s.Get(t.Context(), "x")
	if err != nil || got.State != tccd.StateActive || got.Version != 1 {
		t.Fatalf("stored state changed: %+v %v", got, err)
	}
	s.space.min = 0
	if err := s.Update(t.Context(), next, true); err != nil {
		t.Fatalf("after space returned: %v", err)
	}
	s.Close()
}
