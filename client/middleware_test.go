package client_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/internal/testpart"
)

// relay is a participant that, in its try, reserves and then calls next's
// try on the same transaction (when next is set), answering like testpart
// (Link header and JSON body for its own reservation). c is its own client,
// for Middleware and its outgoing calls.
func relay(c *client.Client, next func() string) func(*part, http.Handler) http.Handler {
	hc := c.WrapHTTPClient(nil)
	return func(p *part, h http.Handler) http.Handler {
		try := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != "/reservations" {
				h.ServeHTTP(w, r)
				return
			}
			res, err := p.svc.Try(r.Context(), time.Minute)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if next != nil {
				req, _ := http.NewRequestWithContext(r.Context(), "POST", next()+"/reservations", nil)
				resp, err := hc.Do(req)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			uri, exp := p.uri(res.ID), res.Expires.UTC().Format(time.RFC3339Nano)
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="tcc"; expires="%s"`, uri, exp))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"participantLink":{"uri":%q,"expires":%q,"rel":"tcc"}}`, uri, exp)
		})
		return client.Middleware(c)(try)
	}
}

// TestMiddlewareChain: the initiator calls A, A calls B, B calls C, over
// real HTTP; every reservation reaches the initiator and is confirmed.
func TestMiddlewareChain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	// A and B have clients of their own, whose coordinator calls are
	// recorded: there must be none.
	partRec := &recorder{base: http.DefaultTransport}
	partClient := func() *client.Client {
		c, err := client.New(e.URL, client.WithHTTPClient(&http.Client{Transport: partRec}))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pc := newPart(t, nil)
	pb := newPart(t, relay(partClient(), func() string { return pc.srv.URL }))
	pa := newPart(t, relay(partClient(), func() string { return pb.srv.URL }))

	ctx := testCtx(t)
	tx, err := e.c.Begin(ctx, client.WithName("a-b-c"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.c.WrapHTTPClient(nil).Do(mustRequest(t, client.NewContext(ctx, tx), "POST", pa.srv.URL+"/reservations", ""))
	if err != nil {
		t.Fatalf("try at A: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("try at A: %s", resp.Status)
	}
	// A's answer names all three reservations.
	var linked []string
	for _, v := range resp.Header.Values("Link") {
		linked = append(linked, v[1:strings.IndexByte(v, '>')])
	}
	want := []string{pa.uri(pa.onlyID()), pb.uri(pb.onlyID()), pc.uri(pc.onlyID())}
	if !slices.Equal(linked, want) {
		t.Errorf("A's Link headers name %v, want %v", linked, want)
	}

	out, err := tx.Confirm(ctx)
	if err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	var enlisted []string
	for _, p := range out.Participants {
		enlisted = append(enlisted, p.URI)
	}
	slices.Sort(enlisted)
	sorted := slices.Clone(want)
	slices.Sort(sorted)
	if !slices.Equal(enlisted, sorted) {
		t.Fatalf("enlisted %v, want %v", enlisted, sorted)
	}
	if !slices.Equal(states(out), []string{"confirmed", "confirmed", "confirmed"}) {
		t.Errorf("outcomes = %v", states(out))
	}
	for _, p := range []*part{pa, pb, pc} {
		if s := p.state(p.uri(p.onlyID())); s != testpart.Confirmed {
			t.Errorf("%s: reservation %s", p.srv.URL, s)
		}
	}
	if calls := partRec.calls(); len(calls) != 0 {
		t.Errorf("A and B called the coordinator: %v", calls)
	}
}

// TestMiddlewareLateLink: a link collected after the participant's answer
// started cannot reach the initiator; the call that reports it fails.
func TestMiddlewareLateLink(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	c, err := client.New(e.URL)
	if err != nil {
		t.Fatal(err)
	}
	pb := newPart(t, nil)
	errc := make(chan error, 1)
	late := client.Middleware(c)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		req, _ := http.NewRequestWithContext(r.Context(), "POST", pb.srv.URL+"/reservations", nil)
		resp, err := c.WrapHTTPClient(nil).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}))
	pa := httptest.NewServer(late)
	t.Cleanup(pa.Close)

	ctx := testCtx(t)
	tx, err := e.c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.c.WrapHTTPClient(nil).Do(mustRequest(t, client.NewContext(ctx, tx), "POST", pa.URL, ""))
	if err != nil {
		t.Fatal(err)
	}
	// Read to the end: the handler makes its late call meanwhile.
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "already written") {
		t.Errorf("late call err = %v, want a refusal", err)
	}
	if _, err := tx.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMiddlewareInbound(t *testing.T) {
	c, err := client.New("http://coord.example:8420")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		c       *client.Client
		header  http.Header
		wantID  string
		wantURL string
	}{
		{name: "ours", c: c, header: http.Header{
			"Link":                  {`<http://other.example/x>; rel="next", <http://coord2.example/api/v1/transactions/01A>; rel="tcc-transaction"`},
			api.HeaderTransactionID: {"01A"},
		}, wantID: "01A", wantURL: "http://coord2.example/api/v1/transactions/01A"},
		{name: "Link only", c: c, header: http.Header{
			"Link": {`<http://coord2.example/api/v1/transactions/01B>; rel=tcc-transaction`},
		}, wantID: "01B", wantURL: "http://coord2.example/api/v1/transactions/01B"},
		{name: "MicroTx", c: nil, header: http.Header{
			"Link": {`<http://otmm:9000/api/v1/tcc-transaction/abc-123>; rel="https://otmm.oracle.com/tcc-transaction"`},
		}, wantID: "abc-123", wantURL: "http://otmm:9000/api/v1/tcc-transaction/abc-123"},
		{name: "id only", c: c, header: http.Header{api.HeaderTransactionID: {"01C"}},
			wantID: "01C", wantURL: "http://coord.example:8420/api/v1/transactions/01C"},
		{name: "id only, no client", c: nil, header: http.Header{api.HeaderTransactionID: {"01D"}},
			wantID: "01D", wantURL: ""},
		{name: "unrelated Link", c: c, header: http.Header{"Link": {`<http://a/1>; rel="tcc"; expires="2099-01-01T00:00:00Z"`}}},
		{name: "nothing", c: c, header: http.Header{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tx *client.Tx
			h := client.Middleware(tt.c)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tx, _ = client.FromContext(r.Context())
			}))
			req := httptest.NewRequest("POST", "http://a/try", nil)
			req.Header = tt.header
			h.ServeHTTP(httptest.NewRecorder(), req)
			if tt.wantID == "" {
				if tx != nil {
					t.Errorf("got a Tx %s, want none", tx.ID())
				}
				return
			}
			if tx == nil {
				t.Fatal("no Tx")
			}
			if tx.ID() != tt.wantID || tx.URL() != tt.wantURL {
				t.Errorf("ID, URL = %q, %q; want %q, %q", tx.ID(), tx.URL(), tt.wantID, tt.wantURL)
			}
		})
	}
}

// TestMiddlewareWriter: the collected links are added however the handler
// starts its answer, and flushing still works.
func TestMiddlewareWriter(t *testing.T) {
	exp := time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)
	links := []client.Link{{URI: "http://b/r/1", Expires: exp}, {URI: "http://c/r/9", Expires: exp}}
	wantLinks := []string{
		`<http://a/own>; rel="tcc"; expires="2099-01-02T03:04:05Z"`,
		`<http://b/r/1>; rel="tcc"; expires="2099-01-02T03:04:05Z"`,
		`<http://c/r/9>; rel="tcc"; expires="2099-01-02T03:04:05Z"`,
	}
	tests := []struct {
		name        string
		answer      func(w http.ResponseWriter)
		wantStatus  int
		wantFlushed bool
	}{
		{"WriteHeader", func(w http.ResponseWriter) { w.WriteHeader(http.StatusCreated) }, 201, false},
		{"Write", func(w http.ResponseWriter) { io.WriteString(w, "ok") }, 200, false},
		{"nothing written", func(w http.ResponseWriter) {}, 200, false},
		{"Flush", func(w http.ResponseWriter) {
			f, ok := w.(http.Flusher)
			if !ok {
				panic("the wrapped writer is not an http.Flusher")
			}
			f.Flush()
		}, 200, true},
		{"ResponseController", func(w http.ResponseWriter) {
			if err := http.NewResponseController(w).Flush(); err != nil {
				panic(err)
			}
		}, 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lateErr error
			h := client.Middleware(nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tx, _ := client.FromContext(r.Context())
				for _, l := range append(links, links[0]) { // a repeat is collected once
					if err := tx.Enlist(r.Context(), l); err != nil {
						panic(err)
					}
				}
				w.Header().Set("Link", wantLinks[0])
				tt.answer(w)
				lateErr = tx.Enlist(r.Context(), client.Link{URI: "http://d/late", Expires: exp})
			}))
			req := httptest.NewRequest("POST", "http://a/try", nil)
			req.Header.Set(api.HeaderTransactionID, "01X")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			res := rec.Result()
			if res.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.wantStatus)
			}
			want := wantLinks
			if tt.name == "nothing written" {
				// The answer starts when the handler returns: the last
				// link still made it.
				want = append(slices.Clone(want), `<http://d/late>; rel="tcc"; expires="2099-01-02T03:04:05Z"`)
			}
			if got := res.Header.Values("Link"); !slices.Equal(got, want) {
				t.Errorf("Link headers =\n%q\nwant\n%q", got, want)
			}
			if rec.Flushed != tt.wantFlushed {
				t.Errorf("Flushed = %v, want %v", rec.Flushed, tt.wantFlushed)
			}
			if tt.name != "nothing written" && lateErr == nil {
				t.Error("a link collected after the header was written was accepted")
			}
		})
	}
}

// TestMiddlewareWithoutTx: requests without a transaction get the
// handler's own writer.
func TestMiddlewareWithoutTx(t *testing.T) {
	var got http.ResponseWriter
	h := client.Middleware(nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = w
		if _, ok := client.FromContext(r.Context()); ok {
			t.Error("a Tx without transaction headers")
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://a/", nil))
	if got != http.ResponseWriter(rec) {
		t.Errorf("the handler got %T, want the recorder itself", got)
	}
}
