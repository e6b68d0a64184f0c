package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/pebble"
)

// testConfig retries fast so that tests end quickly.
func testConfig() tccd.Config {
	return tccd.Config{
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		CallTimeout: 2 * time.Second, ShutdownGrace: 100 * time.Millisecond,
	}
}

// coordinator is a real coordinator over a pebble store, served over HTTP.
type coordinator struct {
	URL   string
	coord *tccd.Coordinator
	stop  func()
}

// startCoordinator starts one in dir; stop closes everything.
func startCoordinator(dir string, cfg tccd.Config) (*coordinator, error) {
	store, err := pebble.Open(dir, pebble.Options{CacheSize: 4 << 20})
	if err != nil {
		return nil, err
	}
	caller := tccdhttp.NewCaller()
	coord := tccd.NewCoordinator(cfg, store, caller, nil, nil)
	if err := coord.Open(context.Background()); err != nil {
		store.Close()
		return nil, err
	}
	srv := httptest.NewServer(tccdhttp.NewServer(coord, tccdhttp.ServerConfig{}, nil))
	return &coordinator{URL: srv.URL, coord: coord, stop: func() {
		srv.Close()
		coord.Close()
		caller.Close()
		store.Close()
	}}, nil
}

// env is a coordinator for one test, with a client of it whose calls are
// recorded.
type env struct {
	*coordinator
	c   *client.Client
	rec *recorder
}

func newEnv(t *testing.T, cfg tccd.Config, opts ...client.Option) *env {
	t.Helper()
	co, err := startCoordinator(t.TempDir(), cfg)
	if err != nil {
		t.Fatalf("start coordinator: %v", err)
	}
	t.Cleanup(co.stop)
	rec := &recorder{base: http.DefaultTransport}
	opts = append([]client.Option{client.WithHTTPClient(&http.Client{Transport: rec})}, opts...)
	c, err := client.New(co.URL, opts...)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	return &env{coordinator: co, c: c, rec: rec}
}

// recorder is a RoundTripper that notes every call as "METHOD path status".
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	log  []string
	reqs []*http.Request
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	r.mu.Lock()
	r.log = append(r.log, fmt.Sprintf("%s %s %d", req.Method, req.URL.Path, status))
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

func (r *recorder) requests() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.reqs...)
}

// saw reports whether a recorded call starts with method and ends with
// the status, with a path containing part.
func (r *recorder) saw(method, part string, status int) bool {
	for _, c := range r.calls() {
		f := strings.Fields(c)
		if f[0] == method && strings.Contains(f[1], part) && f[2] == fmt.Sprint(status) {
			return true
		}
	}
	return false
}

// part is a participant service (testpart) on loopback. Its handler may be
// wrapped, to answer try in other styles or to call further participants.
type part struct {
	t   testing.TB
	svc *testpart.Service
	srv *httptest.Server
}

func newPart(t *testing.T, wrap func(*part, http.Handler) http.Handler) *part {
	t.Helper()
	p := &part{t: t, svc: testpart.NewTest(t, time.Minute)}
	var h http.Handler = p.svc
	if wrap != nil {
		// The server must exist before the wrapper learns its URL.
		mux := &handlerBox{}
		p.srv = httptest.NewServer(mux)
		mux.set(wrap(p, p.svc))
	} else {
		p.srv = httptest.NewServer(h)
	}
	t.Cleanup(p.srv.Close)
	t.Cleanup(func() {
		// The invariant of every test: no reservation both confirmed and
		// asked to cancel.
		if n := p.stats().CancelAfterConfirm; n != 0 {
			t.Errorf("participant %s: %d cancels after confirm", p.srv.URL, n)
		}
	})
	return p
}

// handlerBox is an http.Handler set after the server starts.
type handlerBox struct {
	mu sync.Mutex
	h  http.Handler
}

func (b *handlerBox) set(h http.Handler) {
	b.mu.Lock()
	b.h = h
	b.mu.Unlock()
}

func (b *handlerBox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	h := b.h
	b.mu.Unlock()
	h.ServeHTTP(w, r)
}

// try makes a reservation directly and returns its link.
func (p *part) try(ttl time.Duration) client.Link {
	p.t.Helper()
	r, err := p.svc.Try(context.Background(), ttl)
	if err != nil {
		p.t.Fatal(err)
	}
	return client.Link{URI: p.uri(r.ID), Expires: r.Expires}
}

// stats returns the participant's counters.
func (p *part) stats() testpart.Stats {
	p.t.Helper()
	st, err := p.svc.Stats(context.Background())
	if err != nil {
		p.t.Fatal(err)
	}
	return st
}

// onlyID returns the id of the participant's one reservation.
func (p *part) onlyID() string {
	p.t.Helper()
	all, err := p.svc.List(context.Background())
	if err != nil || len(all) != 1 {
		p.t.Fatalf("want one reservation at %s, have %+v (%v)", p.srv.URL, all, err)
	}
	return all[0].ID
}

func (p *part) uri(id string) string { return p.srv.URL + "/reservations/" + id }

// state returns the state of the reservation at uri.
func (p *part) state(uri string) testpart.State {
	p.t.Helper()
	r, ok, err := p.svc.Get(context.Background(), uri[strings.LastIndex(uri, "/")+1:])
	if err != nil {
		p.t.Fatal(err)
	}
	if !ok {
		return "unknown"
	}
	return r.State
}

// ctx returns a context for one test, ended well before the test timeout.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// states returns the states of tx's participants, in order.
func states(tx *api.Transaction) []string {
	out := make([]string, len(tx.Participants))
	for i, p := range tx.Participants {
		out[i] = p.State
	}
	return out
}
