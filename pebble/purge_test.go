package pebble

import (
	"testing"
	"time"

	pdb "github.com/cockroachdb/pebble/v2"

	"github.com/tccd/tccd"
)

// TestPurgeStaleIndexEntry: an entry of the finished index that does not
// match its record (left by an earlier end time) is dropped without being
// counted, and the record, finished later, stays.
func TestPurgeStaleIndexEntry(t *testing.T) {
	s, err := Open(t.TempDir(), Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tx := &tccd.Transaction{ID: "x", State: tccd.StateConfirmed, CreatedAt: base, FinishedAt: base.Add(time.Hour)}
	if err := s.Create(ctx, tx, false); err != nil {
		t.Fatal(err)
	}
	stale := finishedKey(nanos(base.Add(time.Minute)), "x")
	if err := s.db.Set(stale, nil, pdb.Sync); err != nil {
		t.Fatal(err)
	}
	n, err := s.Purge(ctx, base.Add(30*time.Minute), 10)
	if err != nil || n != 0 {
		t.Fatalf("Purge = %d, %v; want 0 (the entry is stale)", n, err)
	}
	if _, closer, err := s.db.Get(stale); err == nil {
		closer.Close()
		t.Fatal("the stale index entry is still there")
	}
	if _, err := s.Get(ctx, "x"); err != nil {
		t.Fatalf("the record was purged with a stale entry: %v", err)
	}
	n, err = s.Purge(ctx, base.Add(2*time.Hour), 10)
	if err != nil || n != 1 {
		t.Fatalf("Purge past its end = %d, %v; want 1", n, err)
	}
	if _, err := s.Get(ctx, "x"); tccd.ErrorCode(err) != tccd.ENotFound {
		t.Fatalf("after purge: %v", err)
	}
}
