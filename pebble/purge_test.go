package pebble

import (
	"testing"
	"time"

	pdb "github.com/cockroachdb/pebble/v2"

	"github.com/tccd/tccd"
)

// TestPurgePassesOverLaterFinish: purge walks the final states by creation
// time up to the cutoff; a transaction created before it but finished
// after it stays, and one behind it in that order is still purged.
func TestPurgePassesOverLaterFinish(t *testing.T) {
	s, err := Open(t.TempDir(), Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	late := &tccd.Transaction{ID: "late", State: tccd.StateConfirmed, CreatedAt: base, FinishedAt: base.Add(time.Hour)}
	early := &tccd.Transaction{ID: "early", State: tccd.StateConfirmed, CreatedAt: base.Add(time.Minute), FinishedAt: base.Add(2 * time.Minute)}
	for _, tx := range []*tccd.Transaction{late, early} {
		createFinal(t, s, tx)
	}
	n, err := s.Purge(ctx, base.Add(30*time.Minute), 10)
	if err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want 1", n, err)
	}
	if _, err := s.Get(ctx, "late"); err != nil {
		t.Fatalf("the transaction that finished after the cutoff was purged: %v", err)
	}
	if _, err := s.Get(ctx, "early"); tccd.ErrorCode(err) != tccd.ENotFound {
		t.Fatalf("Get(early) = %v, want ENotFound", err)
	}
}

// TestOpenDropsOldIndexes: the c/ and f/ index keys of the earlier layout
// are deleted when a store is opened; the records and the state index stay.
func TestOpenDropsOldIndexes(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tx := &tccd.Transaction{ID: "x", State: tccd.StateConfirmed, CreatedAt: base, FinishedAt: base.Add(time.Second)}
	createFinal(t, s, tx)
	old := [][]byte{
		append(be64([]byte(oldPfxCreated), nanos(base)), "x"...),
		append(be64([]byte(oldPfxFinished), nanos(base.Add(time.Second))), "x"...),
	}
	for _, k := range old {
		if err := s.db.Set(k, nil, pdb.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, k := range old {
		if _, closer, err := s.db.Get(k); err == nil {
			closer.Close()
			t.Fatalf("old index key %q is still there", k)
		}
	}
	txs, _, err := s.List(t.Context(), tccd.Filter{Limit: 10})
	if err != nil || len(txs) != 1 || txs[0].ID != "x" {
		t.Fatalf("List = %v, %v; want x", txs, err)
	}
}

// createFinal stores tx, which is in a final state, the way the
// coordinator does: created confirming (or cancelling), then moved.
func createFinal(t *testing.T, s *Store, tx *tccd.Transaction) {
	t.Helper()
	final := tx.State
	tx.State = tccd.StateConfirming
	if final == tccd.StateCancelled {
		tx.State = tccd.StateCancelling
	}
	if err := s.Create(t.Context(), tx, false); err != nil {
		t.Fatal(err)
	}
	tx.State = final
	if err := s.Update(t.Context(), tx, false); err != nil {
		t.Fatal(err)
	}
}
