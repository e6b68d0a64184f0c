package participant_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/participant"
)

// fakeClock is the kit's clock in tests: time moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// bizApp is the application under the kit in the conformance suite: a
// table of holdings, one row per reservation, whose counters record how
// often a business confirm and cancel committed. Its functions count their
// calls (committed or not) and can be made to fail.
type bizApp struct {
	sp    space
	table string

	tries, confirms, cancels atomic.Int64
	// failConfirm and failCancel make that many next calls write their
	// change and then fail, to prove the rollback.
	failConfirm, failCancel atomic.Int64
	// busyConfirm makes that many next confirms fail as a deadlocked
	// transaction would.
	busyConfirm atomic.Int64
}

// errDeadlock looks like a driver's deadlock error (pgx's, by its SQLState
// method).
type errDeadlock struct{}

func (errDeadlock) Error() string    { return "deadlock detected" }
func (errDeadlock) SQLState() string { return "40P01" }

const bizDDL = "CREATE TABLE %s (id VARCHAR(128) NOT NULL PRIMARY KEY, state VARCHAR(16) NOT NULL, " +
	"confirms INTEGER NOT NULL, cancels INTEGER NOT NULL)"

func newBizApp(t testing.TB, sp space) *bizApp {
	a := &bizApp{sp: sp, table: sp.q("biz")}
	sp.exec(t, fmt.Sprintf(bizDDL, a.table))
	return a
}

var errInjected = errors.New("injected failure")

// try holds under id; ?ttl= sets the lifetime, ?reject=1 writes and then
// rejects, ?fail=1 writes and then fails, ?data=1 returns a body.
func (a *bizApp) try(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
	a.tries.Add(1)
	if _, err := tx.ExecContext(ctx, a.sp.d.Rebind("INSERT INTO "+a.table+" (id, state, confirms, cancels) VALUES (?, 'held', 0, 0)"), id); err != nil {
		return participant.Reservation{}, err
	}
	q := r.URL.Query()
	switch {
	case q.Get("reject") != "":
		return participant.Reservation{}, participant.Reject(http.StatusConflict, "sold out")
	case q.Get("fail") != "":
		return participant.Reservation{}, errInjected
	}
	var res participant.Reservation
	if v := q.Get("ttl"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return res, participant.Rejectf(http.StatusBadRequest, "bad ttl %q", v)
		}
		res.TTL = d
	}
	if q.Get("data") != "" {
		res.Body = map[string]string{"seat": "12A"}
	}
	return res, nil
}

func (a *bizApp) settle(ctx context.Context, tx *sql.Tx, id, state, counter string, fail *atomic.Int64) error {
	res, err := tx.ExecContext(ctx, a.sp.d.Rebind("UPDATE "+a.table+" SET state = ?, "+counter+" = "+counter+" + 1 WHERE id = ?"), state, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("no holding %s", id)
	}
	if fail.Load() > 0 {
		fail.Add(-1)
		return errInjected
	}
	return nil
}

func (a *bizApp) confirm(ctx context.Context, tx *sql.Tx, id string) error {
	a.confirms.Add(1)
	if a.busyConfirm.Load() > 0 {
		a.busyConfirm.Add(-1)
		return errDeadlock{}
	}
	return a.settle(ctx, tx, id, "done", "confirms", &a.failConfirm)
}

func (a *bizApp) cancel(ctx context.Context, tx *sql.Tx, id string) error {
	a.cancels.Add(1)
	return a.settle(ctx, tx, id, "released", "cancels", &a.failCancel)
}

// holding is a committed row of the business table.
type holding struct {
	found             bool
	state             string
	confirms, cancels int
}

func (a *bizApp) holding(t testing.TB, id string) holding {
	t.Helper()
	h := holding{found: true}
	err := a.sp.db.QueryRow(a.sp.d.Rebind("SELECT state, confirms, cancels FROM "+a.table+" WHERE id = ?"), id).
		Scan(&h.state, &h.confirms, &h.cancels)
	if errors.Is(err, sql.ErrNoRows) {
		return holding{}
	}
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (a *bizApp) count(t testing.TB) int {
	t.Helper()
	var n int
	if err := a.sp.db.QueryRow("SELECT COUNT(*) FROM " + a.table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// harness is one participant over real HTTP on a fresh space.
type harness struct {
	t     testing.TB
	sp    space
	clock *fakeClock
	app   *bizApp
	p     *participant.Participant
	srv   *httptest.Server
	table string
}

// txIDResource is the resource name derived ids use in the suite.
const txIDResource = "holding"

func newHarness(t testing.TB, s *server, tweak ...func(*participant.Config)) *harness {
	t.Helper()
	return newHarnessIn(t, s.newSpace(t), tweak...)
}

// newHarnessIn is newHarness in the space sp (whose db may be observed).
func newHarnessIn(t testing.TB, sp space, tweak ...func(*participant.Config)) *harness {
	t.Helper()
	h := &harness{t: t, sp: sp, clock: newClock(), table: sp.q("tcc_reservation")}
	h.app = newBizApp(t, sp)
	ctx := context.Background()
	if err := participant.Migrate(ctx, sp.db, sp.d, h.table); err != nil {
		t.Fatal(err)
	}
	cfg := participant.Config{
		DB: sp.db, Dialect: sp.d, Table: h.table,
		Try: h.app.try, Confirm: h.app.confirm, Cancel: h.app.cancel,
		// A try carrying a transaction id gets an id derived from it, so
		// that tests can cancel before trying; others get random ids.
		ReservationID: func(r *http.Request) (string, error) {
			if tx := r.Header.Get(api.HeaderTransactionID); tx != "" {
				return participant.DeriveID(tx, txIDResource), nil
			}
			return participant.NewID()
		},
		DefaultTTL: time.Minute,
		Now:        h.clock.Now,
		Logger:     testLogger(t),
	}
	for _, f := range tweak {
		f(&cfg)
	}
	p, err := participant.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.p = p
	h.srv = httptest.NewServer(p)
	t.Cleanup(h.srv.Close)
	return h
}

// answer is an HTTP answer read in full.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) problem(t testing.TB) api.Problem {
	t.Helper()
	var p api.Problem
	if ct := a.header.Get("Content-Type"); ct != api.MediaProblem {
		t.Fatalf("status %d, Content-Type %q, want a problem: %s", a.status, ct, a.body)
	}
	if err := json.Unmarshal(a.body, &p); err != nil {
		t.Fatalf("problem: %v: %s", err, a.body)
	}
	if p.Status != a.status || !strings.HasPrefix(p.Type, api.ProblemTypePrefix) || p.Code == "" {
		t.Fatalf("problem %+v does not match status %d", p, a.status)
	}
	return p
}

func (h *harness) do(method, url string, header http.Header) answer {
	h.t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	if method == http.MethodPut || method == http.MethodDelete {
		req.Header.Set("Accept", api.MediaTCC)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: body}
}

// tryLink is a try's answer decoded.
type tryLink struct {
	answer
	uri, id string
	expires time.Time
	data    json.RawMessage
}

// try POSTs a try with the query, under transaction txID if not "".
func (h *harness) try(query, txID string) tryLink {
	h.t.Helper()
	hdr := http.Header{}
	if txID != "" {
		hdr.Set(api.HeaderTransactionID, txID)
	}
	a := h.do(http.MethodPost, h.srv.URL+"/reservations"+query, hdr)
	out := tryLink{answer: a}
	if a.status != http.StatusCreated && a.status != http.StatusOK {
		return out
	}
	var body struct {
		ParticipantLink struct{ URI, Expires, Rel string } `json:"participantLink"`
		Data            json.RawMessage                    `json:"data"`
	}
	if err := json.Unmarshal(a.body, &body); err != nil {
		h.t.Fatalf("try answer: %v: %s", err, a.body)
	}
	out.uri, out.data = body.ParticipantLink.URI, body.Data
	out.id = out.uri[strings.LastIndexByte(out.uri, '/')+1:]
	exp, err := time.Parse(time.RFC3339Nano, body.ParticipantLink.Expires)
	if err != nil {
		h.t.Fatalf("expires %q: %v", body.ParticipantLink.Expires, err)
	}
	out.expires = exp
	if body.ParticipantLink.Rel != "tcc" {
		h.t.Errorf("rel = %q", body.ParticipantLink.Rel)
	}
	return out
}

// mustTry tries and fails the test unless the answer is 201.
func (h *harness) mustTry(query, txID string) tryLink {
	h.t.Helper()
	l := h.try(query, txID)
	if l.status != http.StatusCreated {
		h.t.Fatalf("try: status %d: %s", l.status, l.body)
	}
	return l
}

func (h *harness) confirm(uri string) answer { h.t.Helper(); return h.do(http.MethodPut, uri, nil) }
func (h *harness) cancel(uri string) answer  { h.t.Helper(); return h.do(http.MethodDelete, uri, nil) }

// uriOf is the URI of reservation id.
func (h *harness) uriOf(id string) string { return h.srv.URL + "/reservations/" + id }

// record reads the bookkeeping row of id.
func (h *harness) record(id string) participant.Record {
	h.t.Helper()
	rec, ok, err := h.p.Lookup(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	if !ok {
		return participant.Record{ID: id}
	}
	return rec
}

// wantStatus fails the test unless a has the status.
func wantStatus(t testing.TB, what string, a answer, status int) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, a.status, status, a.body)
	}
}

// testLogger sends the kit's log to the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// eventually polls cond every few milliseconds until it holds, failing the
// test if it does not within timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("%s: not within %v", what, timeout)
		case <-tick.C:
		}
	}
}
