package testpart_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/internal/testproc"
)

// client calls a testpart service over HTTP.
type client struct {
	t    testing.TB
	base string
	hc   *http.Client
}

// answer is an HTTP answer read in full.
type answer struct {
	status int
	body   string
	uri    string // a try's link
	err    error
}

func (c client) do(method, path string) answer {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, body: string(b)}
	var link struct {
		ParticipantLink struct{ URI string } `json:"participantLink"`
	}
	if json.Unmarshal(b, &link) == nil {
		a.uri = link.ParticipantLink.URI
	}
	return a
}

// try makes a reservation and returns its path (/reservations/{id}).
func (c client) try() string {
	c.t.Helper()
	a := c.do(http.MethodPost, "/reservations")
	if a.status != http.StatusCreated || !strings.HasPrefix(a.uri, c.base+"/reservations/") {
		c.t.Fatalf("try: %d %s (%v)", a.status, a.body, a.err)
	}
	return strings.TrimPrefix(a.uri, c.base)
}

func (c client) want(what string, a answer, status int) {
	c.t.Helper()
	if a.status != status {
		c.t.Fatalf("%s: %d %s (%v), want %d", what, a.status, a.body, a.err, status)
	}
}

func (c client) reservation(path string) testpart.Reservation {
	c.t.Helper()
	a := c.do(http.MethodGet, path)
	c.want("GET "+path, a, http.StatusOK)
	var r testpart.Reservation
	if err := json.Unmarshal([]byte(a.body), &r); err != nil {
		c.t.Fatal(err)
	}
	return r
}

func (c client) stats() testpart.Stats {
	c.t.Helper()
	a := c.do(http.MethodGet, "/stats")
	c.want("GET /stats", a, http.StatusOK)
	var st testpart.Stats
	if err := json.Unmarshal([]byte(a.body), &st); err != nil {
		c.t.Fatal(err)
	}
	return st
}

func inProcess(t *testing.T) (client, *testpart.Service) {
	svc := testpart.NewTest(t, time.Minute)
	srv := httptest.NewServer(svc)
	t.Cleanup(srv.Close)
	return client{t: t, base: srv.URL, hc: srv.Client()}, svc
}

// TestTTL: a try may ask for a positive lifetime up to the maximum;
// anything else is refused, not silently changed.
func TestTTL(t *testing.T) {
	c, _ := inProcess(t)
	for _, tt := range []struct {
		query  string
		status int
		ttl    time.Duration
	}{
		{"", http.StatusCreated, time.Minute},
		{"?ttl=90s", http.StatusCreated, 90 * time.Second},
		{"?ttl=24h", http.StatusCreated, 24 * time.Hour},
		{"?ttl=25h", http.StatusBadRequest, 0},
		{"?ttl=-1s", http.StatusBadRequest, 0},
		{"?ttl=0s", http.StatusBadRequest, 0},
		{"?ttl=soon", http.StatusBadRequest, 0},
	} {
		before := time.Now().Truncate(time.Millisecond)
		a := c.do(http.MethodPost, "/reservations"+tt.query)
		after := time.Now()
		if a.status != tt.status {
			t.Errorf("try%s: %d %s, want %d", tt.query, a.status, a.body, tt.status)
			continue
		}
		if tt.status != http.StatusCreated {
			continue
		}
		r := c.reservation(strings.TrimPrefix(a.uri, c.base))
		if r.Expires.Before(before.Add(tt.ttl)) || r.Expires.After(after.Add(tt.ttl)) {
			t.Errorf("try%s: expires %v, want %v after the try", tt.query, r.Expires, tt.ttl)
		}
	}
	if st := c.stats(); st.Tried != 3 || st.Pending != 3 {
		t.Errorf("stats %+v: refused tries were recorded", st)
	}
}

// TestContract: the answers and the counters, faults included.
func TestContract(t *testing.T) {
	c, svc := inProcess(t)
	ctx := context.Background()
	confirmed := c.try()
	c.want("confirm", c.do(http.MethodPut, confirmed), http.StatusNoContent)
	c.want("repeated confirm", c.do(http.MethodPut, confirmed), http.StatusNoContent)
	c.want("cancel after confirm", c.do(http.MethodDelete, confirmed), http.StatusConflict)
	if r := c.reservation(confirmed); r.State != testpart.Confirmed || r.Confirms != 2 || r.Cancels != 1 || r.CancelAfterConfirm != 1 {
		t.Errorf("confirmed: %+v", r)
	}

	cancelled := c.try()
	c.want("cancel", c.do(http.MethodDelete, cancelled), http.StatusNoContent)
	c.want("confirm after cancel", c.do(http.MethodPut, cancelled), http.StatusNotFound)

	// An empty cancel is remembered.
	c.want("empty cancel", c.do(http.MethodDelete, "/reservations/madeup"), http.StatusNotFound)
	if r := c.reservation("/reservations/madeup"); r.State != testpart.Void {
		t.Errorf("empty cancel: %+v", r)
	}
	c.want("unknown", c.do(http.MethodGet, "/reservations/neverseen"), http.StatusNotFound)

	// A fault answers instead of the kit; the reservation is untouched.
	failing := c.try()
	svc.AddFault(testpart.Fault{Op: "confirm", Count: 1, Status: http.StatusServiceUnavailable, RetryAfter: 1})
	c.want("confirm with a fault", c.do(http.MethodPut, failing), http.StatusServiceUnavailable)
	if r := c.reservation(failing); r.State != testpart.Tried || r.Confirms != 0 {
		t.Errorf("after the fault: %+v", r)
	}
	// A lost reply: the work is done, the answer never arrives.
	svc.AddFault(testpart.Fault{Op: "confirm", Count: 1, ApplyThenFail: true})
	if a := c.do(http.MethodPut, failing); a.err == nil {
		t.Errorf("lost reply answered %d", a.status)
	}
	if r := c.reservation(failing); r.State != testpart.Confirmed || r.Confirms != 1 {
		t.Errorf("after the lost reply: %+v", r)
	}

	// Try in-process, as the coordinator's tests do; it expires on its own.
	r, err := svc.Try(ctx, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the reservation expires", func() bool { return c.reservation("/reservations/"+r.ID).State == testpart.Expired })
	c.want("confirm after expiry", c.do(http.MethodPut, "/reservations/"+r.ID), http.StatusNotFound)

	st := c.stats()
	want := testpart.Stats{Tried: 4, Confirmed: 2, Cancelled: 1, Expired: 1, EmptyCancels: 1,
		ConfirmCalls: 6, CancelCalls: 3, CancelAfterConfirm: 1}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

// TestCompensate: the compensate URI undoes a confirmed reservation,
// idempotently; one that is not confirmed has nothing to undo; an unknown
// one is 404; a fault applies to it like to any call.
func TestCompensate(t *testing.T) {
	c, svc := inProcess(t)
	confirmed := c.try()
	c.want("confirm", c.do(http.MethodPut, confirmed), http.StatusNoContent)
	c.want("compensate", c.do(http.MethodPost, confirmed+"/compensate"), http.StatusNoContent)
	c.want("repeated compensate", c.do(http.MethodPost, confirmed+"/compensate"), http.StatusNoContent)
	if r := c.reservation(confirmed); r.State != testpart.Compensated || r.Compensations != 2 || r.Applied != 1 {
		t.Errorf("compensated: %+v", r)
	}
	tried := c.try()
	c.want("compensate a tried one", c.do(http.MethodPost, tried+"/compensate"), http.StatusNoContent)
	if r := c.reservation(tried); r.State != testpart.Tried || r.Compensations != 1 {
		t.Errorf("tried after a compensate: %+v", r)
	}
	c.want("compensate an unknown one", c.do(http.MethodPost, "/reservations/neverseen/compensate"), http.StatusNotFound)
	svc.AddFault(testpart.Fault{Op: "compensate", Count: 1, Status: http.StatusServiceUnavailable})
	c.want("compensate with a fault", c.do(http.MethodPost, tried+"/compensate"), http.StatusServiceUnavailable)
	st := c.stats()
	if st.Compensated != 1 || st.CompensateCalls != 5 || st.Confirmed != 0 || st.Pending != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestForsrcURIs: forsrc's TCC server confirms with PUT <uri>/confirm and
// cancels with DELETE <uri>/cancel; the service answers them as it
// answers the reservation's own URI, and counts them alike.
func TestForsrcURIs(t *testing.T) {
	c, _ := inProcess(t)
	confirmed := c.try()
	c.want("forsrc confirm", c.do(http.MethodPut, confirmed+"/confirm"), http.StatusNoContent)
	c.want("repeated forsrc confirm", c.do(http.MethodPut, confirmed+"/confirm"), http.StatusNoContent)
	c.want("forsrc cancel after confirm", c.do(http.MethodDelete, confirmed+"/cancel"), http.StatusConflict)
	if r := c.reservation(confirmed); r.State != testpart.Confirmed || r.Confirms != 2 || r.CancelAfterConfirm != 1 {
		t.Errorf("confirmed: %+v", r)
	}
	cancelled := c.try()
	c.want("forsrc cancel", c.do(http.MethodDelete, cancelled+"/cancel"), http.StatusNoContent)
	c.want("forsrc confirm after cancel", c.do(http.MethodPut, cancelled+"/confirm"), http.StatusNotFound)
	c.want("forsrc confirm of an unknown one", c.do(http.MethodPut, "/reservations/neverseen/confirm"), http.StatusNotFound)
	c.want("DELETE …/confirm is no route", c.do(http.MethodDelete, confirmed+"/confirm"), http.StatusMethodNotAllowed)
}

// TestIdempotencyKey: a try repeated with the same Idempotency-Key lands
// on the same reservation; another key, or none, makes a new one.
func TestIdempotencyKey(t *testing.T) {
	_, svc := inProcess(t)
	srv := httptest.NewServer(svc)
	t.Cleanup(srv.Close)
	try := func(key string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/reservations", nil)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}
	c1, l1 := try("k-1")
	c2, l2 := try("k-1")
	c3, l3 := try("k-2")
	_, l4 := try("")
	_, l5 := try("")
	if c1 != http.StatusCreated || c2 != http.StatusOK || l1 != l2 {
		t.Errorf("repeated key: %d %s, then %d %s; want 201, then 200 with the same link", c1, l1, c2, l2)
	}
	if c3 != http.StatusCreated || l3 == l1 || l4 == l5 {
		t.Errorf("another key or none must make a new reservation: %d %s; %s %s", c3, l3, l4, l5)
	}
}

// TestRestart kills the service process (SIGKILL) and starts it again on
// the same database and port: the old URIs answer as before, the counters
// are kept, and new reservations never reuse an old id.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	bin, err := testproc.Build(dir, "github.com/tccd/tccd/internal/testpart/cmd/testpart")
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "testpart.db")
	var proc *testproc.Proc
	start := func(listen string) client {
		proc = testproc.StartParticipant(t, bin, "--listen", listen, "--db", db)
		return client{t: t, base: proc.URL(), hc: &http.Client{Timeout: 10 * time.Second}}
	}
	c := start("127.0.0.1:0")
	seen := map[string]bool{}
	tried, confirmed, cancelled := c.try(), c.try(), c.try()
	for _, p := range []string{tried, confirmed, cancelled} {
		seen[p] = true
	}
	c.want("confirm", c.do(http.MethodPut, confirmed), http.StatusNoContent)
	c.want("cancel", c.do(http.MethodDelete, cancelled), http.StatusNoContent)
	c.want("cancel after confirm", c.do(http.MethodDelete, confirmed), http.StatusConflict)
	c.want("empty cancel", c.do(http.MethodDelete, "/reservations/madeup"), http.StatusNotFound)

	proc.Kill()
	c = start(strings.TrimPrefix(c.base, "http://"))

	if r := c.reservation(tried); r.State != testpart.Tried {
		t.Errorf("tried after the restart: %+v", r)
	}
	c.want("confirm after the restart", c.do(http.MethodPut, tried), http.StatusNoContent)
	c.want("repeated confirm", c.do(http.MethodPut, confirmed), http.StatusNoContent)
	c.want("cancel after confirm", c.do(http.MethodDelete, confirmed), http.StatusConflict)
	c.want("confirm after cancel", c.do(http.MethodPut, cancelled), http.StatusNotFound)
	c.want("repeated cancel", c.do(http.MethodDelete, cancelled), http.StatusNoContent)
	c.want("repeated empty cancel", c.do(http.MethodDelete, "/reservations/madeup"), http.StatusNotFound)
	if r := c.reservation(confirmed); r.State != testpart.Confirmed || r.Confirms != 2 || r.CancelAfterConfirm != 2 {
		t.Errorf("confirmed after the restart: %+v", r)
	}
	for range 50 {
		p := c.try()
		if seen[p] {
			t.Fatalf("a new reservation took the id of an old one: %s", p)
		}
		seen[p] = true
	}
	st := c.stats()
	if st.Tried != 53 || st.Confirmed != 2 || st.Cancelled != 1 || st.EmptyCancels != 1 || st.CancelAfterConfirm != 2 {
		t.Errorf("stats after the restart: %+v", st)
	}
	if err := proc.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// eventually polls cond until it holds, failing the test after 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBarrier: with a coordinator URL the service confirms in barrier
// mode through the kit — it reports (with the token), commits on
// "commit", and an "outcome" Hold fault holds the confirm between the
// answer to its report and the commit until the faults are cleared;
// without one a barrier confirm is refused.
func TestBarrier(t *testing.T) {
	var mu sync.Mutex
	var reports []string
	coord := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reports = append(reports, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"outcome":"commit"}`)
	}))
	defer coord.Close()
	svc, err := testpart.Open(context.Background(), testpart.Config{DB: filepath.Join(t.TempDir(), "tp.db"), TTL: time.Minute,
		Coordinator: coord.URL, CoordinatorToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	srv := httptest.NewServer(svc)
	defer srv.Close()
	c := client{t: t, base: srv.URL, hc: srv.Client()}
	confirm := func(path string) answer {
		req, _ := http.NewRequest(http.MethodPut, c.base+path, nil)
		req.Header.Set("Tcc-Barrier", "key1")
		resp, err := c.hc.Do(req)
		if err != nil {
			return answer{err: err}
		}
		resp.Body.Close()
		return answer{status: resp.StatusCode}
	}

	r1 := c.try()
	c.want("barrier confirm", confirm(r1), http.StatusNoContent)
	if got := c.reservation(r1); got.State != testpart.Confirmed || got.Applied != 1 {
		t.Fatalf("after the barrier confirm: %+v", got)
	}
	mu.Lock()
	if len(reports) != 1 || reports[0] != "POST /api/v1/barriers/key1 Bearer tok" {
		t.Fatalf("reports %q", reports)
	}
	mu.Unlock()

	r2 := c.try()
	svc.AddFault(testpart.Fault{Op: "outcome", Count: 1, Hold: true})
	done := make(chan answer, 1)
	go func() { done <- confirm(r2) }()
	eventually(t, "the confirm held after its report", func() bool { return c.stats().Held == 1 })
	// Held with its transaction open: nothing is confirmed yet, and the
	// service still answers.
	if got := c.reservation(r2); got.State != testpart.Tried || got.Applied != 0 {
		t.Fatalf("held: %+v", got)
	}
	c.want("clear the faults", c.do(http.MethodDelete, "/faults"), http.StatusNoContent)
	c.want("held barrier confirm", <-done, http.StatusNoContent)
	if got, st := c.reservation(r2), c.stats(); got.State != testpart.Confirmed || got.Applied != 1 || st.Reports != 2 {
		t.Fatalf("after the release: %+v, %+v", got, st)
	}

	plain, _ := inProcess(t)
	c.want("barrier confirm without a coordinator URL", func() answer {
		c := plain
		req, _ := http.NewRequest(http.MethodPut, c.base+c.try(), nil)
		req.Header.Set("Tcc-Barrier", "key2")
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return answer{status: resp.StatusCode}
	}(), http.StatusInternalServerError)
}
