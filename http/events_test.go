package http_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/pebble"
)

// eventsEnv is a server over a real store and coordinator, with
// participants at part (PUT and DELETE /ok/* answer 204, /busy/* 503).
type eventsEnv struct {
	coord  *tccd.Coordinator
	srv    *httptest.Server
	part   *httptest.Server
	secret []byte
}

func newEventsEnv(t *testing.T, broker *tccd.Broker, scfg tccdhttp.ServerConfig, secret []byte) *eventsEnv {
	t.Helper()
	store, err := pebble.Open(t.TempDir(), pebble.Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }
	mux.HandleFunc("PUT /ok/{n}", ok)
	mux.HandleFunc("DELETE /ok/{n}", ok)
	mux.HandleFunc("PUT /busy/{n}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	part := httptest.NewServer(mux)
	t.Cleanup(part.Close)
	caller := tccdhttp.NewCallerWith(tccdhttp.CallerConfig{WebhookSecret: secret})
	t.Cleanup(caller.Close)
	cfg := tccd.Config{RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, ConfirmWait: 5 * time.Second}
	if broker != nil {
		cfg.Events = broker
	}
	if secret != nil {
		cfg.Notifier = caller
	}
	coord := tccd.NewCoordinator(cfg, store, caller, nil, nil)
	if err := coord.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { coord.Close() })
	server := tccdhttp.NewServer(coord, scfg, nil)
	srv := httptest.NewServer(server)
	t.Cleanup(func() {
		server.Shutdown(context.Background())
		srv.Close()
	})
	return &eventsEnv{coord: coord, srv: srv, part: part, secret: secret}
}

func (e *eventsEnv) link(path string) string {
	return fmt.Sprintf(`{"uri":%q,"expires":%q}`, e.part.URL+path, time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano))
}

// do sends a request and returns the status and body.
func (e *eventsEnv) do(t *testing.T, method, path, ctype, body string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// sseEvent is one Server-Sent Event as read from the wire.
type sseEvent struct {
	id, name string
	data     api.Event
}

// sseStream reads a stream of Server-Sent Events.
type sseStream struct {
	resp   *http.Response
	events chan sseEvent
	done   chan struct{}
}

func openStream(t *testing.T, url string, hdr ...string) (*sseStream, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	s := &sseStream{resp: resp, events: make(chan sseEvent, 10000), done: make(chan struct{})}
	t.Cleanup(func() { resp.Body.Close(); <-s.done })
	go func() {
		defer close(s.done)
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		var data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if data != "" {
					if err := json.Unmarshal([]byte(data), &ev.data); err != nil {
						t.Errorf("event data %q: %v", data, err)
					}
					s.events <- ev
				}
				ev, data = sseEvent{}, ""
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case strings.HasPrefix(line, ":"):
			default:
				t.Errorf("unexpected line %q", line)
			}
		}
	}()
	return s, resp
}

// next returns the next event, failing after a generous bound.
func (s *sseStream) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return sseEvent{}
}

// TestEventStream: an SSE reader sees every change of a transaction, in
// order, with the wire shape of the document; it can resume with
// Last-Event-ID, and filter.
func TestEventStream(t *testing.T) {
	e := newEventsEnv(t, tccd.NewBroker(8, 0, nil), tccdhttp.ServerConfig{MaxStreams: 6}, nil)
	all, _ := openStream(t, e.srv.URL+"/api/v1/events")
	final, _ := openStream(t, e.srv.URL+"/api/v1/events?type=state&state=confirmed&state=heuristic")
	body := `{"participantLinks":[` + e.link("/ok/1") + `,` + e.link("/ok/2") + `]}`
	if code, _, b := e.do(t, "PUT", "/coordinator/confirm", "application/tcc+json", body); code != http.StatusNoContent {
		t.Fatalf("confirm: %d %s", code, b)
	}
	var got []sseEvent
	for len(got) == 0 || got[len(got)-1].data.State != "confirmed" {
		got = append(got, all.next(t))
	}
	if len(got) != 4 {
		t.Fatalf("%d events, want confirming, two attempts, confirmed: %+v", len(got), got)
	}
	for i, ev := range got {
		if ev.name != ev.data.Type || ev.id != strconv.FormatUint(ev.data.Seq, 10) || ev.data.Time.IsZero() || ev.data.Transaction == "" {
			t.Errorf("event %d: %+v", i, ev)
		}
		if i > 0 && ev.data.Seq != got[i-1].data.Seq+1 {
			t.Errorf("seq %d after %d", ev.data.Seq, got[i-1].data.Seq)
		}
	}
	if d := got[0].data; d.Type != "state" || d.State != "confirming" || d.Previous == nil || *d.Previous != "" || d.Reason != "requested" {
		t.Errorf("first event %+v", d)
	}
	for _, ev := range got[1:3] {
		if d := ev.data; d.Type != "attempt" || d.Phase != "confirm" || d.Attempt != 1 || d.Status == nil || *d.Status != 204 || d.Error == nil || d.NextRetry != nil {
			t.Errorf("attempt event %+v", d)
		}
	}
	if ev := final.next(t); ev.data.State != "confirmed" || ev.data.Seq != got[3].data.Seq {
		t.Errorf("filtered stream: %+v", ev)
	}

	// Resume after the second event: the third and fourth come again.
	resumed, resp := openStream(t, e.srv.URL+"/api/v1/events", api.HeaderLastEventID, got[1].id)
	if resumed == nil {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("resume: %d %s", resp.StatusCode, b)
	}
	for _, want := range got[2:] {
		if ev := resumed.next(t); ev.data.Seq != want.data.Seq {
			t.Fatalf("resumed at %d, want %d", ev.data.Seq, want.data.Seq)
		}
	}
	// Last-Event-ID 0: every event kept, from the first, without a gap
	// while the ring still holds it; with a filter, one transaction's
	// history.
	history, _ := openStream(t, e.srv.URL+"/api/v1/events?last_event_id=0&transaction="+got[0].data.Transaction)
	for _, want := range got {
		if ev := history.next(t); ev.data.Seq != want.data.Seq {
			t.Fatalf("history: seq %d (%s), want %d", ev.data.Seq, ev.name, want.data.Seq)
		}
	}
	// Another transaction fills the ring (8 events): resuming from the
	// first event now starts with a gap.
	for i := 0; i < 2; i++ {
		body := `{"participantLinks":[` + e.link(fmt.Sprintf("/ok/r%d", i)) + `]}`
		e.do(t, "PUT", "/coordinator/confirm", "application/tcc+json", body)
	}
	gap, _ := openStream(t, e.srv.URL+"/api/v1/events?last_event_id="+got[0].id)
	if ev := gap.next(t); ev.name != "gap" || ev.id != "" || ev.data.Type != "gap" {
		t.Fatalf("first event after a resume past the ring: %+v", ev)
	}
	everything, _ := openStream(t, e.srv.URL+"/api/v1/events", api.HeaderLastEventID, "0")
	if ev := everything.next(t); ev.name != "gap" {
		t.Fatalf("every event kept, once the first are gone: first %+v", ev)
	}
	if ev := everything.next(t); ev.data.Seq <= got[0].data.Seq {
		t.Fatalf("after the gap: %+v", ev)
	}
	// Bad filters are refused.
	for _, q := range []string{"type=lagged", "state=bogus", "last_event_id=x"} {
		if code, _, b := e.do(t, "GET", "/api/v1/events?"+q, "", ""); code != http.StatusBadRequest {
			t.Errorf("?%s: %d %s", q, code, b)
		}
	}
	// At most MaxStreams (6) at once per client.
	if _, resp := openStream(t, e.srv.URL+"/api/v1/events"); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a seventh stream: %d", resp.StatusCode)
	}
}

// TestEventStreamSlowReader: a reader that stops reading falls behind, is
// told it lagged and dropped — and confirms go on meanwhile at full speed.
func TestEventStreamSlowReader(t *testing.T) {
	e := newEventsEnv(t, tccd.NewBroker(16, 4, nil), tccdhttp.ServerConfig{}, nil)
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Nothing is read from resp until the confirms are done: the server's
	// writes block once the socket buffers are full, its buffer of 4
	// events fills, and the subscriber is dropped. A confirm never waits
	// for it.
	var confirmed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 150; i++ {
				body := `{"participantLinks":[` + e.link(fmt.Sprintf("/ok/%d-%d", w, i)) + `]}`
				if code, _, _ := e.do(t, "PUT", "/coordinator/confirm", "application/tcc+json", body); code == http.StatusNoContent {
					confirmed.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	if n := confirmed.Load(); n != 600 {
		t.Fatalf("%d of 600 confirms succeeded", n)
	}
	// Now read: the stream ends with a lagged event.
	sc := bufio.NewScanner(resp.Body)
	var last string
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "event: ") {
			last = sc.Text()[7:]
		}
	}
	if last != "lagged" {
		t.Fatalf("the stream's last event is %q, want lagged", last)
	}
}

// TestEventStreamLaggedResume: a reader that falls behind gets a lagged
// event; reconnecting with the Last-Event-ID it holds then — the last id:
// line, as EventSource keeps it, or the client SDK's LastSeq — gets every
// event it missed. Across the two streams each event arrives exactly once.
func TestEventStreamLaggedResume(t *testing.T) {
	tests := []struct {
		name string
		tx   string // the filter of both streams ("" for none)
		sdk  bool   // read with the client SDK, else as EventSource does
	}{
		{"EventSource, every event", "", false},
		{"EventSource, one transaction", "b", false},
		{"client SDK, every event", "", true},
		{"client SDK, one transaction", "b", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broker := tccd.NewBroker(1<<15, 4, nil)
			e := newEventsEnv(t, broker, tccdhttp.ServerConfig{}, nil)
			url, hc := smallBufferServer(t, e.coord)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			open := func(after uint64) lagReader {
				if tt.sdk {
					return openSDKReader(t, ctx, url, hc, tt.tx, after)
				}
				return openSSEReader(t, ctx, url, hc, tt.tx, after)
			}
			// Big events fill the small socket buffers in a few.
			big := strings.Repeat("x", 2048)
			publish := func(i int) {
				broker.Publish(tccd.Event{Type: tccd.EventAttempt, Transaction: string(rune('a' + i%2)), Participant: "http://p/1", Phase: tccd.OpConfirm, Attempt: 1, Error: big})
			}

			first := open(0)
			defer first.close()
			// Publish without reading until the server drops the stream,
			// then a few more it never gets.
			n := 0
			for ; broker.Subscribers() > 0; n++ {
				if n == 1<<14 {
					t.Fatalf("the stream did not lag after %d events", n)
				}
				publish(n)
			}
			for i := 0; i < 6; i++ {
				publish(n + i)
			}
			all, err := broker.Subscribe(tccd.EventFilter{Transaction: tt.tx}, tccd.FromOldest)
			if err != nil {
				t.Fatal(err)
			}
			all.Close()
			var want []uint64
			for _, ev := range all.Replay {
				if ev.Type == tccd.EventGap {
					t.Fatal("the ring lost events: make it larger")
				}
				want = append(want, ev.Seq)
			}

			got := map[uint64]int{}
			var lagged bool
			for {
				typ, seq, err := first.next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if lagged {
					t.Fatalf("%s event %d after the lagged event", typ, seq)
				}
				switch typ {
				case api.EventLagged:
					lagged = true
				case api.EventAttempt:
					got[seq]++
				default:
					t.Fatalf("first stream: %s event %d", typ, seq)
				}
			}
			if !lagged {
				t.Fatal("the first stream ended without a lagged event")
			}
			if len(got) == 0 || len(got) >= len(want) {
				t.Fatalf("the first stream had %d of %d events: it should have lagged", len(got), len(want))
			}

			second := open(first.resumeFrom())
			defer second.close()
			for last := want[len(want)-1]; got[last] == 0; {
				typ, seq, err := second.next()
				if err != nil {
					t.Fatalf("resumed after %d: %v; got %v", first.resumeFrom(), err, got)
				}
				if typ != api.EventAttempt {
					t.Fatalf("resumed after %d: %s event %d", first.resumeFrom(), typ, seq)
				}
				got[seq]++
			}
			for _, seq := range want {
				if got[seq] != 1 {
					t.Errorf("event %d arrived %d times (resumed after %d)", seq, got[seq], first.resumeFrom())
				}
				delete(got, seq)
			}
			if len(got) > 0 {
				t.Errorf("events outside the filter: %v", got)
			}
		})
	}
}

// smallBufferServer serves coord's API with small socket buffers at both
// ends, so that a stream that is not read blocks the server's writes
// after a few events, not after megabytes. It returns its URL and the
// client to reach it with.
func smallBufferServer(t *testing.T, coord *tccd.Coordinator) (string, *http.Client) {
	t.Helper()
	server := tccdhttp.NewServer(coord, tccdhttp.ServerConfig{}, nil)
	srv := httptest.NewUnstartedServer(server)
	srv.Listener = smallBufferListener{srv.Listener}
	srv.Start()
	t.Cleanup(func() {
		server.Shutdown(context.Background())
		srv.Close()
	})
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return srv.URL, &http.Client{Transport: tr}
}

type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// lagReader reads one event stream, read by the caller only when it
// chooses, the way a client that resumes does.
type lagReader interface {
	// next returns the next event's type and seq; io.EOF at the end.
	next() (typ string, seq uint64, err error)
	// resumeFrom is the Last-Event-ID the client reconnects with.
	resumeFrom() uint64
	close()
}

// sseReader reads Server-Sent Events as EventSource does: the last id:
// line seen is the Last-Event-ID to resume from.
type sseReader struct {
	resp *http.Response
	sc   *bufio.Scanner
	last uint64
}

func openSSEReader(t *testing.T, ctx context.Context, url string, hc *http.Client, tx string, after uint64) lagReader {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/events?transaction="+tx, nil)
	if after > 0 {
		req.Header.Set(api.HeaderLastEventID, strconv.FormatUint(after, 10))
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/events: %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	return &sseReader{resp: resp, sc: sc, last: after}
}

func (r *sseReader) next() (string, uint64, error) {
	var name, data string
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "" && data != "":
			var ev api.Event
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				return "", 0, err
			}
			if name != ev.Type {
				return "", 0, fmt.Errorf("event: %s, data of a %s event", name, ev.Type)
			}
			return ev.Type, ev.Seq, nil
		case strings.HasPrefix(line, "id: "):
			n, err := strconv.ParseUint(line[4:], 10, 64)
			if err != nil {
				return "", 0, err
			}
			r.last = n
		case strings.HasPrefix(line, "event: "):
			name = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
	if err := r.sc.Err(); err != nil {
		return "", 0, err
	}
	return "", 0, io.EOF
}

func (r *sseReader) resumeFrom() uint64 { return r.last }
func (r *sseReader) close()             { r.resp.Body.Close() }

// sdkReader reads with the client SDK, resuming from its LastSeq.
type sdkReader struct{ s *client.EventStream }

func openSDKReader(t *testing.T, ctx context.Context, url string, hc *http.Client, tx string, after uint64) lagReader {
	t.Helper()
	c, err := client.New(url, client.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Events(ctx, client.EventFilter{Transaction: tx, After: after})
	if err != nil {
		t.Fatal(err)
	}
	return sdkReader{s}
}

func (r sdkReader) next() (string, uint64, error) {
	ev, err := r.s.Next()
	return ev.Type, ev.Seq, err
}

func (r sdkReader) resumeFrom() uint64 { return r.s.LastSeq() }
func (r sdkReader) close()             { r.s.Close() }

// TestEventStreamOwnTransactions: with authentication on, a client's
// stream shows its own transactions only; an admin's shows all.
func TestEventStreamOwnTransactions(t *testing.T) {
	toks, err := tccdhttp.ParseTokens(strings.NewReader("alice client " + tccdhttp.HashToken("tccd_a") + "\nbob client " + tccdhttp.HashToken("tccd_b") + "\nops admin " + tccdhttp.HashToken("tccd_o") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEventsEnv(t, nil, tccdhttp.ServerConfig{Tokens: toks}, nil)
	alice, _ := openStream(t, e.srv.URL+"/api/v1/events", "Authorization", "Bearer tccd_a")
	ops, _ := openStream(t, e.srv.URL+"/api/v1/events", "Authorization", "Bearer tccd_o")
	if _, resp := openStream(t, e.srv.URL+"/api/v1/events"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	for _, who := range []string{"tccd_b", "tccd_a"} {
		code, _, b := e.do(t, "POST", "/api/v1/transactions", "application/json", `{}`, "Authorization", "Bearer "+who)
		if code != http.StatusCreated {
			t.Fatalf("begin: %d %s", code, b)
		}
	}
	first := alice.next(t)
	if o1, o2 := ops.next(t), ops.next(t); o1.data.Transaction == o2.data.Transaction || first.data.Transaction != o2.data.Transaction {
		t.Fatalf("alice saw %s; ops saw %s then %s", first.data.Transaction, o1.data.Transaction, o2.data.Transaction)
	}
	select {
	case ev := <-alice.events:
		t.Fatalf("alice saw another event: %+v", ev)
	default:
	}
}

// TestConfirmAsync: Prefer: respond-async answers 202 once the decision
// is durable, without waiting for a participant that keeps failing.
func TestConfirmAsync(t *testing.T) {
	e := newEventsEnv(t, nil, tccdhttp.ServerConfig{}, nil)
	code, _, b := e.do(t, "POST", "/api/v1/transactions", "application/json", `{"participants":[`+e.link("/busy/1")+`]}`)
	if code != http.StatusCreated {
		t.Fatalf("begin: %d %s", code, b)
	}
	var tx api.Transaction
	json.Unmarshal(b, &tx)
	start := time.Now()
	code, h, b := e.do(t, "PUT", "/api/v1/transactions/"+tx.ID+"/confirm", "", "", "Prefer", "respond-async")
	if code != http.StatusAccepted || h.Get("Preference-Applied") != "respond-async" || h.Get("Location") != "/api/v1/transactions/"+tx.ID {
		t.Fatalf("async confirm: %d %v %s", code, h, b)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Errorf("the async confirm took %v: it waited for the outcome", el)
	}
	json.Unmarshal(b, &tx)
	if tx.State != "confirming" {
		t.Fatalf("state %s, want confirming", tx.State)
	}
	// The SDK: ConfirmAsync, then Wait follows the stream.
	c, err := client.New(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	code, _, b = e.do(t, "POST", "/api/v1/transactions", "application/json", `{"participants":[`+e.link("/ok/w")+`]}`)
	json.Unmarshal(b, &tx)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h2 := c.Tx(tx.ID)
	if _, err := h2.ConfirmAsync(ctx); err != nil {
		t.Fatal(err)
	}
	done, err := h2.Wait(ctx)
	if err != nil || done.State != "confirmed" {
		t.Fatalf("Wait = %+v, %v", done, err)
	}
}

// TestWebhook: the outcome is POSTed, signed, to the notify URL until the
// receiver takes it — here after failing twice — and GET shows the
// delivery.
func TestWebhook(t *testing.T) {
	secret := []byte("whsec-test-0123456789")
	var mu sync.Mutex
	var got []*client.Webhook
	var attempts atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if attempts.Add(1) <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		wh, err := client.VerifyWebhook(secret, r)
		if err != nil {
			t.Errorf("verify: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, wh)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	e := newEventsEnv(t, nil, tccdhttp.ServerConfig{}, secret)
	code, _, b := e.do(t, "POST", "/api/v1/transactions", "application/json",
		`{"participants":[`+e.link("/ok/n1")+`],"notify":"`+recv.URL+`/hook"}`)
	if code != http.StatusCreated {
		t.Fatalf("begin: %d %s", code, b)
	}
	var tx api.Transaction
	json.Unmarshal(b, &tx)
	if code, _, b := e.do(t, "PUT", "/api/v1/transactions/"+tx.ID+"/confirm", "", ""); code != http.StatusOK {
		t.Fatalf("confirm: %d %s", code, b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, b = e.do(t, "GET", "/api/v1/transactions/"+tx.ID, "", "")
		json.Unmarshal(b, &tx)
		if tx.Notification != nil && tx.Notification.State == "delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered: %s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if tx.Notification.Attempts != 3 || tx.Notify != recv.URL+"/hook" {
		t.Fatalf("notification %+v, notify %q", tx.Notification, tx.Notify)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Transaction.ID != tx.ID || got[0].Transaction.State != "confirmed" || got[0].DeliveryID == "" || got[0].DeliveryID != tx.Notification.DeliveryID {
		t.Fatalf("received %+v", got)
	}

	// The Atomikos endpoints take the URL in a header.
	body := `{"participantLinks":[` + e.link("/ok/n2") + `]}`
	if code, _, b := e.do(t, "PUT", "/coordinator/confirm", "application/tcc+json", body, "Tcc-Notify", recv.URL+"/hook"); code != http.StatusNoContent {
		t.Fatalf("atomikos confirm with Tcc-Notify: %d %s", code, b)
	}
	// A refused destination is refused at begin.
	if code, _, b := e.do(t, "POST", "/api/v1/transactions", "application/json", `{"notify":"http://169.254.169.254/x"}`); code != http.StatusBadRequest || !strings.Contains(string(b), "notify") {
		t.Errorf("notify to a metadata address: %d %s", code, b)
	}
}

// TestWebhookNeedsSecret: without a secret to sign with, a notify URL is
// refused with 422 saying why, and nothing is created.
func TestWebhookNeedsSecret(t *testing.T) {
	e := newEventsEnv(t, nil, tccdhttp.ServerConfig{}, nil)
	code, _, b := e.do(t, "POST", "/api/v1/transactions", "application/json", `{"notify":"http://127.0.0.1:1/hook"}`)
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(b), "webhook-secret-file") || !strings.Contains(string(b), `"code":"not_configured"`) {
		t.Fatalf("begin with notify and no secret: %d %s", code, b)
	}
	if list, _, _ := e.coord.List(context.Background(), tccd.Filter{Limit: 10}); len(list) != 0 {
		t.Fatalf("%d transactions created", len(list))
	}
}

// TestWebhookResumedAtStart: a transaction whose outcome's delivery is
// still pending when the coordinator stops is delivered by the next
// start, at once — not by the re-drive loop, which runs much later here.
func TestWebhookResumedAtStart(t *testing.T) {
	secret := []byte("whsec-resume-0123456789")
	var accept atomic.Bool
	var refused, delivered atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !accept.Load() {
			refused.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if _, err := client.VerifyWebhook(secret, r); err != nil {
			t.Errorf("verify: %v", err)
		}
		delivered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	part := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer part.Close()
	dir := t.TempDir()
	open := func() (*tccd.Coordinator, *pebble.Store) {
		store, err := pebble.Open(dir, pebble.Options{CacheSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		caller := tccdhttp.NewCallerWith(tccdhttp.CallerConfig{WebhookSecret: secret})
		coord := tccd.NewCoordinator(tccd.Config{
			RetryMin: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond, RedriveInterval: time.Hour, Notifier: caller,
		}, store, caller, nil, nil)
		if err := coord.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		return coord, store
	}
	coord, store := open()
	tx, err := coord.Begin(context.Background(), tccd.BeginRequest{Notify: recv.URL + "/hook",
		Participants: []tccd.Link{{URI: part.URL + "/r/1", Expires: time.Now().Add(time.Minute)}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := coord.Confirm(context.Background(), tx.ID, nil); err != nil {
		t.Fatal(err)
	}
	for refused.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	coord.Close()
	store.Close()
	accept.Store(true)
	coord, store = open()
	defer store.Close()
	defer coord.Close()
	deadline := time.Now().Add(10 * time.Second)
	for delivered.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the pending delivery was not resumed at start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
