package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/internal/pgtest"
)

// TestRenewLocksInIDOrder: a renewal and a group commit's batch lock the
// same rows; a batch locks them in the order of their ids, and so must a
// renewal, or the two wait for each other and PostgreSQL aborts one (it
// did, in the cluster's fault campaign). Here a transaction holds the
// first row, as a batch does, while the renewal starts; then it locks the
// second. Rows stored in the other order make a renewal that locks rows as
// it finds them take the second first: a deadlock.
func TestRenewLocksInIDOrder(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	s, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l := NewLeaser(s, "node-a", time.Minute, nil)
	for _, id := range []string{"b", "a"} { // stored b first
		tx := newTx(id, tccd.StateActive)
		l.Claim(tx, time.Now())
		if err := s.Create(ctx, tx, true); err != nil {
			t.Fatal(err)
		}
	}
	batch, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer batch.Close(ctx)
	btx, err := batch.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer btx.Rollback(ctx)
	if _, err := btx.Exec(ctx, "UPDATE tccd_transactions SET version = version + 1 WHERE id = 'a'"); err != nil {
		t.Fatal(err)
	}
	renewed := make(chan error, 1)
	go func() {
		lost, err := l.Renew(ctx, []string{"a", "b"})
		if err == nil && len(lost) > 0 {
			err = &tccd.Error{Code: tccd.EInternal, Message: "leases lost"}
		}
		renewed <- err
	}()
	waitFor(t, "the renewal to wait for the batch's lock", func() bool {
		var n int
		err := batch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%SET lease_until%'`).Scan(&n)
		return err == nil && n == 1
	})
	if _, err := btx.Exec(ctx, "UPDATE tccd_transactions SET version = version + 1 WHERE id = 'b'"); err != nil {
		t.Fatalf("the batch's second row: %v (the renewal holds it: rows locked out of order)", err)
	}
	if err := btx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-renewed; err != nil {
		t.Fatalf("renew: %v", err)
	}
}
