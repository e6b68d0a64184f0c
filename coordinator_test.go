package tccd_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/pebble"
)

// env is a coordinator over a real store in a temp dir, calling real
// participant services over loopback HTTP.
type env struct {
	// cancelAfterConfirm allows DELETEs to confirmed reservations: the
	// coordinator sends them, by design, to a participant in doubt.
	cancelAfterConfirm bool

	// clock, when set, is the coordinator's clock; wrap, when set, wraps
	// the store (to inject failures).
	clock tccd.Clock
	wrap  func(tccd.Store) tccd.Store

	t     *testing.T
	dir   string
	cfg   tccd.Config
	store *pebble.Store
	coord *tccd.Coordinator
	parts []*part
}

type part struct {
	t   testing.TB
	svc *testpart.Service
	srv *httptest.Server
}

// link makes a reservation at p and returns its participant link.
func (p *part) link(ttl time.Duration) tccd.Link {
	p.t.Helper()
	r, err := p.svc.Try(context.Background(), ttl)
	if err != nil {
		p.t.Fatal(err)
	}
	return tccd.Link{URI: p.srv.URL + "/reservations/" + r.ID, Expires: r.Expires}
}

func (p *part) state(l tccd.Link) testpart.State {
	p.t.Helper()
	r, _, err := p.svc.Get(context.Background(), l.URI[strings.LastIndex(l.URI, "/")+1:])
	if err != nil {
		p.t.Fatal(err)
	}
	return r.State
}

// stats returns p's counters.
func (p *part) stats() testpart.Stats {
	p.t.Helper()
	st, err := p.svc.Stats(context.Background())
	if err != nil {
		p.t.Fatal(err)
	}
	return st
}

// testConfig retries fast so tests end quickly.
// atomikos names a one-shot transaction as the Atomikos endpoints do;
// for a set they refuse (a duplicate or bad URI) a key the engine accepts,
// so that the engine's own refusal is what a test sees.
func atomikos(links []tccd.Link) tccd.OneShotOptions {
	key, err := tccdhttp.AtomikosKey(links)
	if err != nil {
		key = "refused-by-the-edge"
	}
	return tccd.OneShotOptions{Key: key, Protocol: tccd.ProtocolAtomikos}
}

func testConfig() tccd.Config {
	return tccd.Config{
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		CallTimeout: 2 * time.Second, ConfirmWait: 10 * time.Second,
		MarginFloor: 100 * time.Millisecond, ShutdownGrace: time.Second,
	}
}

func newEnv(t *testing.T, cfg tccd.Config, participants int) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), cfg: cfg}
	for i := 0; i < participants; i++ {
		svc := testpart.NewTest(t, time.Minute)
		srv := httptest.NewServer(svc)
		t.Cleanup(srv.Close)
		e.parts = append(e.parts, &part{t: t, svc: svc, srv: srv})
	}
	e.open()
	t.Cleanup(func() {
		e.close()
		// The invariant every test must keep: no participant was asked to
		// cancel a reservation that was confirmed.
		for i, p := range e.parts {
			if n := p.stats().CancelAfterConfirm; n != 0 && !e.cancelAfterConfirm {
				t.Errorf("participant %d: %d cancels after confirm", i, n)
			}
		}
	})
	return e
}

func (e *env) open() {
	e.t.Helper()
	s, err := pebble.Open(e.dir, pebble.Options{CacheSize: 8 << 20})
	if err != nil {
		e.t.Fatal(err)
	}
	e.store = s
	var store tccd.Store = s
	if e.wrap != nil {
		store = e.wrap(s)
	}
	e.coord = tccd.NewCoordinator(e.cfg, store, tccdhttp.NewCaller(), e.clock, nil)
	if err := e.coord.Open(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) close() {
	if e.coord == nil {
		return
	}
	e.coord.Close()
	e.store.Close()
	e.coord, e.store = nil, nil
}

// waitState polls until the transaction reaches state want (or fails the
// test after a generous bound). Polling is on a condition, not a sleep
// standing in for one.
func (e *env) waitState(id string, want tccd.State) *tccd.Transaction {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		tx, err := e.coord.Get(context.Background(), id)
		if err == nil && tx.State == want {
			return tx
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("transaction %s: state %v (err %v), want %s", id, tx, err, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) begin(timeout time.Duration, links ...tccd.Link) *tccd.Transaction {
	e.t.Helper()
	tx, err := e.coord.Begin(context.Background(), tccd.BeginRequest{Timeout: timeout, Participants: links})
	if err != nil {
		e.t.Fatal(err)
	}
	return tx
}

func wantCode(t *testing.T, err error, code tccd.Code) {
	t.Helper()
	if got := tccd.ErrorCode(err); got != code {
		t.Fatalf("error = %v (code %q), want code %q", err, got, code)
	}
}

func TestConfirmRegistered(t *testing.T) {
	e := newEnv(t, testConfig(), 3)
	ctx := context.Background()
	a, b, c := e.parts[0].link(0), e.parts[1].link(0), e.parts[2].link(0)
	tx := e.begin(time.Minute, a)
	if _, added, err := e.coord.Enlist(ctx, tx.ID, b); err != nil || !added {
		t.Fatalf("Enlist = %v, %v", added, err)
	}
	if _, added, err := e.coord.Enlist(ctx, tx.ID, b); err != nil || added {
		t.Fatalf("second Enlist of the same uri = %v, %v; want a no-op", added, err)
	}
	got, err := e.coord.Confirm(ctx, tx.ID, []tccd.Link{c})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != tccd.StateConfirmed || len(got.Participants) != 3 {
		t.Fatalf("state %s with %d participants", got.State, len(got.Participants))
	}
	for i, l := range []tccd.Link{a, b, c} {
		if s := e.parts[i].state(l); s != testpart.Confirmed {
			t.Errorf("participant %d is %s", i, s)
		}
		if p := got.Participants[i]; p.State != tccd.ParticipantConfirmed || p.Attempts != 1 || p.LastStatus != 204 {
			t.Errorf("participant %d recorded as %+v", i, p)
		}
	}
	// Confirm again: same answer, no new calls.
	calls := e.parts[0].stats().ConfirmCalls
	again, err := e.coord.Confirm(ctx, tx.ID, nil)
	if err != nil || again.State != tccd.StateConfirmed {
		t.Fatalf("repeat confirm = %v, %v", again, err)
	}
	if e.parts[0].stats().ConfirmCalls != calls {
		t.Error("repeat confirm called the participant again")
	}
	_, err = e.coord.Cancel(ctx, tx.ID)
	wantCode(t, err, tccd.EConflict)
	_, _, err = e.coord.Enlist(ctx, tx.ID, e.parts[0].link(0))
	wantCode(t, err, tccd.EConflict)
}

func TestConfirmEmpty(t *testing.T) {
	e := newEnv(t, testConfig(), 0)
	tx := e.begin(0)
	got, err := e.coord.Confirm(context.Background(), tx.ID, nil)
	if err != nil || got.State != tccd.StateConfirmed {
		t.Fatalf("confirm of an empty transaction = %v, %v", got, err)
	}
	if got.Timeout != tccd.DefaultTimeout {
		t.Errorf("timeout = %v, want the default", got.Timeout)
	}
}

func TestCancelRegistered(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	ctx := context.Background()
	a, b := e.parts[0].link(0), e.parts[1].link(0)
	tx := e.begin(time.Minute, a, b)
	got, err := e.coord.Cancel(ctx, tx.ID)
	if err != nil || got.State != tccd.StateCancelled || got.Reason != tccd.ReasonRequested {
		t.Fatalf("Cancel = %+v, %v", got, err)
	}
	for i, l := range []tccd.Link{a, b} {
		if s := e.parts[i].state(l); s != testpart.Cancelled {
			t.Errorf("participant %d is %s", i, s)
		}
	}
	if again, err := e.coord.Cancel(ctx, tx.ID); err != nil || again.State != tccd.StateCancelled {
		t.Fatalf("repeat cancel = %v, %v", again, err)
	}
	_, err = e.coord.Confirm(ctx, tx.ID, nil)
	wantCode(t, err, tccd.EConflict)
	if tccd.ErrorTx(err) == nil || tccd.ErrorTx(err).State != tccd.StateCancelled {
		t.Fatalf("conflict does not carry the cancelled transaction: %v", err)
	}
}

func TestConfirmRetriesTransientFailures(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	a, b := e.parts[0].link(0), e.parts[1].link(0)
	e.parts[0].svc.AddFault(testpart.Fault{Op: "confirm", Count: 2, Status: 503})
	e.parts[1].svc.AddFault(testpart.Fault{Op: "confirm", Count: 1, Status: 429, RetryAfter: 1})
	tx := e.begin(time.Minute, a, b)
	start := time.Now()
	got, err := e.coord.Confirm(context.Background(), tx.ID, nil)
	if err != nil || got.State != tccd.StateConfirmed {
		t.Fatalf("Confirm = %v, %v", got, err)
	}
	if p := got.Participants[0]; p.Attempts != 3 {
		t.Errorf("participant 0: %d attempts, want 3 (two 503s, then success)", p.Attempts)
	}
	if p := got.Participants[1]; p.Attempts != 2 {
		t.Errorf("participant 1: %d attempts, want 2", p.Attempts)
	}
	if el := time.Since(start); el < time.Second {
		t.Errorf("confirm took %v: Retry-After: 1 was not honoured", el)
	}
}

func TestConfirmLostReplyIsRetried(t *testing.T) {
	e := newEnv(t, testConfig(), 1)
	a := e.parts[0].link(0)
	// The participant confirms, then the connection drops before the reply.
	e.parts[0].svc.AddFault(testpart.Fault{Op: "confirm", Count: 1, ApplyThenFail: true})
	tx := e.begin(time.Minute, a)
	got, err := e.coord.Confirm(context.Background(), tx.ID, nil)
	if err != nil || got.State != tccd.StateConfirmed {
		t.Fatalf("Confirm = %v, %v", got, err)
	}
	if got.Participants[0].Attempts != 2 {
		t.Errorf("attempts = %d, want 2", got.Participants[0].Attempts)
	}
}

// TestCancelRefused: a participant that answers DELETE with 409 until its
// link expires is not cancelled: the transaction ends heuristic (reason
// participant), and the cancel request says so.
func TestCancelRefused(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	a, b := e.parts[0].link(0), e.parts[1].link(600*time.Millisecond)
	e.parts[1].svc.AddFault(testpart.Fault{Op: "cancel", Count: -1, Status: 409})
	tx := e.begin(time.Minute, a, b)
	_, err := e.coord.Cancel(context.Background(), tx.ID)
	wantCode(t, err, tccd.EHeuristic)
	got := e.waitState(tx.ID, tccd.StateHeuristic)
	if got.Reason != tccd.ReasonParticipant {
		t.Errorf("reason %s, want participant", got.Reason)
	}
	pa, pb := got.Participants[0], got.Participants[1]
	if pa.State != tccd.ParticipantCancelled || pb.State != tccd.ParticipantCancelRefused || pb.LastStatus != 409 || pb.Attempts < 2 {
		t.Fatalf("participants %+v, %+v", pa, pb)
	}
	if pb.LastAttemptAt.Before(b.Expires.Add(-200 * time.Millisecond)) {
		t.Errorf("the refused cancel was not retried until the link's expiry: last attempt %v, expiry %v", pb.LastAttemptAt, b.Expires)
	}
	// A repeated cancel gives the same answer.
	_, err = e.coord.Cancel(context.Background(), tx.ID)
	wantCode(t, err, tccd.EHeuristic)

	// 405 (cancel not implemented) keeps its meaning: cancelled.
	clearFaults(t, e.parts[1])
	c := e.parts[1].link(0)
	e.parts[1].svc.AddFault(testpart.Fault{Op: "cancel", Count: -1, Status: 405})
	tx2 := e.begin(time.Minute, c)
	got, err = e.coord.Cancel(context.Background(), tx2.ID)
	if err != nil || got.State != tccd.StateCancelled || got.Participants[0].State != tccd.ParticipantCancelled {
		t.Fatalf("Cancel with 405 = %+v, %v", got, err)
	}
}

// TestInDoubtWhenConfirmTurnsToCancel: a participant whose confirm went
// out without a definite answer when another turned out cancelled is in
// doubt in the cancel that follows. Its DELETE decides when it is
// definite; when it is refused (the confirm had landed), the coordinator
// asks with PUT once the link has expired and reports what it learns —
// never "cancelled" for a participant that confirmed.
func TestInDoubtWhenConfirmTurnsToCancel(t *testing.T) {
	for _, tc := range []struct {
		name      string
		applied   bool // the lost confirm took effect
		wantState tccd.State
		wantA     tccd.ParticipantState
	}{
		{"confirm landed", true, tccd.StateHeuristic, tccd.ParticipantConfirmed},
		{"confirm did not land", false, tccd.StateCancelled, tccd.ParticipantCancelled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.ConfirmWait = 700 * time.Millisecond
			e := newEnv(t, cfg, 2)
			e.cancelAfterConfirm = true
			a, b := e.parts[0].link(2*time.Second), e.parts[1].link(0)
			// a answers its confirm late, with a 502; b had cancelled.
			e.parts[0].svc.AddFault(testpart.Fault{Op: "confirm", Count: 1, Status: 502, Delay: "300ms", ApplyThenFail: tc.applied})
			e.parts[1].svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 404})
			tx := e.begin(time.Minute, a, b)
			// After confirm-wait: a's DELETE was refused (it confirmed),
			// so the outcome is not known yet — not "timed out"; or a's
			// DELETE cancelled it, and the transaction with it.
			got, err := e.coord.Confirm(context.Background(), tx.ID, nil)
			if tc.applied {
				if err != nil || got.State != tccd.StateCancelling || got.Participants[0].State != tccd.ParticipantInDoubt {
					t.Fatalf("Confirm = %+v, %v; want still cancelling, a in doubt", got, err)
				}
			} else {
				wantCode(t, err, tccd.ETimedOut)
			}
			end := e.waitState(tx.ID, tc.wantState)
			if pa, pb := end.Participants[0], end.Participants[1]; pa.State != tc.wantA || pb.State != tccd.ParticipantCancelled {
				t.Fatalf("participants %+v, %+v", pa, pb)
			}
			if s := e.parts[0].state(a); (s == testpart.Confirmed) != tc.applied {
				t.Fatalf("participant a is %s", s)
			}
			if tc.applied {
				if end.Reason != tccd.ReasonMixedOutcome {
					t.Errorf("reason %s, want mixed_outcome", end.Reason)
				}
				_, err = e.coord.Confirm(context.Background(), tx.ID, nil)
				wantCode(t, err, tccd.EHeuristic)
			}
		})
	}
}

func TestConfirmParticipantGoneCancelsTheRest(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	a := e.parts[0].link(0)
	// b has already cancelled on its own: confirm answers 404.
	b := e.parts[1].link(0)
	e.parts[1].svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 404})
	// a keeps failing, so nothing is confirmed when b's 404 arrives.
	e.parts[0].svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 503})
	tx := e.begin(time.Minute, a, b)
	_, err := e.coord.Confirm(context.Background(), tx.ID, nil)
	wantCode(t, err, tccd.ETimedOut)
	got := e.waitState(tx.ID, tccd.StateCancelled)
	if got.Reason != tccd.ReasonParticipant {
		t.Errorf("reason = %s", got.Reason)
	}
	if s := e.parts[0].state(a); s != testpart.Cancelled {
		t.Errorf("participant a is %s, want cancelled", s)
	}
	if p := got.Participants[1]; p.State != tccd.ParticipantCancelled || p.LastStatus != 404 {
		t.Errorf("participant b recorded as %+v", p)
	}
}

func TestConfirmHeuristic(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	a, b := e.parts[0].link(0), e.parts[1].link(0)
	// b refuses for good, after a has confirmed.
	e.parts[1].svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 400, Delay: "200ms"})
	tx := e.begin(time.Minute, a, b)
	_, err := e.coord.Confirm(context.Background(), tx.ID, nil)
	wantCode(t, err, tccd.EHeuristic)
	got := tccd.ErrorTx(err)
	if got.State != tccd.StateHeuristic || got.Reason != tccd.ReasonMixedOutcome {
		t.Fatalf("transaction %s/%s", got.State, got.Reason)
	}
	if got.Participants[0].State != tccd.ParticipantConfirmed || got.Participants[1].State != tccd.ParticipantFailed || got.Participants[1].LastStatus != 400 {
		t.Fatalf("participants %+v", got.Participants)
	}
	// Repeating gives the same answer.
	_, err = e.coord.Confirm(context.Background(), tx.ID, nil)
	wantCode(t, err, tccd.EHeuristic)
}

// TestConfirmRetriesUntilExpiry: a participant that answers 429 (it did
// not act) until its link expires is retried until then and recorded
// expired — it has cancelled itself — and the transaction is cancelled.
func TestConfirmRetriesUntilExpiry(t *testing.T) {
	e := newEnv(t, testConfig(), 1)
	a := e.parts[0].link(700 * time.Millisecond)
	e.parts[0].svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 429})
	tx := e.begin(time.Minute, a)
	_, err := e.coord.Confirm(context.Background(), tx.ID, nil)
	wantCode(t, err, tccd.ETimedOut)
	got := e.waitState(tx.ID, tccd.StateCancelled)
	p := got.Participants[0]
	if p.State != tccd.ParticipantExpired || p.Attempts < 2 || p.LastStatus != 429 {
		t.Fatalf("participant %+v", p)
	}
	if p.LastAttemptAt.Before(a.Expires.Add(-200 * time.Millisecond)) {
		t.Errorf("last attempt at %v, long before the expiry %v", p.LastAttemptAt, a.Expires)
	}
}

// TestConfirmInDoubtPastExpiry: a participant that answers 502 (it may
// have confirmed) is in doubt, not expired, at its link's expiry: the
// transaction stays confirming and the coordinator keeps asking with the
// same PUT; once the participant answers, its answer decides.
func TestConfirmInDoubtPastExpiry(t *testing.T) {
	for _, tc := range []struct {
		name      string
		applied   bool // the participant applied the confirms it answered 502 to
		wantState tccd.State
		wantPart  tccd.ParticipantState
	}{
		{"applied then lost", true, tccd.StateConfirmed, tccd.ParticipantConfirmed},
		{"not applied", false, tccd.StateCancelled, tccd.ParticipantCancelled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.ConfirmWait = 300 * time.Millisecond // the answer while in doubt
			e := newEnv(t, cfg, 1)
			a := e.parts[0].link(500 * time.Millisecond)
			e.parts[0].svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 502, ApplyThenFail: tc.applied})
			tx := e.begin(time.Minute, a)
			got, err := e.coord.Confirm(context.Background(), tx.ID, nil)
			if err != nil || got.State != tccd.StateConfirming {
				t.Fatalf("Confirm = %v, %v; want still confirming", got, err)
			}
			// Past the expiry: still confirming, the participant in doubt
			// and asked again.
			for {
				cur, _ := e.coord.Get(context.Background(), tx.ID)
				p := cur.Participants[0]
				if cur.State != tccd.StateConfirming || p.State != tccd.ParticipantInDoubt {
					t.Fatalf("state %s, participant %+v; want confirming, in doubt", cur.State, p)
				}
				if p.LastAttemptAt.After(a.Expires) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			clearFaults(t, e.parts[0])
			end := e.waitState(tx.ID, tc.wantState)
			if p := end.Participants[0]; p.State != tc.wantPart {
				t.Fatalf("participant %+v, want %s", p, tc.wantPart)
			}
			// The answer to a repeated confirm says the same.
			_, err = e.coord.Confirm(context.Background(), tx.ID, nil)
			if tc.wantState == tccd.StateConfirmed && err != nil || tc.wantState == tccd.StateCancelled && tccd.ErrorCode(err) != tccd.ETimedOut {
				t.Fatalf("repeated confirm: %v", err)
			}
		})
	}
}

func TestProgressIsVisible(t *testing.T) {
	e := newEnv(t, testConfig(), 1)
	a := e.parts[0].link(0)
	e.parts[0].svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 503})
	tx := e.begin(time.Minute, a)
	done := make(chan error, 1)
	go func() {
		_, err := e.coord.Confirm(context.Background(), tx.ID, nil)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := e.coord.Get(context.Background(), tx.ID)
		if err != nil {
			t.Fatal(err)
		}
		if p := got.Participants[0]; got.State == tccd.StateConfirming && p.Attempts >= 2 && p.LastStatus == 503 && p.LastError == "HTTP 503" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress not recorded: %+v", got.Participants[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Let it through and check it ends confirmed.
	clearFaults(t, e.parts[0])
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.waitState(tx.ID, tccd.StateConfirmed)
}

func clearFaults(t *testing.T, p *part) {
	t.Helper()
	req := httptest.NewRequest("DELETE", "/faults", nil)
	rec := httptest.NewRecorder()
	p.svc.ServeHTTP(rec, req)
	if rec.Code != 204 {
		t.Fatalf("clear faults: %d", rec.Code)
	}
}

func TestExpiryMarginRefusesToConfirm(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	a := e.parts[0].link(0)
	b := e.parts[1].link(60 * time.Millisecond) // within the 100ms floor
	tx := e.begin(time.Minute, a, b)
	_, err := e.coord.Confirm(context.Background(), tx.ID, nil)
	wantCode(t, err, tccd.ETimedOut)
	got := e.waitState(tx.ID, tccd.StateCancelled)
	if got.Reason != tccd.ReasonExpiryMargin {
		t.Errorf("reason = %s", got.Reason)
	}
	if n := e.parts[0].stats().ConfirmCalls + e.parts[1].stats().ConfirmCalls; n != 0 {
		t.Errorf("%d confirm calls were sent", n)
	}
	if s := e.parts[0].state(a); s != testpart.Cancelled {
		t.Errorf("participant a is %s", s)
	}
}

func TestActiveTimeoutCancels(t *testing.T) {
	e := newEnv(t, testConfig(), 1)
	a := e.parts[0].link(0)
	tx := e.begin(150*time.Millisecond, a)
	got := e.waitState(tx.ID, tccd.StateCancelled)
	if got.Reason != tccd.ReasonTimeout {
		t.Errorf("reason = %s", got.Reason)
	}
	if s := e.parts[0].state(a); s != testpart.Cancelled {
		t.Errorf("participant is %s", s)
	}
	_, err := e.coord.Confirm(context.Background(), tx.ID, nil)
	wantCode(t, err, tccd.ETimedOut)
}

func TestEnlistRules(t *testing.T) {
	e := newEnv(t, tccd.Config{MaxLinks: 2}, 1)
	ctx := context.Background()
	tx := e.begin(time.Minute)
	past := tccd.Link{URI: e.parts[0].srv.URL + "/reservations/x", Expires: time.Now().Add(-time.Second)}
	_, _, err := e.coord.Enlist(ctx, tx.ID, past)
	wantCode(t, err, tccd.EInvalid)
	for i := 0; i < 2; i++ {
		if _, _, err := e.coord.Enlist(ctx, tx.ID, e.parts[0].link(0)); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = e.coord.Enlist(ctx, tx.ID, e.parts[0].link(0))
	wantCode(t, err, tccd.EInvalid)
	_, _, err = e.coord.Enlist(ctx, "no-such-id", e.parts[0].link(0))
	wantCode(t, err, tccd.ENotFound)
	got, _ := e.coord.Get(ctx, tx.ID)
	if len(got.Participants) != 2 || got.Version != 3 {
		t.Fatalf("after refused enlists: %d participants, version %d", len(got.Participants), got.Version)
	}
}

func TestConcurrentConfirmAndCancel(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	ctx := context.Background()
	const n = 30
	type result struct {
		confirmErr, cancelErr error
		links                 [2]tccd.Link
		id                    string
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		a, b := e.parts[0].link(0), e.parts[1].link(0)
		tx := e.begin(time.Minute, a, b)
		results[i].links, results[i].id = [2]tccd.Link{a, b}, tx.ID
		wg.Add(2)
		go func(r *result) { defer wg.Done(); _, r.confirmErr = e.coord.Confirm(ctx, tx.ID, nil) }(&results[i])
		go func(r *result) { defer wg.Done(); _, r.cancelErr = e.coord.Cancel(ctx, tx.ID) }(&results[i])
	}
	wg.Wait()
	for i, r := range results {
		confirmWon := r.confirmErr == nil
		cancelWon := r.cancelErr == nil
		if confirmWon == cancelWon {
			t.Fatalf("tx %d: confirm err %v, cancel err %v: exactly one must win", i, r.confirmErr, r.cancelErr)
		}
		want, wantPart := tccd.StateCancelled, testpart.Cancelled
		if confirmWon {
			want, wantPart = tccd.StateConfirmed, testpart.Confirmed
			wantCode(t, r.cancelErr, tccd.EConflict)
		} else {
			wantCode(t, r.confirmErr, tccd.EConflict)
		}
		e.waitState(r.id, want)
		for j := range e.parts {
			if s := e.parts[j].state(r.links[j]); s != wantPart {
				t.Errorf("tx %d participant %d is %s, want %s", i, j, s, wantPart)
			}
		}
	}
}

func TestAtomikosConfirmIsIdempotent(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	ctx := context.Background()
	links := []tccd.Link{e.parts[0].link(0), e.parts[1].link(0)}
	tx, err := e.coord.ConfirmLinks(ctx, links, atomikos(links))
	if err != nil || tx.State != tccd.StateConfirmed || tx.Protocol != tccd.ProtocolAtomikos {
		t.Fatalf("ConfirmLinks = %+v, %v", tx, err)
	}
	// The same set in another order is the same transaction.
	again, err := e.coord.ConfirmLinks(ctx, []tccd.Link{links[1], links[0]}, atomikos([]tccd.Link{links[1], links[0]}))
	if err != nil || again.ID != tx.ID {
		t.Fatalf("repeat = %v, %v", again, err)
	}
	if n := e.parts[0].stats().ConfirmCalls; n != 1 {
		t.Errorf("participant confirmed %d times, want 1", n)
	}
	// Cancel of a confirmed set answers without undoing anything.
	if _, err := e.coord.CancelLinks(ctx, links, atomikos(links)); err != nil {
		t.Fatal(err)
	}
	if n := e.parts[0].stats().CancelCalls; n != 0 {
		t.Errorf("cancel after confirm sent %d DELETEs", n)
	}
	// The engine refuses an empty set (the Atomikos endpoint answers it
	// itself: nothing to confirm), and a key that cannot name a
	// transaction.
	if _, err := e.coord.ConfirmLinks(ctx, nil, tccd.OneShotOptions{Key: "k", Protocol: tccd.ProtocolAtomikos}); tccd.ErrorCode(err) != tccd.EInvalid {
		t.Errorf("empty confirm: %v", err)
	}
	for _, key := range []string{"", "a b", "a/b", strings.Repeat("k", 129)} {
		if _, err := e.coord.ConfirmLinks(ctx, links, tccd.OneShotOptions{Key: key, Protocol: tccd.ProtocolAtomikos}); tccd.ErrorCode(err) != tccd.EInvalid {
			t.Errorf("key %q: %v", key, err)
		}
	}
	_, err = e.coord.ConfirmLinks(ctx, []tccd.Link{links[0], links[0]}, atomikos([]tccd.Link{links[0], links[0]}))
	wantCode(t, err, tccd.EInvalid)
}

func TestAtomikosExpiredLinkTimesOut(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	a := e.parts[0].link(0)
	b := e.parts[1].link(time.Millisecond)
	time.Sleep(2 * time.Millisecond) // b must be in the past: that is the input under test
	_, err := e.coord.ConfirmLinks(context.Background(), []tccd.Link{a, b}, atomikos([]tccd.Link{a, b}))
	wantCode(t, err, tccd.ETimedOut)
	if s := e.parts[0].state(a); s != testpart.Cancelled {
		t.Errorf("participant a is %s, want cancelled", s)
	}
	if n := e.parts[0].stats().ConfirmCalls; n != 0 {
		t.Errorf("%d confirm calls", n)
	}
}

func TestAtomikosCancelThenConfirm(t *testing.T) {
	e := newEnv(t, testConfig(), 1)
	ctx := context.Background()
	links := []tccd.Link{e.parts[0].link(0)}
	if _, err := e.coord.CancelLinks(ctx, links, atomikos(links)); err != nil {
		t.Fatal(err)
	}
	_, err := e.coord.ConfirmLinks(ctx, links, atomikos(links))
	wantCode(t, err, tccd.ETimedOut)
	if s := e.parts[0].state(links[0]); s != testpart.Cancelled {
		t.Errorf("participant is %s", s)
	}
}

func TestRecoveryResumesDecisions(t *testing.T) {
	cfg := testConfig()
	cfg.ShutdownGrace = 50 * time.Millisecond
	e := newEnv(t, cfg, 2)
	ctx := context.Background()
	// Confirming: participant 0 is down (503) until after the restart.
	e.parts[0].svc.AddFault(testpart.Fault{Op: "any", Count: -1, Status: 503})
	conf := e.begin(time.Minute, e.parts[0].link(0), e.parts[1].link(0))
	canc := e.begin(time.Minute, e.parts[0].link(0))
	short := e.begin(300*time.Millisecond, e.parts[1].link(0))
	long := e.begin(time.Hour, e.parts[1].link(0))

	confirmed := make(chan struct{})
	go func() {
		defer close(confirmed)
		e.coord.Confirm(ctx, conf.ID, nil)
	}()
	e.waitState(conf.ID, tccd.StateConfirming)
	go e.coord.Cancel(ctx, canc.ID)
	e.waitState(canc.ID, tccd.StateCancelling)
	e.close()
	<-confirmed

	// While down, the short transaction's timeout passes.
	for time.Now().Before(short.Deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	clearFaults(t, e.parts[0])
	e.open()
	e.waitState(conf.ID, tccd.StateConfirmed)
	e.waitState(canc.ID, tccd.StateCancelled)
	if got := e.waitState(short.ID, tccd.StateCancelled); got.Reason != tccd.ReasonTimeout {
		t.Errorf("short: reason %s", got.Reason)
	}
	got, _ := e.coord.Get(ctx, long.ID)
	if got.State != tccd.StateActive {
		t.Errorf("long: state %s, want active", got.State)
	}
	if _, err := e.coord.Confirm(ctx, long.ID, nil); err != nil {
		t.Errorf("confirm after recovery: %v", err)
	}
}

func TestListAndPurge(t *testing.T) {
	cfg := testConfig()
	cfg.Retention = time.Hour
	e := newEnv(t, cfg, 1)
	ctx := context.Background()
	var ids []string
	for i := 0; i < 5; i++ {
		tx := e.begin(time.Minute, e.parts[0].link(0))
		ids = append(ids, tx.ID)
	}
	if _, err := e.coord.Confirm(ctx, ids[0], nil); err != nil {
		t.Fatal(err)
	}
	txs, next, err := e.coord.List(ctx, tccd.Filter{Limit: 3})
	if err != nil || len(txs) != 3 || next == "" {
		t.Fatalf("List = %d, %q, %v", len(txs), next, err)
	}
	if txs[0].ID != ids[4] {
		t.Errorf("newest first: got %s, want %s", txs[0].ID, ids[4])
	}
	txs, _, _ = e.coord.List(ctx, tccd.Filter{Limit: 10, State: tccd.StateConfirmed})
	if len(txs) != 1 || txs[0].ID != ids[0] {
		t.Fatalf("List(confirmed) = %v", txs)
	}
	if n, err := e.coord.Purge(ctx); n != 0 || err != nil {
		t.Fatalf("purged %d within retention (%v)", n, err)
	}
	e.close()
	e.cfg.Retention = time.Nanosecond
	e.open()
	if n, err := e.coord.Purge(ctx); n != 1 || err != nil {
		t.Fatalf("purged %d (%v), want 1", n, err)
	}
	_, err = e.coord.Get(ctx, ids[0])
	wantCode(t, err, tccd.ENotFound)
}

func TestCloseRefusesNewWork(t *testing.T) {
	e := newEnv(t, testConfig(), 0)
	coord := e.coord
	e.close()
	_, err := coord.Begin(context.Background(), tccd.BeginRequest{})
	wantCode(t, err, tccd.EUnavailable)
	if coord.Ready() {
		t.Error("closed coordinator reports ready")
	}
}

func ExampleCoordinator() {
	dir, _ := os.MkdirTemp("", "tccd-example")
	defer os.RemoveAll(dir)
	store, _ := pebble.Open(dir, pebble.Options{})
	defer store.Close()
	coord := tccd.NewCoordinator(tccd.Config{}, store, tccdhttp.NewCaller(), nil, nil)
	_ = coord.Open(context.Background())
	defer coord.Close()
	tx, _ := coord.Begin(context.Background(), tccd.BeginRequest{Timeout: 30 * time.Second})
	tx, _ = coord.Confirm(context.Background(), tx.ID, nil)
	fmt.Println(tx.State)
	// Output: confirmed
}
