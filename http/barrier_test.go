package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/pebble"
)

// barrierEnv is a coordinator with its STOMP endpoint and HTTP API.
type barrierEnv struct {
	coord *tccd.Coordinator
	srv   *httptest.Server
}

func newBarrierEnv(t *testing.T) *barrierEnv {
	t.Helper()
	store, err := pebble.Open(t.TempDir(), pebble.Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	stomp, err := tccdhttp.NewBarrierSTOMP(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	caller := tccdhttp.NewCaller()
	coord := tccd.NewCoordinator(tccd.Config{
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, ConfirmWait: 10 * time.Second,
		BarrierWait: 2 * time.Second, CallTimeout: time.Second, Barriers: stomp,
	}, store, caller, nil, nil)
	stomp.Attach(coord)
	if err := coord.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	server := tccdhttp.NewServer(coord, tccdhttp.ServerConfig{STOMP: stomp}, nil)
	srv := httptest.NewServer(server)
	t.Cleanup(func() {
		coord.Close()
		stomp.Close(context.Background())
		srv.Close()
	})
	return &barrierEnv{coord: coord, srv: srv}
}

// stompClient is a minimal STOMP 1.2 client over a WebSocket, enough to
// play a participant.
type stompClient struct {
	t    *testing.T
	conn *websocket.Conn
}

func dialSTOMP(t *testing.T, base string) *stompClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, strings.Replace(base, "http://", "ws://", 1)+"/ws/tcc", &websocket.DialOptions{Subprotocols: []string{"v12.stomp"}})
	if err != nil {
		t.Fatal(err)
	}
	c := &stompClient{t: t, conn: conn}
	t.Cleanup(func() { conn.CloseNow() })
	c.send("CONNECT\naccept-version:1.2\nhost:tccd\n\n")
	if f := c.read(); !strings.HasPrefix(f, "CONNECTED\n") {
		t.Fatalf("CONNECT answered %q", f)
	}
	return c
}

func (c *stompClient) send(frame string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(frame+"\x00")); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next frame (heart-beat newlines skipped).
func (c *stompClient) read() string {
	c.t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, b, err := c.conn.Read(ctx)
		cancel()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if f := strings.TrimLeft(string(b), "\r\n"); f != "" {
			return strings.TrimSuffix(f, "\x00")
		}
	}
}

// barrierParticipant is a participant that speaks the barrier: over HTTP
// (viaSTOMP false) or STOMP. fail makes it report failed.
type barrierParticipant struct {
	t        *testing.T
	coordURL string
	viaSTOMP bool
	fail     bool
	srv      *httptest.Server

	mu        sync.Mutex
	committed bool
	cancelled bool
	reports   int
}

func newBarrierParticipant(t *testing.T, coordURL string, viaSTOMP, fail bool) *barrierParticipant {
	p := &barrierParticipant{t: t, coordURL: coordURL, viaSTOMP: viaSTOMP, fail: fail}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /r/1/confirm", p.confirm)
	mux.HandleFunc("DELETE /r/1/cancel", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.cancelled = true
		p.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *barrierParticipant) confirm(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(api.HeaderBarrier)
	if key == "" {
		http.Error(w, "no barrier key", http.StatusBadRequest)
		return
	}
	status := "confirmed"
	if p.fail {
		status = "failed"
	}
	p.mu.Lock()
	p.reports++
	p.mu.Unlock()
	var outcome string
	if p.viaSTOMP {
		c := dialSTOMP(p.t, p.coordURL)
		c.send("SUBSCRIBE\nid:0\ndestination:/topic/tccLink/" + key + "\n\n")
		c.send("SEND\ndestination:/app/tccLink/" + key + "\ncontent-type:application/json\n\n" + `{"status":"` + status + `","detail":"no seats left"}`)
		f := c.read()
		if !strings.HasPrefix(f, "MESSAGE\n") {
			p.t.Errorf("expected the outcome, got %q", f)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var ans struct{ Outcome string }
		json.Unmarshal([]byte(f[strings.Index(f, "\n\n")+2:]), &ans)
		outcome = ans.Outcome
	} else {
		resp, err := http.Post(p.coordURL+"/api/v1/barriers/"+key+"?wait=5s", "application/json", strings.NewReader(`{"status":"`+status+`"}`))
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var ans struct{ Outcome string }
		json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		outcome = ans.Outcome
	}
	if outcome != "commit" {
		w.WriteHeader(http.StatusConflict) // rolled back
		return
	}
	p.mu.Lock()
	p.committed = true
	p.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (p *barrierParticipant) link() tccdhttp.ForsrcLink {
	return tccdhttp.ForsrcLink{URI: p.srv.URL + "/r/1", Expire: time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano), ResourceID: "seat"}
}

// TestForsrcBarrier: forsrc's API creates a barrier-mode transaction and
// confirms it; one participant reports over HTTP, the other over STOMP.
// When both report confirmed, both commit; when one reports failed, both
// roll back and the transaction is cancelled — never heuristic.
func TestForsrcBarrier(t *testing.T) {
	for _, tc := range []struct {
		name       string
		failSecond bool
		wantStatus int
		wantState  string
		tccStatus  string
	}{
		{"both confirm", false, http.StatusOK, "confirmed", "CONFIRM"},
		{"one fails", true, http.StatusConflict, "cancelled", "CANCEL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newBarrierEnv(t)
			a := newBarrierParticipant(t, e.srv.URL, false, false)
			b := newBarrierParticipant(t, e.srv.URL, true, tc.failSecond)
			body, _ := json.Marshal(tccdhttp.ForsrcRequest{
				Expire: time.Now().Add(time.Minute).UTC().Format(time.RFC3339), TccLinks: []tccdhttp.ForsrcLink{a.link(), b.link()},
			})
			resp, err := http.Post(e.srv.URL+"/tcc/api/v1/tcc/", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || resp.Header.Get("tccStatus") != tc.tccStatus || resp.Header.Get("tccId") == "" {
				t.Fatalf("forsrc create: %d tccId %q tccStatus %q: %s", resp.StatusCode, resp.Header.Get("tccId"), resp.Header.Get("tccStatus"), out)
			}
			id := resp.Header.Get("tccId")
			// An ordinary transaction: the native API sees it.
			r2, err := http.Get(e.srv.URL + "/api/v1/transactions/" + id)
			if err != nil {
				t.Fatal(err)
			}
			var tx api.Transaction
			json.NewDecoder(r2.Body).Decode(&tx)
			r2.Body.Close()
			if tx.State != tc.wantState || tx.Protocol != "forsrc" || !tx.Barrier || tx.Round == nil {
				t.Fatalf("native view: %+v", tx)
			}
			for name, p := range map[string]*barrierParticipant{"a": a, "b": b} {
				p.mu.Lock()
				if p.committed != !tc.failSecond || p.reports != 1 {
					t.Errorf("%s: committed %v after %d reports", name, p.committed, p.reports)
				}
				if tc.failSecond && !p.cancelled {
					t.Errorf("%s was not sent DELETE <uri>/cancel", name)
				}
				p.mu.Unlock()
			}
		})
	}
}

// TestForsrcAPI: register only, then confirm or cancel by id; GET; bad
// requests; reports for unknown keys.
func TestForsrcAPI(t *testing.T) {
	e := newBarrierEnv(t)
	a := newBarrierParticipant(t, e.srv.URL, false, false)
	f := false
	body, _ := json.Marshal(tccdhttp.ForsrcRequest{TccLinks: []tccdhttp.ForsrcLink{a.link()}, Confirm: &f})
	resp, err := http.Post(e.srv.URL+"/tcc/api/v1/tcc", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get("tccId")
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("tccStatus") != "TRY" || resp.Header.Get("Location") != "/tcc/api/v1/tcc/"+id {
		t.Fatalf("register: %d %v", resp.StatusCode, resp.Header)
	}
	get := func() *http.Response {
		r, err := http.Get(e.srv.URL + "/tcc/api/v1/tcc/" + id)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r
	}
	if r := get(); r.StatusCode != http.StatusOK || r.Header.Get("tccStatus") != "TRY" {
		t.Fatalf("GET: %d %v", r.StatusCode, r.Header)
	}
	req, _ := http.NewRequest(http.MethodPut, e.srv.URL+"/tcc/api/v1/tcc/confirm/"+id, nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK || r.Header.Get("tccStatus") != "CONFIRM" {
		t.Fatalf("confirm: %d %v", r.StatusCode, r.Header)
	}
	// Cancelling a confirmed transaction: 409, with tccError.
	req, _ = http.NewRequest(http.MethodPut, e.srv.URL+"/tcc/api/v1/tcc/cancel/"+id, nil)
	r, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusConflict || r.Header.Get("tccError") != "conflict" || r.Header.Get("tccStatus") != "CONFIRM" {
		t.Fatalf("cancel of a confirmed one: %d %v", r.StatusCode, r.Header)
	}
	// Bad requests.
	for _, b := range []string{`{"tccLinks":[{"uri":"ftp://x/1","expire":"2030-01-01T00:00:00Z"}]}`, `{"expire":"yesterday"}`, `[1]`} {
		r, err := http.Post(e.srv.URL+"/tcc/api/v1/tcc/", "application/json", strings.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusBadRequest || r.Header.Get("tccError") != "invalid" {
			t.Errorf("%s: %d %v", b, r.StatusCode, r.Header)
		}
	}
	// A report for a key no round has: 404; over STOMP, an ERROR frame.
	r, err = http.Post(e.srv.URL+"/api/v1/barriers/nosuchkey", "application/json", strings.NewReader(`{"status":"confirmed"}`))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusNotFound {
		t.Errorf("report for an unknown key: %d", r.StatusCode)
	}
	c := dialSTOMP(t, e.srv.URL)
	c.send("SEND\ndestination:/app/tccLink/nosuchkey\n\n" + `{"status":"confirmed"}`)
	if f := c.read(); !strings.HasPrefix(f, "ERROR\n") || !strings.Contains(f, "no barrier round") {
		t.Errorf("STOMP report for an unknown key: %q", f)
	}
	fmt.Fprint(io.Discard, get())
}
