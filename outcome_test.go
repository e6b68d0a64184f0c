package tccd_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/pebble"
)

// respell writes a participant URI another way that names the same
// reservation (RFC 3986 normalisation): upper-case scheme and host, the
// default port made explicit... here the host is an IP, so: the scheme,
// a dot segment and a percent-encoded unreserved character.
func respell(uri string) string {
	rest := strings.TrimPrefix(uri, "http://")
	host, path, _ := strings.Cut(rest, "/")
	path = strings.Replace(path, "reservations/", "x/../reservations/./", 1)
	path = strings.Replace(path, "r", "%72", 1)
	return "HTTP://" + host + "/" + path
}

// TestOneReservationOneIdentity: a reservation spelled another way is the
// same reservation: the same Atomikos transaction, a duplicate in a set,
// the same owner; it is stored, called and shown in canonical form.
func TestOneReservationOneIdentity(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	alice, bob := as("alice", tccd.RoleClient), as("bob", tccd.RoleClient)
	a, b := e.parts[0].link(0), e.parts[1].link(0)
	other := []tccd.Link{{URI: respell(a.URI), Expires: a.Expires}, {URI: respell(b.URI), Expires: b.Expires}}
	if other[0].URI == a.URI {
		t.Fatal("respell did not change the URI")
	}
	tx, err := e.coord.ConfirmLinks(alice, []tccd.Link{a, b}, atomikos([]tccd.Link{a, b}))
	if err != nil || tx.State != tccd.StateConfirmed {
		t.Fatalf("ConfirmLinks = %v, %v", tx, err)
	}
	again, err := e.coord.ConfirmLinks(alice, other, atomikos(other))
	if err != nil || again.ID != tx.ID {
		t.Fatalf("the re-spelled set is another transaction: %v, %v (first %s)", again, err, tx.ID)
	}
	if n := e.parts[0].stats().ConfirmCalls; n != 1 {
		t.Errorf("the reservation was confirmed %d times, want once", n)
	}
	// Another client cannot reach alice's set by re-spelling it.
	if _, err := e.coord.CancelLinks(bob, other, atomikos(other)); tccd.ErrorCode(err) != tccd.EForbidden {
		t.Fatalf("bob's cancel of alice's re-spelled set = %v, want forbidden", err)
	}
	// One reservation twice in a set is a duplicate, however spelled.
	c := e.parts[0].link(0)
	_, err = e.coord.ConfirmLinks(alice, []tccd.Link{c, {URI: respell(c.URI), Expires: c.Expires}}, atomikos([]tccd.Link{c, {URI: respell(c.URI), Expires: c.Expires}}))
	wantCode(t, err, tccd.EInvalid)
	reg := e.begin(time.Minute, c)
	if _, added, err := e.coord.Enlist(context.Background(), reg.ID, tccd.Link{URI: respell(c.URI), Expires: c.Expires}); err != nil || added {
		t.Fatalf("enlisting the same reservation re-spelled: added %v, %v", added, err)
	}
	// Stored and shown canonical.
	d := tccd.Link{URI: "HTTP://" + strings.TrimPrefix(e.parts[1].link(0).URI, "http://"), Expires: time.Now().Add(time.Minute)}
	reg2 := e.begin(time.Minute, d)
	if got := reg2.Participants[0].URI; got != strings.ToLower(d.URI[:7])+d.URI[7:] {
		t.Errorf("stored URI %q, want the canonical form", got)
	}
}

// TestRefusalAfterAConfirmKeepsConfirming: once a participant confirmed,
// a later refusal does not stop the others from being confirmed: the
// transaction ends heuristic with each participant's state.
func TestRefusalAfterAConfirmKeepsConfirming(t *testing.T) {
	cfg := testConfig()
	cfg.MaxParallel = 1 // one at a time, in order
	e := newEnv(t, cfg, 3)
	a, b, c := e.parts[0].link(0), e.parts[1].link(0), e.parts[2].link(0)
	e.parts[1].svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 400})
	tx := e.begin(time.Minute, a, b, c)
	_, err := e.coord.Confirm(context.Background(), tx.ID, nil)
	wantCode(t, err, tccd.EHeuristic)
	got := e.waitState(tx.ID, tccd.StateHeuristic)
	want := []tccd.ParticipantState{tccd.ParticipantConfirmed, tccd.ParticipantFailed, tccd.ParticipantConfirmed}
	for i, p := range got.Participants {
		if p.State != want[i] {
			t.Errorf("participant %d is %s, want %s", i, p.State, want[i])
		}
	}
	if s := e.parts[2].state(c); s != testpart.Confirmed {
		t.Errorf("the third participant is %s, want confirmed", s)
	}
	if got.Reason != tccd.ReasonMixedOutcome {
		t.Errorf("reason %s", got.Reason)
	}
}

// TestRetryWaitStopsAtExpiry: a participant's Retry-After longer than
// what is left of its link does not push the next attempt past the
// expiry, where its answer changes meaning.
func TestRetryWaitStopsAtExpiry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  testpart.Fault
		wantPS tccd.ParticipantState
	}{
		// 429: it did not act. At the expiry it has cancelled itself.
		{"not acted", testpart.Fault{Op: "confirm", Count: -1, Status: 429, RetryAfter: 5}, tccd.ParticipantExpired},
		// 503: it may have acted, so it is in doubt; asked again at the
		// expiry, it answers 404 (it expired).
		{"in doubt", testpart.Fault{Op: "confirm", Count: 1, Status: 503, RetryAfter: 5}, tccd.ParticipantCancelled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, testConfig(), 1)
			a := e.parts[0].link(800 * time.Millisecond)
			e.parts[0].svc.AddFault(tc.fault)
			tx := e.begin(time.Minute, a)
			_, err := e.coord.Confirm(context.Background(), tx.ID, nil)
			wantCode(t, err, tccd.ETimedOut)
			got := e.waitState(tx.ID, tccd.StateCancelled)
			p := got.Participants[0]
			if p.State != tc.wantPS || p.Attempts != 2 {
				t.Fatalf("participant %+v, want %s after 2 attempts", p, tc.wantPS)
			}
			// Retry-After said 5 s; the link had under a second.
			if late := p.LastAttemptAt.Sub(a.Expires); late > 2*time.Second {
				t.Errorf("the second attempt came %v after the expiry: the wait was not clamped to it", late)
			}
		})
	}
}

// TestExpiryMarginBoundary pins the boundary of the expiry safety margin:
// a link expiring exactly at now + margin may be confirmed; one expiring
// a nanosecond earlier is refused (the transaction is cancelled, reason
// expiry_margin).
func TestExpiryMarginBoundary(t *testing.T) {
	now := time.Now().Truncate(time.Millisecond)
	cfg := testConfig()
	cfg.MarginFloor = 30 * time.Second
	for _, tc := range []struct {
		name    string
		expires time.Time
		confirm bool
	}{
		{"at now+margin", now.Add(30 * time.Second), true},
		{"a nanosecond inside the margin", now.Add(30*time.Second - time.Nanosecond), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cfg, 1)
			e.close()
			e.clock = fixedClock{now}
			e.open()
			// The reservation itself lives long: only the link handed to
			// the coordinator carries the expiry under test.
			r := e.parts[0].link(time.Hour)
			tx := e.begin(time.Hour, tccd.Link{URI: r.URI, Expires: tc.expires})
			got, err := e.coord.Confirm(context.Background(), tx.ID, nil)
			if tc.confirm {
				if err != nil || got.State != tccd.StateConfirmed {
					t.Fatalf("Confirm = %v, %v; want confirmed", got, err)
				}
				return
			}
			wantCode(t, err, tccd.ETimedOut)
			if r := tccd.ErrorTx(err).Reason; r != tccd.ReasonExpiryMargin {
				t.Errorf("reason %s, want expiry_margin", r)
			}
		})
	}
}

// fixedClock is a clock that does not move.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// flakyStore refuses writes while failing is set, as a full disk does.
type flakyStore struct {
	tccd.Store
	failing atomic.Bool
}

var errDiskFull = errors.New("no space left on device")

func (s *flakyStore) Update(ctx context.Context, tx *tccd.Transaction, durable bool) error {
	if s.failing.Load() {
		return errDiskFull
	}
	return s.Store.Update(ctx, tx, durable)
}

// TestRedriveFinishesWithoutARestart: a driver that cannot record the
// outcome stops, leaving the transaction decided; the re-drive loop
// finishes it once the store accepts writes again, with no restart and no
// repeated request.
func TestRedriveFinishesWithoutARestart(t *testing.T) {
	cfg := testConfig()
	cfg.RedriveInterval = 50 * time.Millisecond
	e := newEnv(t, cfg, 1)
	e.close()
	fs := &flakyStore{}
	e.wrap = func(s tccd.Store) tccd.Store { fs.Store = s; return fs }
	e.open()
	a := e.parts[0].link(0)
	tx := e.begin(time.Minute, a)
	// The decision is written; then every write fails: the participant is
	// confirmed, but neither progress nor outcome can be recorded.
	e.parts[0].svc.SetLatency(50 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.coord.Confirm(context.Background(), tx.ID, nil)
	}()
	for e.parts[0].stats().ConfirmCalls == 0 {
		time.Sleep(time.Millisecond)
	}
	fs.failing.Store(true)
	<-done
	if got, _ := e.coord.Get(context.Background(), tx.ID); got.State != tccd.StateConfirming {
		t.Fatalf("state %s while the store refuses writes, want confirming", got.State)
	}
	fs.failing.Store(false)
	e.waitState(tx.ID, tccd.StateConfirmed)
}

// TestTimeoutCancelRetriedAfterAStoreFailure: a transaction whose
// timeout passes while the store refuses writes stays active — the cancel
// could not be recorded — and is cancelled once the store accepts writes
// again, with no restart and no request.
func TestTimeoutCancelRetriedAfterAStoreFailure(t *testing.T) {
	cfg := testConfig()
	cfg.RedriveInterval = 50 * time.Millisecond
	e := newEnv(t, cfg, 1)
	e.close()
	fs := &flakyStore{}
	e.wrap = func(s tccd.Store) tccd.Store { fs.Store = s; return fs }
	e.open()
	a := e.parts[0].link(0)
	tx := e.begin(200*time.Millisecond, a)
	fs.failing.Store(true)
	time.Sleep(500 * time.Millisecond) // the timeout fires; its write fails
	if got, _ := e.coord.Get(context.Background(), tx.ID); got.State != tccd.StateActive {
		t.Fatalf("state %s while the store refuses writes, want active", got.State)
	}
	fs.failing.Store(false)
	e.waitState(tx.ID, tccd.StateCancelled)
}

// TestShutdownKeepsWhatArrives: at shutdown, a participant that answers
// within the grace has its answer recorded, and the waiting request is
// answered with the outcome; the next start sends nothing again.
func TestShutdownKeepsWhatArrives(t *testing.T) {
	cfg := testConfig()
	cfg.ShutdownGrace = 5 * time.Second
	e := newEnv(t, cfg, 1)
	a := e.parts[0].link(0)
	e.parts[0].svc.SetLatency(300 * time.Millisecond)
	tx := e.begin(time.Minute, a)
	type answer struct {
		tx  *tccd.Transaction
		err error
	}
	ans := make(chan answer, 1)
	go func() {
		got, err := e.coord.Confirm(context.Background(), tx.ID, nil)
		ans <- answer{got, err}
	}()
	for e.parts[0].stats().ConfirmCalls == 0 {
		time.Sleep(time.Millisecond)
	}
	e.coord.Close() // the call is in flight; it answers within the grace
	got := <-ans
	if got.err != nil || got.tx.State != tccd.StateConfirmed {
		t.Fatalf("the waiting confirm was answered %v, %v; want confirmed", got.tx, got.err)
	}
	e.store.Close()
	e.coord, e.store = nil, nil
	e.open()
	if cur, err := e.coord.Get(context.Background(), tx.ID); err != nil || cur.State != tccd.StateConfirmed {
		t.Fatalf("after restart: %v, %v; want confirmed", cur, err)
	}
	if n := e.parts[0].stats().ConfirmCalls; n != 1 {
		t.Errorf("%d confirm calls, want 1: the restart sent it again", n)
	}
}

// logRecorder keeps the log records of a test.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// find returns the records at level whose message contains msg, as
// maps of their attributes.
func (l *logRecorder) find(level slog.Level, msg string) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.recs {
		if r.Level != level || !strings.Contains(r.Message, msg) {
			continue
		}
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		out = append(out, attrs)
	}
	return out
}

// noDNS is a resolver for which no name resolves, as for a host name
// that does not exist; nothing leaves the machine.
type noDNS struct{}

func (noDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// TestParticipantTroubleIsLogged: retries are logged at debug level with
// the transaction, the host and the status; a host that does not resolve
// is a rate-limited warning naming it; a permanent failure and a
// heuristic outcome are warnings and errors.
func TestParticipantTroubleIsLogged(t *testing.T) {
	rec := &logRecorder{}
	log := slog.New(rec)
	store, err := pebble.Open(t.TempDir(), pebble.Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	caller := tccdhttp.NewCallerWith(tccdhttp.CallerConfig{Resolver: noDNS{}})
	coord := tccd.NewCoordinator(testConfig(), store, caller, nil, log)
	if err := coord.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer coord.Close()

	// A host that does not resolve, until its link expires.
	tx, err := coord.Begin(context.Background(), tccd.BeginRequest{Participants: []tccd.Link{
		{URI: "http://no-such-host.invalid/r/1", Expires: time.Now().Add(700 * time.Millisecond)}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := coord.Confirm(context.Background(), tx.ID, nil); tccd.ErrorCode(err) != tccd.ETimedOut {
		t.Fatalf("Confirm = %v", err)
	}
	debug := rec.find(slog.LevelDebug, "does not resolve")
	warn := rec.find(slog.LevelWarn, "does not resolve")
	if len(debug) < 3 || len(warn) != 1 {
		t.Fatalf("%d debug and %d warning records of the unresolvable host; want every retry at debug, one (rate-limited) warning", len(debug), len(warn))
	}
	if w := warn[0]; w["host"] != "no-such-host.invalid" || w["id"] != tx.ID {
		t.Errorf("warning %v lacks the host or the transaction", w)
	}

	// A participant that answers 503 once, then refuses (400).
	p := testpart.NewTest(t, time.Minute)
	srv := httptest.NewServer(p)
	defer srv.Close()
	p.AddFault(testpart.Fault{Op: "confirm", Count: 1, Status: 503})
	p.AddFault(testpart.Fault{Op: "confirm", Count: 1, Status: 400})
	r1, err := p.Try(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	tx2, err := coord.Begin(context.Background(), tccd.BeginRequest{Participants: []tccd.Link{
		{URI: srv.URL + "/reservations/" + r1.ID, Expires: r1.Expires}}})
	if err != nil {
		t.Fatal(err)
	}
	coord.Confirm(context.Background(), tx2.ID, nil)
	retries := rec.find(slog.LevelDebug, "participant call failed; retrying")
	found := false
	for _, r := range retries {
		if r["id"] == tx2.ID && r["status"] == "503" && r["host"] == strings.TrimPrefix(srv.URL, "http://") {
			found = true
		}
	}
	if !found {
		t.Errorf("no debug record of the 503 retry with id, host and status: %v", retries)
	}
	if refused := rec.find(slog.LevelWarn, "refused to confirm"); len(refused) != 1 || refused[0]["status"] != "400" || refused[0]["id"] != tx2.ID {
		t.Errorf("permanent failure records: %v", refused)
	}
}

// TestResumedConfirmIsInDoubt: after a restart, the coordinator cannot
// know which confirms the earlier run sent (their progress was not
// synced): a participant of a resumed confirm that gives no definite
// answer until its link expires is in doubt, not expired — here it had
// confirmed, and the PUT asked again after the expiry says so.
func TestResumedConfirmIsInDoubt(t *testing.T) {
	e := newEnv(t, testConfig(), 1)
	a := e.parts[0].link(time.Second)
	tx := e.begin(time.Minute, a)
	// The first run's confirm lands, and the run stops before it records
	// anything of it: the record says the participant is pending, as it
	// would after a crash that lost the unsynced progress.
	e.parts[0].svc.AddFault(testpart.Fault{Op: "confirm", Count: 1, ApplyThenFail: true, Status: 502})
	cur, err := e.coord.Get(context.Background(), tx.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Decide as the first run did, and land its PUT by hand.
	next := cur.Clone()
	next.State, next.Reason, next.DecidedAt = tccd.StateConfirming, tccd.ReasonRequested, time.Now()
	if err := e.store.Update(context.Background(), next, true); err != nil {
		t.Fatal(err)
	}
	if code := confirmByHand(t, a.URI); code != 0 {
		t.Fatalf("the first run's PUT: %d, want its reply lost", code)
	}
	if s := e.parts[0].state(a); s != testpart.Confirmed {
		t.Fatalf("participant %s after the first run's PUT", s)
	}
	// Restart: the participant answers 429 (it did not act on those
	// calls) until after its link's expiry.
	e.parts[0].svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 429})
	e.close()
	e.open()
	for {
		cur, _ := e.coord.Get(context.Background(), tx.ID)
		if p := cur.Participants[0]; p.LastAttemptAt.After(a.Expires) {
			if cur.State != tccd.StateConfirming || p.State != tccd.ParticipantInDoubt {
				t.Fatalf("past the expiry: %s, participant %+v; want confirming, in doubt", cur.State, p)
			}
			break
		}
		if cur.State.Final() {
			t.Fatalf("ended %s before the expiry passed: %+v", cur.State, cur.Participants[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
	clearFaults(t, e.parts[0])
	end := e.waitState(tx.ID, tccd.StateConfirmed)
	if p := end.Participants[0]; p.State != tccd.ParticipantConfirmed {
		t.Fatalf("participant %+v", p)
	}
}

// confirmByHand sends the PUT a coordinator would, and returns the status
// (0 if the connection was dropped before an answer).
func confirmByHand(t *testing.T, uri string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, uri, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
