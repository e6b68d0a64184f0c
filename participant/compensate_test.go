package participant_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/participant"
	"github.com/tccd/tccd/pebble"
)

// compensate makes a harness's participant compensate-style, asking the
// coordinator at coord with token tok.
func compensate(coord, tok string) func(*participant.Config) {
	return func(c *participant.Config) {
		c.Style, c.Coordinator, c.CoordinatorToken = participant.StyleCompensate, coord, tok
	}
}

// TestCompensateConfig: what New refuses up front.
func TestCompensateConfig(t *testing.T) {
	sp := openServer(t, backends[0]).newSpace(t)
	ctx := context.Background()
	if err := participant.Migrate(ctx, sp.db, sp.d, ""); err != nil {
		t.Fatal(err)
	}
	app := newBizApp(t, sp)
	base := participant.Config{DB: sp.db, Dialect: sp.d, Try: app.try, Cancel: app.cancel, Style: participant.StyleCompensate,
		Coordinator: "http://127.0.0.1:8420"}
	tests := []struct {
		name  string
		tweak func(*participant.Config)
		want  string // "" for accepted
	}{
		{"compensate without Confirm", func(*participant.Config) {}, ""},
		{"compensate with Confirm", func(c *participant.Config) { c.Confirm = app.confirm }, ""},
		{"compensate without Coordinator", func(c *participant.Config) { c.Coordinator = "" }, `Style "compensate" needs Coordinator`},
		{"compensate without Cancel", func(c *participant.Config) { c.Cancel = nil }, "Try and Cancel are required"},
		{"TCC without Confirm", func(c *participant.Config) { c.Style = "" }, "Try, Confirm and Cancel are required"},
		{"TCC spelled out", func(c *participant.Config) { c.Style, c.Confirm = participant.StyleTCC, app.confirm }, ""},
		{"unknown style", func(c *participant.Config) { c.Style = "saga" }, `Style "saga"`},
		{"negative grace", func(c *participant.Config) { c.CompensateGrace = -time.Second }, "CompensateGrace must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.tweak(&cfg)
			_, err := participant.New(ctx, cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("New = %v; want an error with %q", err, tt.want)
			}
		})
	}
}

// TestCompensateTry: a compensate-style try needs the transaction id; its
// link says style "compensate" (body and Link header), and a repeated try
// says so again; the row keeps the transaction id and the URI.
func TestCompensateTry(t *testing.T) {
	h := newHarness(t, openServer(t, backends[0]), compensate("http://127.0.0.1:1", ""))
	a := h.try("", "").answer
	wantStatus(t, "try without a transaction id", a, http.StatusBadRequest)
	if p := a.problem(t); !strings.Contains(p.Detail, api.HeaderTransactionID) {
		t.Errorf("detail %q does not name the header", p.Detail)
	}
	wantStatus(t, "try with a bad transaction id", h.try("", "a b").answer, http.StatusBadRequest)
	if h.app.tries.Load() != 0 {
		t.Errorf("the application's Try ran %d times for refused tries", h.app.tries.Load())
	}
	for i, want := range []int{http.StatusCreated, http.StatusOK} {
		l := h.try("", "tx-1")
		wantStatus(t, "try", l.answer, want)
		var body struct {
			ParticipantLink struct{ Style string } `json:"participantLink"`
		}
		json.Unmarshal(l.body, &body)
		if body.ParticipantLink.Style != "compensate" || !strings.Contains(l.header.Get("Link"), `style="compensate"`) {
			t.Errorf("try %d: link %s, Link header %q; want style compensate in both", i, l.body, l.header.Get("Link"))
		}
		rec := h.record(l.id)
		if rec.Style != participant.StyleCompensate || rec.Transaction != "tx-1" || rec.URI != l.uri || rec.State != participant.Tried {
			t.Errorf("record %+v", rec)
		}
	}
	if g := h.do(http.MethodGet, h.uriOf(h.record(participant.DeriveID("tx-1", txIDResource)).ID), nil); g.status != http.StatusOK ||
		!strings.Contains(string(g.body), `"style":"compensate","transaction":"tx-1"`) {
		t.Errorf("GET: %d %s", g.status, g.body)
	}
	// A TCC try's link has no style; its row keeps the transaction id.
	tcc := newHarness(t, openServer(t, backends[0]))
	l := tcc.mustTry("", "tx-2")
	if strings.Contains(string(l.body), "style") || strings.Contains(l.header.Get("Link"), "style") {
		t.Errorf("TCC link with a style: %s %q", l.body, l.header.Get("Link"))
	}
	if rec := tcc.record(l.id); rec.Style != "" || rec.Transaction != "tx-2" {
		t.Errorf("TCC record %+v", rec)
	}
	wantStatus(t, "TCC try without a transaction id", tcc.try("", "").answer, http.StatusCreated)
}

// fakeOutcome is a coordinator that answers questions for an outcome as
// told, and keeps them.
type fakeOutcome struct {
	srv *httptest.Server

	mu      sync.Mutex
	status  int
	ctype   string
	body    string
	asked   []fakeQuestion
	hangups bool // close the connection instead of answering
}

type fakeQuestion struct{ path, uri, auth string }

func newFakeOutcome(t *testing.T) *fakeOutcome {
	f := &fakeOutcome{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var q api.OutcomeRequest
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &q)
		f.mu.Lock()
		f.asked = append(f.asked, fakeQuestion{path: r.Method + " " + r.URL.EscapedPath(), uri: q.URI, auth: r.Header.Get("Authorization")})
		status, ctype, body, hangup := f.status, f.ctype, f.body, f.hangups
		f.mu.Unlock()
		if hangup {
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOutcome) answer(status int, ctype, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.ctype, f.body, f.hangups = status, ctype, body, false
}

func (f *fakeOutcome) questions() []fakeQuestion {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeQuestion(nil), f.asked...)
}

// syncBuf is a log the test reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCompensateAnswers: what the sweeper does with each answer of the
// coordinator, for a compensate-style reservation past its expiry. It
// keeps the work (confirmed, Confirm run) only for a transaction
// confirmed for good; undoes it (expired, Cancel run) only when no
// confirm decision can include it; and otherwise leaves it tried and
// asks again after a back-off — also when the answer is an error, a 404
// that is not the coordinator's "no such participant", or a state it
// does not know. Undecided, the next question waits for the back-off;
// a 404 within the grace waits for the grace's end.
func TestCompensateAnswers(t *testing.T) {
	const problem = api.MediaProblem
	outcome := func(tx, part string) string {
		return `{"transaction":"tx-1","state":"` + tx + `","participant":{"uri":"U","state":"` + part + `"}}`
	}
	noParticipant := `{"type":"urn:tccd:problem:not_found","title":"Not Found","status":404,"code":"not_found","field":"uri","detail":"no transaction tx-1 with a participant U"}`
	tests := []struct {
		name         string
		status       int
		ctype, body  string
		hangup       bool
		late         time.Duration // past the expiry when asked (default 1s)
		want         participant.State
		confirms     int64
		cancels      int64
		wantWarn     string
		askedAgainIn time.Duration // undecided: asked again after this, not before
	}{
		{name: "confirmed", status: 200, ctype: api.MediaJSON, body: outcome("confirmed", "confirmed"), want: participant.Confirmed, confirms: 1},
		{name: "heuristic, counted confirmed", status: 200, ctype: api.MediaJSON, body: outcome("heuristic", "confirmed"), want: participant.Confirmed, confirms: 1},
		{name: "confirming", status: 200, ctype: api.MediaJSON, body: outcome("confirming", "confirmed"), want: participant.Tried, askedAgainIn: time.Second},
		{name: "active", status: 200, ctype: api.MediaJSON, body: outcome("active", "pending"), want: participant.Tried, askedAgainIn: time.Second},
		{name: "cancelling", status: 200, ctype: api.MediaJSON, body: outcome("cancelling", "pending"), want: participant.Expired, cancels: 1},
		{name: "turned to cancel after the decision", status: 200, ctype: api.MediaJSON, body: outcome("cancelling", "confirmed"), want: participant.Expired, cancels: 1},
		{name: "cancelled", status: 200, ctype: api.MediaJSON, body: outcome("cancelled", "expired"), want: participant.Expired, cancels: 1},
		{name: "compensated", status: 200, ctype: api.MediaJSON, body: outcome("compensated", "compensated"), want: participant.Expired, cancels: 1},
		{name: "unknown states", status: 200, ctype: api.MediaJSON, body: outcome("decided", "done"), want: participant.Tried, wantWarn: "states this kit does not know", askedAgainIn: time.Second},
		{name: "another transaction's answer", status: 200, ctype: api.MediaJSON, body: strings.Replace(outcome("confirmed", "confirmed"), "tx-1", "tx-2", 1), want: participant.Tried, wantWarn: "not about transaction tx-1"},
		{name: "not found after the grace", status: 404, ctype: problem, body: noParticipant, late: 10 * time.Second, want: participant.Expired, cancels: 1},
		{name: "not found within the grace", status: 404, ctype: problem, body: noParticipant, want: participant.Tried, askedAgainIn: 9 * time.Second},
		{name: "404 of a path not served", status: 404, ctype: problem, late: time.Hour, body: `{"type":"urn:tccd:problem:not_found","status":404,"code":"not_found","detail":"no such resource"}`, want: participant.Tried, wantWarn: "does not serve participant outcomes"},
		{name: "404 in plain text", status: 404, ctype: "text/plain", late: time.Hour, body: "404 page not found", want: participant.Tried, wantWarn: "does not serve participant outcomes"},
		{name: "wrong token", status: 401, ctype: problem, body: `{"code":"unauthorized"}`, want: participant.Tried, wantWarn: "401 Unauthorized"},
		{name: "coordinator failing", status: 503, ctype: problem, body: `{"code":"unavailable"}`, want: participant.Tried, wantWarn: "503 Service Unavailable"},
		{name: "connection lost", hangup: true, want: participant.Tried, wantWarn: "cannot learn the outcome"},
	}
	s := openServer(t, backends[0])
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOutcome(t)
			f.answer(tt.status, tt.ctype, tt.body)
			f.hangups = tt.hangup
			logs := &syncBuf{}
			h := newHarness(t, s, compensate(f.srv.URL+"/", "svc-token"), func(c *participant.Config) {
				c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			})
			l := h.mustTry("?ttl=1m", "tx-1")
			ctx := context.Background()
			// Before the expiry nobody is asked.
			h.clock.Advance(time.Minute - time.Millisecond)
			if n, err := h.p.Sweep(ctx); n != 0 || err != nil || len(f.questions()) != 0 {
				t.Fatalf("before the expiry: Sweep = %d, %v; %d questions", n, err, len(f.questions()))
			}
			late := tt.late
			if late == 0 {
				late = time.Second
			}
			h.clock.Set(l.expires.Add(late))
			n, err := h.p.Sweep(ctx)
			if err != nil {
				t.Fatalf("Sweep: %v", err)
			}
			q := f.questions()
			if len(q) != 1 || q[0].path != "POST /api/v1/transactions/tx-1/participants/outcome" || q[0].uri != l.uri || q[0].auth != "Bearer svc-token" {
				t.Fatalf("questions %+v; want one about tx-1 and %s with the token", q, l.uri)
			}
			rec := h.record(l.id)
			hold := h.app.holding(t, l.id)
			if rec.State != tt.want || hold.confirms != int(tt.confirms) || hold.cancels != int(tt.cancels) {
				t.Errorf("reservation %s, holding %+v; want %s, %d confirms, %d cancels", rec.State, hold, tt.want, tt.confirms, tt.cancels)
			}
			if wantN := int(tt.cancels); n != wantN {
				t.Errorf("Sweep = %d, want %d", n, wantN)
			}
			if tt.wantWarn != "" && !strings.Contains(logs.String(), tt.wantWarn) {
				t.Errorf("log %q lacks %q", logs.String(), tt.wantWarn)
			}
			if tt.want != participant.Tried {
				// Settled: never asked about again.
				h.clock.Advance(time.Hour)
				h.p.Sweep(ctx)
				if len(f.questions()) != 1 {
					t.Errorf("asked %d times about a settled reservation", len(f.questions()))
				}
				return
			}
			if tt.askedAgainIn == 0 {
				tt.askedAgainIn = time.Second // the coordinator's own back-off
			}
			h.clock.Advance(tt.askedAgainIn - time.Millisecond)
			h.p.Sweep(ctx)
			if len(f.questions()) != 1 {
				t.Errorf("asked again %v later; want to wait %v", tt.askedAgainIn-time.Millisecond, tt.askedAgainIn)
			}
			h.clock.Advance(time.Millisecond)
			h.p.Sweep(ctx)
			if len(f.questions()) != 2 {
				t.Errorf("not asked again after %v (%d questions)", tt.askedAgainIn, len(f.questions()))
			}
		})
	}
}

// TestCompensateWarnsOncePerMinute: a coordinator that stays away is
// logged once a minute, with the count of warnings skipped, not at every
// sweep.
func TestCompensateWarnsOncePerMinute(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	logs := &syncBuf{}
	h := newHarness(t, openServer(t, backends[0]), compensate(dead.URL, ""), func(c *participant.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	l := h.mustTry("?ttl=1m", "tx-1")
	h.clock.Set(l.expires)
	for range 120 { // two minutes, a sweep a second
		if _, err := h.p.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(time.Second)
	}
	if n := strings.Count(logs.String(), "cannot learn the outcome"); n != 2 {
		t.Errorf("%d warnings in two minutes, want 2:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "warnings_skipped=") {
		t.Errorf("the warning does not count the skipped ones: %s", logs.String())
	}
	if st := h.record(l.id).State; st != participant.Tried || h.app.cancels.Load() != 0 {
		t.Errorf("reservation %s, %d cancels; want nothing undone", st, h.app.cancels.Load())
	}
}

// Tokens of the real coordinator's clients: the initiator, and the
// participant service, which asks with a token of its own.
const initiatorTok, serviceTok = "tccd_initiator-token", "tccd_seat-service-token"

// realCoordinator is tccd in-process — a Pebble store, the HTTP API with
// authentication on — on a loopback address it can leave and come back
// to (down, up), on clock. It counts the questions for an outcome.
type realCoordinator struct {
	t       *testing.T
	coord   *tccd.Coordinator
	handler http.Handler
	addr    string
	asked   atomic.Int64

	mu  sync.Mutex
	srv *http.Server
}

func newRealCoordinator(t *testing.T, clock tccd.Clock) *realCoordinator {
	t.Helper()
	store, err := pebble.Open(t.TempDir(), pebble.Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	caller := tccdhttp.NewCaller()
	coord := tccd.NewCoordinator(tccd.Config{
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, ConfirmWait: 10 * time.Second, CallTimeout: 2 * time.Second,
	}, store, caller, clock, nil)
	if err := coord.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	toks, err := tccdhttp.ParseTokens(strings.NewReader("initiator client " + tccdhttp.HashToken(initiatorTok) +
		"\nseats client " + tccdhttp.HashToken(serviceTok) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	api := tccdhttp.NewServer(coord, tccdhttp.ServerConfig{Tokens: toks}, nil)
	rc := &realCoordinator{t: t, coord: coord}
	rc.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/participants/outcome") {
			rc.asked.Add(1)
		}
		api.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc.addr = ln.Addr().String()
	rc.serve(ln)
	t.Cleanup(func() {
		rc.down()
		coord.Close()
		caller.Close()
		store.Close()
	})
	return rc
}

func (rc *realCoordinator) URL() string { return "http://" + rc.addr }

func (rc *realCoordinator) serve(ln net.Listener) {
	srv := &http.Server{Handler: rc.handler}
	rc.mu.Lock()
	rc.srv = srv
	rc.mu.Unlock()
	go srv.Serve(ln)
}

// down closes the listener and every connection: nothing answers there.
func (rc *realCoordinator) down() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.srv != nil {
		rc.srv.Close()
		rc.srv = nil
	}
}

// up listens on the same address again.
func (rc *realCoordinator) up() {
	rc.t.Helper()
	ln, err := net.Listen("tcp", rc.addr)
	if err != nil {
		rc.t.Fatalf("listen again on %s: %v", rc.addr, err)
	}
	rc.serve(ln)
}

// compensateEnv is a compensate-style participant on the kit and a real
// coordinator sharing one clock (one machine's time), and an initiator.
// The participant is reached through front, whose answers can be made
// 503 (away).
type compensateEnv struct {
	h     *harness
	rc    *realCoordinator
	c     *client.Client
	clock *fakeClock
	front *httptest.Server
	away  atomic.Bool
}

func newCompensateEnv(t *testing.T, s *server) *compensateEnv {
	t.Helper()
	clock := newClock()
	clock.Set(time.Now())
	e := &compensateEnv{clock: clock, rc: newRealCoordinator(t, clock)}
	e.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.away.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		e.h.p.ServeHTTP(w, r)
	}))
	t.Cleanup(e.front.Close)
	e.h = newHarness(t, s, compensate(e.rc.URL(), serviceTok), func(c *participant.Config) {
		c.Now, c.BaseURL = clock.Now, e.front.URL
	})
	e.h.clock = clock
	var err error
	if e.c, err = client.New(e.rc.URL(), client.WithHeader("Authorization", "Bearer "+initiatorTok)); err != nil {
		t.Fatal(err)
	}
	return e
}

// tryIn begins a transaction (unless tx is given) and tries at the
// participant within it, as an initiator does: through the client's
// transport, which sends the transaction's headers and enlists the link
// the answer reports — with its style.
func (e *compensateEnv) tryIn(t *testing.T, tx *client.Tx) (*client.Tx, string) {
	t.Helper()
	ctx := context.Background()
	if tx == nil {
		var err error
		if tx, err = e.c.Begin(ctx, client.WithTimeout(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequestWithContext(client.NewContext(ctx, tx), http.MethodPost, e.front.URL+"/reservations?ttl=1m", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.c.WrapHTTPClient(nil).Do(req)
	if err != nil {
		t.Fatalf("try: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("try: %s", resp.Status)
	}
	got, err := e.c.Get(ctx, tx.ID())
	if err != nil || len(got.Participants) != 1 || got.Participants[0].Style != "compensate" {
		t.Fatalf("transaction %+v, %v; want the link enlisted with style compensate", got, err)
	}
	uri := got.Participants[0].URI
	return tx, uri[strings.LastIndexByte(uri, '/')+1:]
}

// sweepAt sets the clock to t and sweeps.
func (e *compensateEnv) sweepAt(t *testing.T, at time.Time) int {
	t.Helper()
	e.clock.Set(at)
	n, err := e.h.p.Sweep(context.Background())
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	return n
}

// want checks a reservation's row and its application's holding: its
// state, and how often Confirm and Cancel committed.
func (e *compensateEnv) want(t *testing.T, what, id string, st participant.State, confirms, cancels int) {
	t.Helper()
	rec, hold := e.h.record(id), e.h.app.holding(t, id)
	if rec.State != st || hold.confirms != confirms || hold.cancels != cancels {
		t.Errorf("%s: reservation %s, holding %+v; want %s with %d confirms and %d cancels", what, rec.State, hold, st, confirms, cancels)
	}
}

// TestCompensateWithCoordinator: a compensate-style participant on the
// kit, with a real coordinator that requires tokens (the participant
// asks with its service's own token, not the initiator's), on every
// backend. Nothing is sent to the participant on confirm; at the
// reservation's expiry the kit asks, and:
//
//   - confirmed: keeps the work (Confirm runs, Cancel never);
//   - the coordinator never heard of the transaction, or of this link in
//     it: undoes the work once the grace has passed, not before;
//   - cancelled: the coordinator's DELETE undid it already, and the
//     sweeper does not undo it again;
//   - the coordinator down at the expiry: nothing is kept or undone
//     until it answers, then each as its answer says;
//   - the transaction still active past the expiry: nothing is undone
//     while it is; the initiator's confirm then comes too late — the
//     coordinator refuses to confirm a link past its expiry — and cancels,
//     and the DELETE undoes the work.
func TestCompensateWithCoordinator(t *testing.T) {
	ctx := context.Background()
	grace := participant.DefaultCompensateGrace
	forEachBackend(t, func(t *testing.T, s *server) {
		t.Run("confirmed", func(t *testing.T) {
			e := newCompensateEnv(t, s)
			tx, id := e.tryIn(t, nil)
			if got, err := tx.Confirm(ctx); err != nil || got.State != "confirmed" {
				t.Fatalf("confirm: %+v, %v", got, err)
			}
			e.want(t, "confirmed, before the expiry: nothing sent", id, participant.Tried, 0, 0)
			exp := e.h.record(id).Expires
			if n := e.sweepAt(t, exp.Add(-time.Millisecond)); n != 0 || e.rc.asked.Load() != 0 {
				t.Fatalf("before the expiry: %d undone, %d questions", n, e.rc.asked.Load())
			}
			if n := e.sweepAt(t, exp); n != 0 {
				t.Fatalf("Sweep undid %d", n)
			}
			e.want(t, "at the expiry", id, participant.Confirmed, 1, 0)
			e.sweepAt(t, exp.Add(time.Hour))
			if e.rc.asked.Load() != 1 {
				t.Errorf("%d questions; want one", e.rc.asked.Load())
			}
			e.want(t, "later", id, participant.Confirmed, 1, 0)
		})

		t.Run("never heard of", func(t *testing.T) {
			e := newCompensateEnv(t, s)
			// A transaction id the coordinator never issued.
			unknown := e.h.mustTry("?ttl=1m", "01NEVERHEARDOF00000000000")
			// A transaction begun, tried in, and never told of the link
			// (the initiator died before enlisting it).
			tx, err := e.c.Begin(ctx, client.WithTimeout(2*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			unenlisted := e.h.mustTry("?ttl=1m", tx.ID())
			exp := e.h.record(unenlisted.id).Expires
			if n := e.sweepAt(t, exp.Add(grace-time.Millisecond)); n != 0 {
				t.Fatalf("within the grace: %d undone", n)
			}
			e.want(t, "unknown transaction, within the grace", unknown.id, participant.Tried, 0, 0)
			e.want(t, "unknown link, within the grace", unenlisted.id, participant.Tried, 0, 0)
			if n := e.sweepAt(t, exp.Add(grace)); n != 2 {
				t.Fatalf("after the grace: %d undone, want 2", n)
			}
			e.want(t, "unknown transaction", unknown.id, participant.Expired, 0, 1)
			e.want(t, "unknown link", unenlisted.id, participant.Expired, 0, 1)
			// A late enlist cannot bring it back into the transaction:
			// the link has expired for the coordinator too.
			if err := tx.Enlist(ctx, client.Link{URI: unenlisted.uri, Expires: unenlisted.expires, Style: client.StyleCompensate}); err == nil {
				t.Error("the expired link was enlisted")
			}
		})

		t.Run("cancelled", func(t *testing.T) {
			e := newCompensateEnv(t, s)
			tx, id := e.tryIn(t, nil)
			if got, err := tx.Cancel(ctx); err != nil || got.State != "cancelled" {
				t.Fatalf("cancel: %+v, %v", got, err)
			}
			e.want(t, "after the DELETE", id, participant.Cancelled, 0, 1)
			final, err := e.c.Get(ctx, tx.ID())
			if err != nil || final.Participants[0].State != "compensated" {
				t.Fatalf("transaction %+v, %v; want the participant compensated", final, err)
			}
			if n := e.sweepAt(t, e.h.record(id).Expires.Add(time.Hour)); n != 0 {
				t.Errorf("Sweep undid %d", n)
			}
			e.want(t, "after the expiry", id, participant.Cancelled, 0, 1)
			if e.rc.asked.Load() != 0 {
				t.Errorf("asked %d times about a cancelled reservation", e.rc.asked.Load())
			}
		})

		t.Run("coordinator down at the expiry", func(t *testing.T) {
			e := newCompensateEnv(t, s)
			tx, confirmedID := e.tryIn(t, nil)
			if _, err := tx.Confirm(ctx); err != nil {
				t.Fatal(err)
			}
			unknown := e.h.mustTry("?ttl=1m", "01NEVERHEARDOF00000000001")
			exp := e.h.record(confirmedID).Expires
			e.rc.down()
			for i := range 10 { // ten minutes, past every back-off
				if n := e.sweepAt(t, exp.Add(grace+time.Duration(i)*time.Minute)); n != 0 {
					t.Fatalf("coordinator down: %d undone", n)
				}
			}
			e.want(t, "confirmed, coordinator down", confirmedID, participant.Tried, 0, 0)
			e.want(t, "unknown, coordinator down", unknown.id, participant.Tried, 0, 0)
			if e.rc.asked.Load() != 0 {
				t.Fatalf("%d questions reached a coordinator that was down", e.rc.asked.Load())
			}
			e.rc.up()
			if n := e.sweepAt(t, exp.Add(grace+11*time.Minute)); n != 1 {
				t.Fatalf("coordinator back: %d undone, want 1", n)
			}
			e.want(t, "confirmed, coordinator back", confirmedID, participant.Confirmed, 1, 0)
			e.want(t, "unknown, coordinator back", unknown.id, participant.Expired, 0, 1)
		})

		t.Run("active past the expiry", func(t *testing.T) {
			e := newCompensateEnv(t, s)
			tx, id := e.tryIn(t, nil)
			exp := e.h.record(id).Expires
			// Asked at the expiry, then as the back-off allows, for an
			// hour: a sweep every 5s.
			at := exp
			for at.Before(exp.Add(time.Hour)) {
				if n := e.sweepAt(t, at); n != 0 {
					t.Fatalf("%v past the expiry, the transaction active: %d undone", at.Sub(exp), n)
				}
				at = at.Add(5 * time.Second)
			}
			asked := e.rc.asked.Load()
			t.Logf("%d questions in the hour past the expiry", asked)
			if asked < 50 || asked > 70 {
				t.Errorf("%d questions in an hour; want about one a minute after the back-off", asked)
			}
			e.want(t, "active past the expiry", id, participant.Tried, 0, 0)
			// The initiator confirms now: too late for the link.
			_, err := tx.Confirm(ctx)
			if err == nil {
				t.Fatal("confirmed a transaction whose link had expired")
			}
			final, gerr := e.c.Get(ctx, tx.ID())
			if gerr != nil || final.State != "cancelled" || final.Reason != "expiry_margin" {
				t.Fatalf("transaction %+v, %v (confirm: %v); want cancelled for the expiry margin", final, gerr, err)
			}
			e.want(t, "cancelled by the coordinator", id, participant.Cancelled, 0, 1)
			e.sweepAt(t, at.Add(time.Hour))
			e.want(t, "later", id, participant.Cancelled, 0, 1)
		})

		t.Run("cancel decided, DELETE not through", func(t *testing.T) {
			// The coordinator decided to cancel and its DELETE does not get
			// through (the participant's API answers 503): the sweeper
			// undoes at the expiry, and a DELETE that comes after finds
			// the work undone (204) without undoing it twice.
			e := newCompensateEnv(t, s)
			tx, id := e.tryIn(t, nil)
			exp := e.h.record(id).Expires
			e.away.Store(true)
			if _, err := tx.CancelAsync(ctx); err != nil {
				t.Fatal(err)
			}
			if n := e.sweepAt(t, exp); n != 1 {
				t.Fatalf("Sweep undid %d, want 1", n)
			}
			e.want(t, "undone by the sweeper", id, participant.Expired, 0, 1)
			if got, err := tx.Wait(ctx); err != nil || got.State != "cancelled" {
				t.Fatalf("wait: %+v, %v", got, err)
			}
			e.away.Store(false)
			wantStatus(t, "a DELETE after the undo", e.h.cancel(e.front.URL+"/reservations/"+id), http.StatusNoContent)
			e.want(t, "after the DELETE", id, participant.Expired, 0, 1)
		})
	})
}
