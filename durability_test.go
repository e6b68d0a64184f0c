package tccd_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/pebble"
)

// The tests here check the durability argument of docs/ARCHITECTURE.md
// end to end: every decision is on the disk before the first participant
// hears of it. The coordinator runs on the pebble store over Pebble's
// crashable in-memory file system; at the instant the first participant
// call is about to be sent, the caller takes fs.CrashClone — what the disk
// holds if the power fails then: what was synced, nothing else — and lets
// the call go on. The coordinator keeps running on the original; the clone
// is opened later by a new coordinator, as a machine restarted after the
// power loss would be, and must find the decision and finish the
// transaction with the same outcome, re-sending calls the participants
// answer again (they are idempotent).

// callerFunc is a tccd.Caller made of a function.
type callerFunc func(ctx context.Context, op tccd.Op, uri string) tccd.CallResult

func (f callerFunc) Call(ctx context.Context, call tccd.Call) tccd.CallResult {
	return f(ctx, call.Op, call.URI)
}

// crashRig is a coordinator on a crashable in-memory disk, calling real
// participant services on loopback.
type crashRig struct {
	t     *testing.T
	fs    *vfs.MemFS
	parts []*part
	coord *tccd.Coordinator

	mu        sync.Mutex
	captureAt *tccd.Op      // when set, "the first call" is the first of this op
	atFirstOp tccd.Op       // the op of the first call
	atFirst   *vfs.MemFS    // the disk after a power loss at the first call
	called    chan struct{} // closed at the first call
}

func newCrashRig(t *testing.T, participants int) *crashRig {
	t.Helper()
	r := &crashRig{t: t, fs: vfs.NewCrashableMem(), called: make(chan struct{})}
	for range participants {
		svc := testpart.NewTest(t, time.Minute)
		srv := httptest.NewServer(svc)
		t.Cleanup(srv.Close)
		r.parts = append(r.parts, &part{t: t, svc: svc, srv: srv})
	}
	real := tccdhttp.NewCaller()
	caller := callerFunc(func(ctx context.Context, op tccd.Op, uri string) tccd.CallResult {
		r.mu.Lock()
		if r.atFirst == nil && (r.captureAt == nil || *r.captureAt == op) {
			// Before the call is sent: a power loss now may find nothing
			// that was not synced by this instant.
			r.atFirst, r.atFirstOp = r.fs.CrashClone(vfs.CrashCloneCfg{}), op
			close(r.called)
		}
		r.mu.Unlock()
		return real.Call(ctx, tccd.Call{Op: op, URI: uri})
	})
	r.coord = r.open(r.fs, caller)
	t.Cleanup(func() {
		for i, p := range r.parts {
			if n := p.stats().CancelAfterConfirm; n != 0 {
				t.Errorf("participant %d: %d cancels after confirm", i, n)
			}
		}
	})
	return r
}

// open starts a coordinator (running recovery) on the store on fs; both
// are closed when the test ends.
func (r *crashRig) open(fs vfs.FS, caller tccd.Caller) *tccd.Coordinator {
	r.t.Helper()
	return r.start(r.openStore(fs), caller)
}

// openStore opens the store on fs.
func (r *crashRig) openStore(fs vfs.FS) *pebble.Store {
	r.t.Helper()
	s, err := pebble.Open("data", pebble.Options{CacheSize: 1 << 20, FS: fs})
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

// start starts a coordinator (running recovery) on s; both are closed
// when the test ends.
func (r *crashRig) start(s *pebble.Store, caller tccd.Caller) *tccd.Coordinator {
	r.t.Helper()
	c := tccd.NewCoordinator(testConfig(), s, caller, nil, nil)
	if err := c.Open(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		c.Close()
		s.Close()
	})
	return c
}

// links makes one reservation at each participant.
func (r *crashRig) links() []tccd.Link {
	var ls []tccd.Link
	for _, p := range r.parts {
		ls = append(ls, p.link(0))
	}
	return ls
}

// firstCall returns the disk a power loss at the first participant call
// left, and that call's op.
func (r *crashRig) firstCall() (*vfs.MemFS, tccd.Op) {
	r.t.Helper()
	select {
	case <-r.called:
	default:
		r.t.Fatal("no participant was called")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.atFirst, r.atFirstOp
}

// calls returns how many confirm and cancel calls the participants got.
func (r *crashRig) calls() (confirms, cancels int64) {
	for _, p := range r.parts {
		st := p.stats()
		confirms += st.ConfirmCalls
		cancels += st.CancelCalls
	}
	return confirms, cancels
}

// restart opens a coordinator on the disk a power loss left, requires the
// decision there — state decided, every link — and waits until recovery
// has driven the transaction to a final state. It returns the transaction
// as found and as finished.
func (r *crashRig) restart(disk *vfs.MemFS, id string, decided tccd.State, links []tccd.Link) (found, final *tccd.Transaction) {
	r.t.Helper()
	// Read from the store before recovery starts driving.
	s := r.openStore(disk)
	tx, err := s.Get(context.Background(), id)
	if err != nil {
		s.Close()
		r.t.Fatalf("after the power loss: %v", err)
	}
	if tx.State != decided && !tx.State.Final() {
		r.t.Fatalf("after the power loss the transaction is %s, want %s or final", tx.State, decided)
	}
	if len(tx.Participants) != len(links) {
		r.t.Fatalf("after the power loss: %d participants, want %d", len(tx.Participants), len(links))
	}
	for _, l := range links {
		if tx.Participant(l.URI) < 0 {
			r.t.Fatalf("after the power loss: link %s missing", l.URI)
		}
	}
	found = tx
	c := r.start(s, tccdhttp.NewCaller())
	deadline := time.Now().Add(15 * time.Second)
	for !tx.State.Final() {
		if time.Now().After(deadline) {
			r.t.Fatalf("recovery did not finish the transaction: %s", tx.State)
		}
		time.Sleep(5 * time.Millisecond)
		if tx, err = c.Get(context.Background(), id); err != nil {
			r.t.Fatal(err)
		}
	}
	return found, tx
}

// check restarts on the disk of a power loss at the first participant
// call, which must hold the decision but not yet the outcome, and on the
// disk of one after the outcome was acknowledged, which must hold the
// decision and may have lost the outcome (it is not synced): each time
// recovery reaches the same outcome, re-sending the calls of the decided
// phase that it does not know were answered.
func (r *crashRig) check(id string, decided, outcome tccd.State, op tccd.Op, links []tccd.Link) {
	r.t.Helper()
	afterAck := r.fs.CrashClone(vfs.CrashCloneCfg{})
	atFirst, firstOp := r.firstCall()
	if firstOp != op {
		r.t.Fatalf("first participant call: %s, want %s", firstOp, op)
	}
	for _, at := range []struct {
		name string
		disk *vfs.MemFS
	}{{"at the first participant call", atFirst}, {"after the outcome was acknowledged", afterAck}} {
		confirms, cancels := r.calls()
		found, tx := r.restart(at.disk, id, decided, links)
		wasFinal := found.State.Final()
		if tx.State != outcome {
			r.t.Fatalf("power loss %s: recovered to %s, want %s", at.name, tx.State, outcome)
		}
		c2, k2 := r.calls()
		resent := c2 - confirms
		if op == tccd.OpCancel {
			resent = k2 - cancels
		}
		if c2-confirms+k2-cancels != resent {
			r.t.Fatalf("power loss %s: recovery sent calls of the other phase", at.name)
		}
		attempts := 0
		for _, p := range found.Participants {
			attempts += p.Attempts
		}
		r.t.Logf("power loss %s: found %s with %d attempts recorded, re-sent %d %s calls", at.name, found.State, attempts, resent, op)
		if at.disk == atFirst && wasFinal {
			r.t.Fatalf("power loss %s: the outcome was on the disk before any participant was called", at.name)
		}
		if !wasFinal && resent != int64(len(links)) {
			r.t.Fatalf("power loss %s: recovery re-sent %d calls, want %d", at.name, resent, len(links))
		}
	}
	for i, p := range r.parts {
		want := testpart.Confirmed
		if outcome == tccd.StateCancelled {
			want = testpart.Cancelled
		}
		if s := p.state(links[i]); s != want {
			r.t.Fatalf("participant %d: %s, want %s", i, s, want)
		}
	}
}

// TestConfirmDecisionIsSyncedBeforeParticipants: a confirm decision, with
// its complete link list, survives a power loss at the first PUT, on the
// native API (Confirm of a registered transaction) and the Atomikos API
// (ConfirmLinks of a new link set).
func TestConfirmDecisionIsSyncedBeforeParticipants(t *testing.T) {
	t.Run("native", func(t *testing.T) {
		r := newCrashRig(t, 3)
		ctx := context.Background()
		links := r.links()
		tx, err := r.coord.Begin(ctx, tccd.BeginRequest{Timeout: time.Minute, Participants: links[:1]})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.coord.Enlist(ctx, tx.ID, links[1]); err != nil {
			t.Fatal(err)
		}
		// A failed attempt is recorded (progress, not synced) and retried.
		r.parts[0].svc.AddFault(testpart.Fault{Op: "confirm", Count: 1, Status: 503})
		// The last link comes with the confirm itself.
		got, err := r.coord.Confirm(ctx, tx.ID, links[2:])
		if err != nil || got.State != tccd.StateConfirmed {
			t.Fatalf("Confirm = %v, %v", got, err)
		}
		r.check(tx.ID, tccd.StateConfirming, tccd.StateConfirmed, tccd.OpConfirm, links)
	})
	t.Run("atomikos", func(t *testing.T) {
		r := newCrashRig(t, 2)
		links := r.links()
		got, err := r.coord.ConfirmLinks(context.Background(), links, atomikos(links))
		if err != nil || got.State != tccd.StateConfirmed {
			t.Fatalf("ConfirmLinks = %v, %v", got, err)
		}
		r.check(got.ID, tccd.StateConfirming, tccd.StateConfirmed, tccd.OpConfirm, links)
	})
}

// TestCancelDecisionIsSyncedBeforeParticipants: the same for a cancel
// decision at the first DELETE. Were it lost, a later confirm could be
// accepted after some participants had cancelled (ARCHITECTURE.md).
func TestCancelDecisionIsSyncedBeforeParticipants(t *testing.T) {
	t.Run("native", func(t *testing.T) {
		r := newCrashRig(t, 2)
		links := r.links()
		tx, err := r.coord.Begin(context.Background(), tccd.BeginRequest{Timeout: time.Minute, Participants: links})
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.coord.Cancel(context.Background(), tx.ID)
		if err != nil || got.State != tccd.StateCancelled {
			t.Fatalf("Cancel = %v, %v", got, err)
		}
		r.check(tx.ID, tccd.StateCancelling, tccd.StateCancelled, tccd.OpCancel, links)
	})
	t.Run("atomikos", func(t *testing.T) {
		r := newCrashRig(t, 2)
		links := r.links()
		got, err := r.coord.CancelLinks(context.Background(), links, atomikos(links))
		if err != nil || got.State != tccd.StateCancelled {
			t.Fatalf("CancelLinks = %v, %v", got, err)
		}
		r.check(got.ID, tccd.StateCancelling, tccd.StateCancelled, tccd.OpCancel, links)
	})
}

// TestEnlistIsSynced: an enlisted link, and an enlisted message, are on
// the disk when Enlist and EnlistMessage return — a confirm decided after
// the answer includes them, even after a power loss in between.
func TestEnlistIsSynced(t *testing.T) {
	r := newCrashRig(t, 1)
	ctx := context.Background()
	tx, err := r.coord.Begin(ctx, tccd.BeginRequest{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	link := r.links()[0]
	if _, _, err := r.coord.Enlist(ctx, tx.ID, link); err != nil {
		t.Fatal(err)
	}
	s := r.openStore(r.fs.CrashClone(vfs.CrashCloneCfg{}))
	got, err := s.Get(ctx, tx.ID)
	s.Close()
	if err != nil || got.Participant(link.URI) < 0 {
		t.Fatalf("after a power loss once Enlist returned: %+v, %v", got, err)
	}

	// A message, on a coordinator with a broker that captures every
	// subject (nothing is published here).
	fs := vfs.NewCrashableMem()
	cfg := testConfig()
	cfg.Messages = acceptAll{}
	store := r.openStore(fs)
	c := tccd.NewCoordinator(cfg, store, tccdhttp.NewCaller(), nil, nil)
	if err := c.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { c.Close(); store.Close() }()
	tx, err = c.Begin(ctx, tccd.BeginRequest{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.EnlistMessage(ctx, tx.ID, tccd.Message{Subject: "orders.placed", Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	s = r.openStore(fs.CrashClone(vfs.CrashCloneCfg{}))
	got, err = s.Get(ctx, tx.ID)
	s.Close()
	if err != nil || got.Messages() != 1 {
		t.Fatalf("after a power loss once EnlistMessage returned: %+v, %v", got, err)
	}
}

// acceptAll is a broker every subject of which is captured; it publishes
// nothing.
type acceptAll struct{}

func (acceptAll) CheckSubject(context.Context, string) error { return nil }
func (acceptAll) Publish(context.Context, tccd.OutgoingMessage) error {
	return errors.New("acceptAll publishes nothing")
}

// TestCompensateDecisionIsSynced: the decision to undo the confirmed
// participants is on the disk before the first compensation is sent, so
// that after a power loss recovery goes on undoing — never back to
// confirming the rest.
func TestCompensateDecisionIsSynced(t *testing.T) {
	r := newCrashRig(t, 2)
	op := tccd.OpCompensate
	r.captureAt = &op
	ctx := context.Background()
	links := r.links()
	links[0].CompensateURI = links[0].URI + "/compensate"
	// The second refuses its confirm, after the first has confirmed.
	r.parts[1].svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 422, Delay: "100ms"})
	tx, err := r.coord.Begin(ctx, tccd.BeginRequest{Timeout: time.Minute, Participants: links})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.coord.Confirm(ctx, tx.ID, nil)
	if tccd.ErrorCode(err) != tccd.ECompensated {
		t.Fatalf("Confirm = %v, %v; want compensated", got, err)
	}
	disk, first := r.firstCall()
	if first != tccd.OpCompensate {
		t.Fatalf("captured at a %s", first)
	}
	s := r.openStore(disk)
	found, err := s.Get(ctx, tx.ID)
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	if found.State != tccd.StateCompensating {
		t.Fatalf("after a power loss at the first compensation: %s, want compensating", found.State)
	}
	_, final := r.restart(disk, tx.ID, tccd.StateCompensating, links)
	if final.State != tccd.StateCompensated {
		t.Fatalf("recovered to %s, want compensated", final.State)
	}
	if st := r.parts[0].state(links[0]); st != testpart.Compensated {
		t.Fatalf("the confirmed participant is %s, want compensated", st)
	}
}
