package postgres_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/internal/pgtest"
	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/postgres"
)

// node is one coordinator of a cluster sharing a database.
type node struct {
	store *postgres.Store
	coord *tccd.Coordinator
}

func startNode(t *testing.T, dsn, id string, ttl time.Duration) *node {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := tccd.NewCoordinator(tccd.Config{
		NodeID: id, Leaser: postgres.NewLeaser(s, id, ttl, nil),
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, CallTimeout: 5 * time.Second,
		ConfirmWait: 10 * time.Second, ShutdownGrace: 100 * time.Millisecond,
	}, s, tccdhttp.NewCaller(), nil, nil)
	if err := c.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := &node{store: s, coord: c}
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	if n.coord != nil {
		n.coord.Close()
		n.store.Close()
		n.coord = nil
	}
}

// TestLeaseTakeOver: a node that decided a transaction stops before its
// participants answered; its lease expires and another node takes the
// transaction over — a new epoch and owner — and drives it to the
// decided outcome. A request at a node that does not drive a transaction
// waits for its outcome instead of driving it too.
func TestLeaseTakeOver(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	p := testpart.NewTest(t, time.Minute)
	srv := httptest.NewServer(p)
	defer srv.Close()
	a := startNode(t, dsn, "node-a", time.Second)
	b := startNode(t, dsn, "node-b", time.Second)
	ctx := context.Background()

	r, err := p.Try(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	link := tccd.Link{URI: srv.URL + "/reservations/" + r.ID, Expires: r.Expires}
	p.AddFault(testpart.Fault{Op: "confirm", Count: -1, Hold: true})
	tx, err := a.coord.Begin(ctx, tccd.BeginRequest{Participants: []tccd.Link{link}})
	if err != nil {
		t.Fatal(err)
	}
	if tx.Owner != "node-a" || tx.LeaseUntil.IsZero() {
		t.Fatalf("begun with owner %q, lease until %v", tx.Owner, tx.LeaseUntil)
	}
	if _, err := a.coord.ConfirmAsync(ctx, tx.ID, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the confirm to be held at the participant", func() bool {
		st, _ := p.Stats(ctx)
		return st.Held > 0
	})
	// b, asked, waits for the outcome rather than driving it (bounded by
	// its confirm-wait): the participant holds, so the answer is "still
	// confirming", and b sent nothing.
	before, _ := p.Stats(ctx)
	bctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	got, err := b.coord.Confirm(bctx, tx.ID, nil)
	cancel()
	if err != nil || got.State != tccd.StateConfirming {
		t.Fatalf("confirm at b = %v, %v; want still confirming", got, err)
	}
	if after, _ := p.Stats(ctx); after.ConfirmCalls != before.ConfirmCalls {
		t.Fatalf("b called the participant (%d calls, was %d) while a drives the transaction", after.ConfirmCalls, before.ConfirmCalls)
	}
	a.stop() // a's lease is left to expire
	p.ClearFaults()
	var end *tccd.Transaction
	waitFor(t, "b to take over and confirm", func() bool {
		end, _ = b.coord.Get(ctx, tx.ID)
		return end != nil && end.State == tccd.StateConfirmed
	})
	if end.Owner != "node-b" || end.Epoch < 2 {
		t.Fatalf("confirmed by owner %q at epoch %d; want node-b after a takeover", end.Owner, end.Epoch)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
