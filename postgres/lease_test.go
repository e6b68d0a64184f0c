package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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
	return startNodeWith(t, dsn, id, ttl, nodeOptions{})
}

// nodeOptions change a node of a test: its leaser (wrapped), its
// configuration, where it logs.
type nodeOptions struct {
	leaser func(*postgres.Leaser) tccd.Leaser
	config func(*tccd.Config)
	log    *logBuffer
}

func startNodeWith(t *testing.T, dsn, id string, ttl time.Duration, o nodeOptions) *node {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var leaser tccd.Leaser = postgres.NewLeaser(s, id, ttl, nil)
	if o.leaser != nil {
		leaser = o.leaser(leaser.(*postgres.Leaser))
	}
	cfg := tccd.Config{
		NodeID: id, Leaser: leaser,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, CallTimeout: 5 * time.Second,
		ConfirmWait: 10 * time.Second, ShutdownGrace: 100 * time.Millisecond,
	}
	if o.config != nil {
		o.config(&cfg)
	}
	var log *slog.Logger
	if o.log != nil {
		log = slog.New(slog.NewJSONHandler(o.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c := tccd.NewCoordinator(cfg, s, tccdhttp.NewCaller(), nil, log)
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

// logBuffer keeps a node's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// find returns the log records whose message starts with msg.
func (b *logBuffer) find(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(b.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(fmt.Sprint(rec["msg"]), msg) {
			out = append(out, rec)
		}
	}
	return out
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRequestAtCreatorAfterDecisionElsewhere: a transaction begun at
// node a is decided at node b, which drives it. A confirm repeated at a —
// whose lease table still lists the transaction until its next renewal —
// waits for the outcome and sends nothing: the record names b the owner.
func TestRequestAtCreatorAfterDecisionElsewhere(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	p := testpart.NewTest(t, time.Minute)
	srv := httptest.NewServer(p)
	defer srv.Close()
	a := startNode(t, dsn, "node-a", 10*time.Second)
	b := startNode(t, dsn, "node-b", 10*time.Second)
	ctx := context.Background()

	r, err := p.Try(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.AddFault(testpart.Fault{Op: "confirm", Count: -1, Hold: true})
	tx, err := a.coord.Begin(ctx, tccd.BeginRequest{Participants: []tccd.Link{{URI: srv.URL + "/reservations/" + r.ID, Expires: r.Expires}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.coord.ConfirmAsync(ctx, tx.ID, nil); err != nil || got.Owner != "node-b" {
		t.Fatalf("confirm at b = %v, %v; want decided there, owned by node-b", got, err)
	}
	waitFor(t, "b's confirm to be held at the participant", func() bool {
		st, _ := p.Stats(ctx)
		return st.Held == 1
	})
	actx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	got, err := a.coord.Confirm(actx, tx.ID, nil)
	cancel()
	if err != nil || got.State != tccd.StateConfirming {
		t.Fatalf("confirm at a = %v, %v; want still confirming", got, err)
	}
	if st, _ := p.Stats(ctx); st.ConfirmCalls != 1 {
		t.Fatalf("the participant got %d confirms; want only b's: a drove the transaction b drives", st.ConfirmCalls)
	}
	p.ClearFaults()
	waitFor(t, "the transaction to be confirmed", func() bool {
		end, _ := a.coord.Get(ctx, tx.ID)
		return end != nil && end.State == tccd.StateConfirmed && end.Owner == "node-b"
	})
}

// TestFencedDriverStops: node a drives a confirm whose participant keeps
// failing; another node takes the transaction over while a's lease is
// still live by a's clock (clocks apart, or a's renewal slow). a's next
// write fails its compare-and-set; a must stop sending at once, not at
// its next renewal.
func TestFencedDriverStops(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	p := testpart.NewTest(t, time.Minute)
	srv := httptest.NewServer(p)
	defer srv.Close()
	log := &logBuffer{}
	a := startNodeWith(t, dsn, "node-a", 10*time.Second, nodeOptions{log: log, config: shortWait})
	ctx := context.Background()

	r, err := p.Try(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 503})
	tx, err := a.coord.ConfirmLinks(ctx, []tccd.Link{{URI: srv.URL + "/reservations/" + r.ID, Expires: r.Expires}}, tccd.OneShotOptions{Key: "t-" + r.ID, Protocol: tccd.ProtocolAtomikos})
	if err != nil || tx.State != tccd.StateConfirming {
		t.Fatalf("confirm = %v, %v; want confirming (the participant fails)", tx, err)
	}
	waitFor(t, "a to retry the confirm", func() bool {
		st, _ := p.Stats(ctx)
		return st.ConfirmCalls >= 3
	})
	// Node b's leaser, its clock an hour ahead, finds the lease expired
	// and takes the transaction over.
	s, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	taken, err := postgres.NewLeaser(s, "node-b", 10*time.Second, ahead).TakeOver(ctx, 10)
	if err != nil || len(taken) != 1 || taken[0].ID != tx.ID {
		t.Fatalf("take over = %v, %v", taken, err)
	}
	waitFor(t, "a to find itself fenced", func() bool { return len(log.find("fenced")) > 0 })
	st, _ := p.Stats(ctx)
	fencedAt := st.ConfirmCalls
	time.Sleep(500 * time.Millisecond) // a window in which a driver not stopped would call again (every 5–50 ms)
	if st, _ := p.Stats(ctx); st.ConfirmCalls > fencedAt+1 {
		t.Fatalf("a sent %d confirms after it was fenced (at most the one in flight may arrive)", st.ConfirmCalls-fencedAt)
	}
}

// shortWait makes a confirm request answer "still confirming" after
// 200 ms rather than wait for a participant that keeps failing.
func shortWait(c *tccd.Config) { c.ConfirmWait = 200 * time.Millisecond }

// awayLeaser is a leaser whose store can be made unreachable: Renew and
// TakeOver fail while away is set, and TakeOver always while noTakeOver
// is (so that only renewal can bring leases back).
type awayLeaser struct {
	*postgres.Leaser
	away, noTakeOver atomic.Bool
}

var errAway = errors.New("the store is away")

func (l *awayLeaser) Renew(ctx context.Context, ids []string) ([]string, error) {
	if l.away.Load() {
		return nil, errAway
	}
	return l.Leaser.Renew(ctx, ids)
}

func (l *awayLeaser) TakeOver(ctx context.Context, n int) ([]*tccd.Transaction, error) {
	if l.away.Load() || l.noTakeOver.Load() {
		return nil, errAway
	}
	return l.Leaser.TakeOver(ctx, n)
}

// TestLapsedLeases: node a drives two confirms whose participants fail,
// then cannot renew its leases for longer than their TTL (the store
// away). Its drivers stop. Meanwhile node b takes one of them over. When
// a can renew again it logs that it lost that one to another node, and
// drives the other again at once — not at the next re-drive a minute
// later.
func TestLapsedLeases(t *testing.T) {
	const ttl = time.Second
	dsn := pgtest.NewDatabase(t)
	p := testpart.NewTest(t, time.Minute)
	srv := httptest.NewServer(p)
	defer srv.Close()
	log := &logBuffer{}
	var leaser *awayLeaser
	a := startNodeWith(t, dsn, "node-a", ttl, nodeOptions{
		log: log,
		leaser: func(l *postgres.Leaser) tccd.Leaser {
			leaser = &awayLeaser{Leaser: l}
			leaser.noTakeOver.Store(true)
			return leaser
		},
		config: func(c *tccd.Config) {
			shortWait(c)
			c.RedriveInterval = time.Minute
		},
	})
	ctx := context.Background()

	p.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 503})
	var ids []string
	for range 2 {
		r, err := p.Try(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := a.coord.ConfirmLinks(ctx, []tccd.Link{{URI: srv.URL + "/reservations/" + r.ID, Expires: r.Expires}}, tccd.OneShotOptions{Key: "t-" + r.ID, Protocol: tccd.ProtocolAtomikos})
		if err != nil || tx.State != tccd.StateConfirming {
			t.Fatalf("confirm = %v, %v; want confirming (the participant fails)", tx, err)
		}
		ids = append(ids, tx.ID)
	}
	kept, lost := ids[0], ids[1]
	leaser.away.Store(true)
	// Every lease a holds was granted before now, so it has run out by
	// now + ttl whatever a's renewals tried since.
	lapsed := time.Now().Add(ttl)
	waitFor(t, "a's leases to run out", func() bool {
		return time.Now().After(lapsed) && len(log.find("cannot renew leases")) > 0
	})
	pgtest.Exec(t, dsn, "UPDATE tccd_transactions SET lease_until = now() - interval '1 hour' WHERE id = $1", lost)
	s, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	taken, err := postgres.NewLeaser(s, "node-b", ttl, nil).TakeOver(ctx, 1)
	if err != nil || len(taken) != 1 || taken[0].ID != lost {
		t.Fatalf("b's take over = %v, %v; want %s", taken, err, lost)
	}
	p.ClearFaults()
	leaser.away.Store(false)
	waitFor(t, "a to drive the transaction it kept again and confirm it", func() bool {
		tx, _ := a.coord.Get(ctx, kept)
		return tx != nil && tx.State == tccd.StateConfirmed
	})
	waitFor(t, "a to log the lease it lost", func() bool { return len(log.find("lost leases")) > 0 })
	rec := log.find("lost leases")[0]
	if got := fmt.Sprint(rec["ids"]); !strings.Contains(got, lost) || strings.Contains(got, kept) || rec["level"] != "WARN" {
		t.Fatalf("lost leases logged as %v; want a warning naming %s only", rec, lost)
	}
	if tx, _ := a.coord.Get(ctx, lost); tx.State != tccd.StateConfirming || tx.Owner != "node-b" {
		t.Fatalf("the transaction b took over is %s, owned by %s; want still confirming, b's (b does not drive it here)", tx.State, tx.Owner)
	}
}
