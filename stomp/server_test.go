package stomp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestConnectNegotiation(t *testing.T) {
	ts := newTestServer(t, Config{ServerName: "tccd-test"})
	for _, tt := range []struct {
		name    string
		offer   []string // WebSocket subprotocols
		proto   string   // the one chosen
		command string
		kv      []string
		version string
	}{
		{"1.2", []string{"v12.stomp", "v11.stomp", "v10.stomp"}, "v12.stomp", "CONNECT", []string{"accept-version", "1.0,1.1,1.2"}, "1.2"},
		{"best subprotocol whatever the order", []string{"v10.stomp", "v12.stomp"}, "v12.stomp", "CONNECT", []string{"accept-version", "1.2"}, "1.2"},
		{"1.1", []string{"v11.stomp"}, "v11.stomp", "CONNECT", []string{"accept-version", "1.0,1.1"}, "1.1"},
		{"1.0 says no version", []string{"v10.stomp"}, "v10.stomp", "CONNECT", nil, "1.0"},
		{"no subprotocol offered", nil, "", "CONNECT", []string{"accept-version", "1.2"}, "1.2"},
		{"only unknown subprotocols", []string{"mqtt"}, "", "CONNECT", []string{"accept-version", "1.2"}, "1.2"},
		{"STOMP command", []string{"v12.stomp"}, "v12.stomp", "STOMP", []string{"accept-version", "1.2", "host", "h"}, "1.2"},
		{"unknown versions ignored", []string{"v12.stomp"}, "v12.stomp", "CONNECT", []string{"accept-version", "1.1,3.0"}, "1.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, ts, tt.offer...)
			if got := c.ws.Subprotocol(); got != tt.proto {
				t.Fatalf("subprotocol %q, want %q", got, tt.proto)
			}
			c.send(fr(tt.command, "", tt.kv...))
			f := c.expect("CONNECTED")
			if v := header1(t, f, "version"); v != tt.version {
				t.Fatalf("version %s, want %s", v, tt.version)
			}
			if v := header1(t, f, "server"); v != "tccd-test" {
				t.Fatalf("server %q", v)
			}
			header1(t, f, "session")
			if hb := header1(t, f, "heart-beat"); hb != "10000,10000" {
				t.Fatalf("heart-beat %q, want the default 10000,10000", hb)
			}
		})
	}

	t.Run("no common version", func(t *testing.T) {
		c := dial(t, ts, "v12.stomp")
		c.raw("CONNECT\naccept-version:2.0,2.1\n\n\x00")
		f := c.expectError("unsupported STOMP version")
		if v := header1(t, f, "version"); v != "1.2,1.1,1.0" {
			t.Fatalf("version %q", v)
		}
	})
}

// TestVersion10 speaks 1.0: no escaping either way.
func TestVersion10(t *testing.T) {
	got := make(chan string, 1)
	ts := newTestServer(t, Config{OnSend: func(ctx context.Context, _ any, dest string, h map[string]string, body []byte) error {
		got <- h["k"]
		return nil
	}})
	c := dial(t, ts)
	c.raw("CONNECT\n\n\x00")
	if v := header1(t, c.expect("CONNECTED"), "version"); v != "1.0" {
		t.Fatalf("version %s", v)
	}
	c.dec.version = v10
	c.raw("SUBSCRIBE\nid:a\\c\ndestination:/topic/x\n\n\x00SEND\ndestination:/app/x\nk:a\\cb\nreceipt:1\n\n\x00")
	c.expect("RECEIPT")
	if k := <-got; k != `a\cb` {
		t.Fatalf("1.0 header read as %q, want it unescaped", k)
	}
	ts.Publish("/topic/x", map[string]string{"h": `x\y`, "bad": "a\nb"}, nil)
	f := c.expect("MESSAGE")
	if id := header1(t, f, "subscription"); id != `a\c` {
		t.Fatalf("subscription %q", id)
	}
	if h := header1(t, f, "h"); h != `x\y` {
		t.Fatalf("h %q", h)
	}
	if _, ok := f.get("bad"); ok {
		t.Fatal("a header 1.0 cannot carry was sent")
	}
}

func TestHeartBeats(t *testing.T) {
	t.Run("server sends heart-beats", func(t *testing.T) {
		ts := newTestServer(t, Config{HeartBeat: 20 * time.Millisecond})
		c := dial(t, ts)
		c.raw("CONNECT\naccept-version:1.2\nheart-beat:0,10\n\n\x00")
		f := c.expect("CONNECTED")
		if hb := header1(t, f, "heart-beat"); hb != "20,20" {
			t.Fatalf("heart-beat %q", hb)
		}
		// Wait for three EOL messages: the server's heart-beats.
		for n := 0; n < 3; {
			_, data, err := c.ws.Read(c.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != "\n" {
				t.Fatalf("got %q, want a heart-beat", data)
			}
			n++
		}
	})

	t.Run("no heart-beats when the client wants none", func(t *testing.T) {
		ts := newTestServer(t, Config{HeartBeat: time.Millisecond})
		c := connect(t, ts, "heart-beat", "0,0", "receipt", "ignored")
		// Frames the client asks for arrive with no EOL before them.
		c.raw("SUBSCRIBE\nid:1\ndestination:/topic/a\nreceipt:r\n\n\x00")
		// No RECEIPT for CONNECT: CONNECTED answered it.
		_, data, err := c.ws.Read(c.ctx)
		if err != nil || string(data) != "RECEIPT\nreceipt-id:r\n\n\x00" {
			t.Fatalf("got %q, %v; want the SUBSCRIBE's RECEIPT alone", data, err)
		}
	})

	t.Run("heart-beats off", func(t *testing.T) {
		ts := newTestServer(t, Config{HeartBeat: -1})
		c := connect(t, ts, "heart-beat", "100,100")
		if hb := header1(t, c.connected, "heart-beat"); hb != "0,0" {
			t.Fatalf("heart-beat %q", hb)
		}
	})

	t.Run("a silent client is closed", func(t *testing.T) {
		var logs syncBuffer
		ts := newTestServer(t, Config{HeartBeat: 20 * time.Millisecond, HeartBeatGrace: 20 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		c := dial(t, ts)
		// The client promises a heart-beat every 30 ms and sends none.
		c.raw("CONNECT\naccept-version:1.2\nheart-beat:30,0\n\n\x00")
		c.expect("CONNECTED")
		c.expectClosed(-1)
		waitFor(t, "the timeout counted", func() bool { return ts.Stats().TimedOut == 1 })
		waitFor(t, "the reason logged", func() bool { return strings.Contains(logs.String(), "heart-beat window") })
	})

	t.Run("a client that never connects is closed", func(t *testing.T) {
		var logs syncBuffer
		ts := newTestServer(t, Config{ConnectTimeout: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		c := dial(t, ts)
		// Heart-beat EOLs do not buy time before CONNECT. (On a slow
		// machine the server may have closed already: writes may fail.)
		c.write("\n")
		c.write("\n")
		c.expectClosed(-1)
		waitFor(t, "the timeout counted", func() bool { return ts.Stats().TimedOut == 1 })
		waitFor(t, "the reason logged", func() bool { return strings.Contains(logs.String(), "no CONNECT frame in time") })
	})

	t.Run("a client that sends heart-beats stays", func(t *testing.T) {
		// The window is 1 s (100 ms + 900 ms grace); the client sends an
		// EOL every 20 ms for well over a window. Only a stall of a
		// whole second on the test machine could break this.
		ts := newTestServer(t, Config{HeartBeat: 100 * time.Millisecond, HeartBeatGrace: 900 * time.Millisecond})
		c := dial(t, ts)
		c.raw("CONNECT\naccept-version:1.2\nheart-beat:100,0\n\n\x00")
		c.expect("CONNECTED")
		end := time.Now().Add(2500 * time.Millisecond)
		for time.Now().Before(end) {
			c.raw("\n")
			time.Sleep(20 * time.Millisecond)
		}
		c.raw("DISCONNECT\nreceipt:bye\n\n\x00")
		c.expect("RECEIPT")
		if n := ts.Stats().TimedOut; n != 0 {
			t.Fatalf("%d connections timed out", n)
		}
	})
}

// sendCall is what OnSend was called with.
type sendCall struct {
	principal any
	dest      string
	header    map[string]string
	body      []byte
}

// echoConfig is a Config whose OnSend records each call and publishes
// the body to TopicPrefix+<the rest of the destination>, and whose
// Authenticate takes passcode "secret" and names the principal after the
// login.
func echoConfig(calls chan<- sendCall, srv **Server) Config {
	return Config{
		Authenticate: func(ctx context.Context, r *http.Request, login, passcode string) (any, error) {
			if passcode != "secret" && r.Header.Get("Authorization") != "Bearer secret" {
				return nil, errors.New("wrong passcode")
			}
			return "user:" + login, nil
		},
		OnSend: func(ctx context.Context, principal any, dest string, h map[string]string, body []byte) error {
			if strings.HasPrefix(dest, "/app/fail") {
				return errors.New("refused by the application\nsecond line")
			}
			if calls != nil {
				calls <- sendCall{principal, dest, h, body}
			}
			(*srv).Publish("/topic"+strings.TrimPrefix(dest, "/app"), map[string]string{"content-type": h["content-type"]}, body)
			return nil
		},
	}
}

func TestSubscribeSendMessage(t *testing.T) {
	calls := make(chan sendCall, 10)
	var srv *Server
	ts := newTestServer(t, echoConfig(calls, &srv), &srv)
	c := connect(t, ts, "login", "ann", "passcode", "secret")

	c.send(fr("SUBSCRIBE", "", "id", "s1", "destination", "/topic/echo", "ack", "auto", "receipt", "r-sub"))
	if id := header1(t, c.expect("RECEIPT"), "receipt-id"); id != "r-sub" {
		t.Fatalf("receipt-id %q", id)
	}
	waitFor(t, "one subscription", func() bool { return ts.Stats().Subscriptions == 1 })

	c.send(fr("SEND", `{"status":"confirmed"}`, "destination", "/app/echo", "content-type", "application/json", "receipt", "r:send\n"))
	m := c.expect("MESSAGE")
	for k, want := range map[string]string{
		"destination": "/topic/echo", "subscription": "s1", "content-type": "application/json", "content-length": "22",
	} {
		if got := header1(t, m, k); got != want {
			t.Errorf("MESSAGE %s %q, want %q", k, got, want)
		}
	}
	header1(t, m, "message-id")
	if string(m.body) != `{"status":"confirmed"}` {
		t.Fatalf("body %q", m.body)
	}
	// The RECEIPT follows the handling of the SEND, so after the MESSAGE
	// it published; a receipt id with a colon and a newline survives.
	if id := header1(t, c.expect("RECEIPT"), "receipt-id"); id != "r:send\n" {
		t.Fatalf("receipt-id %q", id)
	}
	call := <-calls
	if call.principal != "user:ann" || call.dest != "/app/echo" || call.header["content-type"] != "application/json" || call.header["receipt"] != "r:send\n" {
		t.Fatalf("OnSend got %+v", call)
	}

	// A binary body with NUL octets, in a binary WebSocket message.
	bin := []byte{0, 1, 2, 0xff, 0}
	c.send(fr("SEND", string(bin), "destination", "/app/echo", "content-length", "5"))
	m = c.expect("MESSAGE")
	if !bytes.Equal(m.body, bin) {
		t.Fatalf("binary body %q", m.body)
	}
	if got := (<-calls).body; !bytes.Equal(got, bin) {
		t.Fatalf("OnSend body %q", got)
	}

	// Two frames in one WebSocket message, and one frame over three.
	c.raw("SEND\ndestination:/app/echo\n\none\x00\nSEND\ndestination:/app/echo\n\ntwo\x00")
	for _, want := range []string{"one", "two"} {
		if m := c.expect("MESSAGE"); string(m.body) != want {
			t.Fatalf("body %q, want %q", m.body, want)
		}
	}
	c.raw("SEN")
	c.raw("D\r\ndestination:/app/echo\r\n\r\nthr")
	c.raw("ee\x00")
	if m := c.expect("MESSAGE"); string(m.body) != "three" {
		t.Fatalf("body %q", m.body)
	}

	// A second subscription to the same destination gets its own copy.
	c.send(fr("SUBSCRIBE", "", "id", "s2", "destination", "/topic/echo", "receipt", "r2"))
	c.expect("RECEIPT")
	if n := ts.Publish("/topic/echo", nil, []byte("both")); n != 2 {
		t.Fatalf("Publish reached %d subscriptions, want 2", n)
	}
	seen := map[string]bool{}
	for range 2 {
		m := c.expect("MESSAGE")
		seen[header1(t, m, "subscription")] = true
	}
	if !seen["s1"] || !seen["s2"] {
		t.Fatalf("subscriptions %v", seen)
	}

	// UNSUBSCRIBE: once its RECEIPT is in, nothing more arrives for it.
	c.send(fr("UNSUBSCRIBE", "", "id", "s1", "receipt", "r-unsub"))
	c.expect("RECEIPT")
	c.send(fr("UNSUBSCRIBE", "", "id", "s2"))
	c.send(fr("UNSUBSCRIBE", "", "id", "never-subscribed", "receipt", "r-unknown"))
	c.expect("RECEIPT")
	if n := ts.Publish("/topic/echo", nil, []byte("nobody")); n != 0 {
		t.Fatalf("Publish after UNSUBSCRIBE reached %d", n)
	}

	// DISCONNECT: its RECEIPT, then a normal close.
	c.send(fr("DISCONNECT", "", "receipt", "bye"))
	if id := header1(t, c.expect("RECEIPT"), "receipt-id"); id != "bye" {
		t.Fatalf("receipt-id %q", id)
	}
	c.expectClosed(websocket.StatusNormalClosure)
	waitFor(t, "the connection gone", func() bool { st := ts.Stats(); return st.Connections == 0 && st.Subscriptions == 0 })
	if st := ts.Stats(); st.Refused != 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestAuthorizationHeader: a client that can set headers on the upgrade
// request authenticates with them.
func TestAuthorizationHeader(t *testing.T) {
	var srv *Server
	ts := newTestServer(t, echoConfig(nil, &srv), &srv)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	c := &client{t: t, ws: ws, dec: newDecoder(limits{maxFrameSize: 1 << 20, maxHeaders: 100, maxHeaderLength: 1 << 20}), ctx: ctx, cancel: cancel}
	c.raw("CONNECT\naccept-version:1.2\n\n\x00")
	c.expect("CONNECTED")
}

func TestRetained(t *testing.T) {
	type subCall struct {
		principal any
		dest      string
	}
	subs := make(chan subCall, 10)
	release := make(chan *Message)
	var srv *Server
	cfg := echoConfig(nil, &srv)
	cfg.OnSubscribe = func(ctx context.Context, principal any, dest string) (*Message, error) {
		subs <- subCall{principal, dest}
		switch {
		case dest == "/topic/done":
			return &Message{Header: map[string]string{"content-type": "application/json", "subscription": "forged"}, Body: []byte(`{"outcome":"commit"}`)}, nil
		case dest == "/topic/secret":
			return nil, errors.New("not yours")
		case strings.HasPrefix(dest, "/topic/slow"):
			select {
			case m := <-release:
				if m == nil {
					return nil, errors.New("refused late")
				}
				return m, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return nil, nil
	}
	ts := newTestServer(t, cfg, &srv)

	t.Run("retained message at once", func(t *testing.T) {
		c := connect(t, ts, "login", "bob", "passcode", "secret")
		c.send(fr("SUBSCRIBE", "", "id", "0", "destination", "/topic/done", "receipt", "r"))
		m := c.expect("MESSAGE")
		if string(m.body) != `{"outcome":"commit"}` || header1(t, m, "content-type") != "application/json" ||
			header1(t, m, "subscription") != "0" || header1(t, m, "destination") != "/topic/done" {
			t.Fatalf("retained MESSAGE %q %q", m.headers, m.body)
		}
		c.expect("RECEIPT")
		if call := <-subs; call.principal != "user:bob" || call.dest != "/topic/done" {
			t.Fatalf("OnSubscribe got %+v", call)
		}
		// A subscription without a retained message gets nothing at once.
		c.send(fr("SUBSCRIBE", "", "id", "1", "destination", "/topic/plain", "receipt", "r1"))
		c.expect("RECEIPT")
		<-subs
	})

	t.Run("refused", func(t *testing.T) {
		c := connect(t, ts, "passcode", "secret")
		c.send(fr("SUBSCRIBE", "", "id", "0", "destination", "/topic/secret", "receipt", "r-secret"))
		f := c.expectError("not yours")
		if id := header1(t, f, "receipt-id"); id != "r-secret" {
			t.Fatalf("receipt-id %q", id)
		}
		<-subs
	})

	t.Run("published while asking: held, then after the retained one", func(t *testing.T) {
		c := connect(t, ts, "passcode", "secret")
		c.send(fr("SUBSCRIBE", "", "id", "0", "destination", "/topic/slow1"))
		<-subs // OnSubscribe is running: the subscription is registered
		if n := ts.Publish("/topic/slow1", nil, []byte("published")); n != 1 {
			t.Fatalf("Publish reached %d", n)
		}
		release <- &Message{Body: []byte("retained")}
		for _, want := range []string{"retained", "published"} {
			if m := c.expect("MESSAGE"); string(m.body) != want {
				t.Fatalf("got %q, want %q", m.body, want)
			}
		}
	})

	t.Run("published while asking, then refused: nothing delivered", func(t *testing.T) {
		c := connect(t, ts, "passcode", "secret")
		c.send(fr("SUBSCRIBE", "", "id", "0", "destination", "/topic/slow2"))
		<-subs
		ts.Publish("/topic/slow2", nil, []byte("must not arrive"))
		release <- nil
		c.expectError("refused late")
	})
}

func TestBadFrames(t *testing.T) {
	var srv *Server
	cfg := echoConfig(nil, &srv)
	cfg.MaxFrameSize = 1024
	cfg.MaxHeaders = 8
	cfg.MaxHeaderLength = 128
	cfg.MaxSubscriptions = 2
	ts := newTestServer(t, cfg, &srv)

	// A healthy client, subscribed throughout, must keep working.
	healthy := connect(t, ts, "passcode", "secret")
	healthy.send(fr("SUBSCRIBE", "", "id", "h", "destination", "/topic/health", "receipt", "r"))
	healthy.expect("RECEIPT")
	round := 0
	checkHealthy := func(t *testing.T) {
		t.Helper()
		round++
		body := fmt.Sprintf("round %d", round)
		if n := ts.Publish("/topic/health", nil, []byte(body)); n != 1 {
			t.Fatalf("Publish reached %d", n)
		}
		if m := healthy.expect("MESSAGE"); string(m.body) != body {
			t.Fatalf("healthy client got %q", m.body)
		}
	}

	const conn = "CONNECT\naccept-version:1.2\npasscode:secret\n\n\x00"
	for _, tt := range []struct {
		name      string
		input     string // after the connection opens; conn is sent first when connect is set
		connect   bool
		message   string
		receiptID string
	}{
		{"SEND before CONNECT", "SEND\ndestination:/app/echo\nreceipt:r1\n\nx\x00", false, "expected CONNECT or STOMP, got SEND", "r1"},
		{"SUBSCRIBE before CONNECT", "SUBSCRIBE\nid:0\ndestination:/topic/x\n\n\x00", false, "expected CONNECT", ""},
		{"wrong passcode", "CONNECT\naccept-version:1.2\nlogin:eve\npasscode:guess\nreceipt:r\n\n\x00", false, "authentication failed", "r"},
		{"no passcode", "CONNECT\naccept-version:1.2\n\n\x00", false, "authentication failed", ""},
		{"bad heart-beat", "CONNECT\naccept-version:1.2\npasscode:secret\nheart-beat:soon\n\n\x00", false, "heart-beat", ""},
		{"malformed before CONNECT", "hello\n\n\x00", false, "malformed frame", ""},
		{"header without colon", "SEND\ndestination:/app/echo\nnonsense\n\n\x00", true, "malformed frame: header line without a colon", ""},
		{"undefined escape", "SEND\ndestination:/app/\\techo\n\n\x00", true, "undefined escape", ""},
		{"content-length mismatch", "SEND\ndestination:/app/echo\ncontent-length:2\nreceipt:r7\n\nabc\x00", true, "no NUL after", "r7"},
		{"unknown command", "FROB\nreceipt:r2\n\n\x00", true, "unknown command FROB", "r2"},
		{"server command", "MESSAGE\n\n\x00", true, "unknown command MESSAGE", ""},
		{"ACK", "ACK\nid:1\n\n\x00", true, "ACK not supported", ""},
		{"BEGIN", "BEGIN\ntransaction:t\n\n\x00", true, "no STOMP transactions", ""},
		{"SEND in a transaction", "SEND\ndestination:/app/echo\ntransaction:t\n\n\x00", true, "transactions", ""},
		{"second CONNECT", conn, true, "already connected", ""},
		{"frame too large", "SEND\ndestination:/app/echo\nreceipt:r8\n\n" + strings.Repeat("x", 2000) + "\x00", true, "frame larger than 1024 bytes", "r8"},
		{"endless frame", "SEND\ndestination:/app/echo\n\n" + strings.Repeat("x", 5000), true, "frame larger than 1024 bytes", ""},
		{"content-length too large", "SEND\ndestination:/app/echo\ncontent-length:5000\n\n", true, "frame larger than 1024 bytes", ""},
		{"header too long", "SEND\ndestination:/app/" + strings.Repeat("x", 200) + "\n\n\x00", true, "header line longer than 128 bytes", ""},
		{"too many headers", "SEND\n" + strings.Repeat("a:b\n", 9) + "\n\x00", true, "more than 8 headers", ""},
		{"body on SUBSCRIBE", "SUBSCRIBE\nid:0\ndestination:/topic/x\nreceipt:r3\n\nbody\x00", true, "SUBSCRIBE frame with a body", "r3"},
		{"SEND without destination", "SEND\nreceipt:r4\n\nx\x00", true, "without a destination", "r4"},
		{"SEND to a topic", "SEND\ndestination:/topic/health\n\nforged\x00", true, `SEND to "/topic/health": clients send only to destinations under /app/`, ""},
		{"SEND to the bare prefix", "SEND\ndestination:/app\n\n\x00", true, "clients send only", ""},
		{"SEND refused by the application", "SEND\ndestination:/app/fail\nreceipt:r5\n\n\x00", true, "refused by the application second line", "r5"},
		{"SUBSCRIBE outside the topics", "SUBSCRIBE\nid:0\ndestination:/app/echo\n\n\x00", true, "subscriptions are to destinations under /topic/", ""},
		{"SUBSCRIBE without id", "SUBSCRIBE\ndestination:/topic/x\n\n\x00", true, "without an id", ""},
		{"SUBSCRIBE without destination", "SUBSCRIBE\nid:0\n\n\x00", true, "without a destination", ""},
		{"client ack", "SUBSCRIBE\nid:0\ndestination:/topic/x\nack:client\n\n\x00", true, "ack:client not supported", ""},
		{"duplicate subscription id", "SUBSCRIBE\nid:0\ndestination:/topic/x\n\n\x00SUBSCRIBE\nid:0\ndestination:/topic/y\n\n\x00", true, `subscription id "0" already in use`, ""},
		{"too many subscriptions", "SUBSCRIBE\nid:0\ndestination:/topic/x\n\n\x00SUBSCRIBE\nid:1\ndestination:/topic/x\n\n\x00SUBSCRIBE\nid:2\ndestination:/topic/x\nreceipt:r6\n\n\x00", true, "too many subscriptions: at most 2", "r6"},
		{"UNSUBSCRIBE without id", "UNSUBSCRIBE\n\n\x00", true, "without an id", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			refused := ts.Stats().Refused
			c := dial(t, ts, "v12.stomp")
			if tt.connect {
				c.raw(conn)
				c.expect("CONNECTED")
			}
			c.raw(tt.input)
			f := c.expectError(tt.message)
			if id, _ := f.get("receipt-id"); id != tt.receiptID {
				t.Fatalf("receipt-id %q, want %q", id, tt.receiptID)
			}
			waitFor(t, "the refusal counted", func() bool { return ts.Stats().Refused == refused+1 })
			checkHealthy(t)
		})
	}

	// The server still takes new clients, and cleaned up after the others.
	c := connect(t, ts, "passcode", "secret")
	c.send(fr("DISCONNECT", "", "receipt", "x"))
	c.expect("RECEIPT")
	c.expectClosed(websocket.StatusNormalClosure)
	waitFor(t, "only the healthy client left", func() bool {
		st := ts.Stats()
		return st.Connections == 1 && st.Subscriptions == 1
	})
	checkHealthy(t)
}

// TestNotWebSocket: a plain HTTP request is answered, not served.
func TestNotWebSocket(t *testing.T) {
	ts := newTestServer(t, Config{})
	resp, err := http.Get("http" + strings.TrimPrefix(ts.url, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// TestSlowClient: a subscriber that stops reading is dropped once its
// queue is full, while Publish never waits for it and a subscriber that
// reads gets every message.
func TestSlowClient(t *testing.T) {
	const writeTimeout = time.Minute
	ts := newTestServer(t, Config{SendQueue: 4, WriteTimeout: writeTimeout})
	slow := connect(t, ts)
	slow.send(fr("SUBSCRIBE", "", "id", "0", "destination", "/topic/news", "receipt", "r"))
	slow.expect("RECEIPT")
	fast := connect(t, ts)
	fast.send(fr("SUBSCRIBE", "", "id", "0", "destination", "/topic/news", "receipt", "r"))
	fast.expect("RECEIPT")

	// The slow client reads nothing more. Messages of 256 KiB fill the
	// socket buffers, then its writer blocks, then its queue fills. The
	// write timeout is a minute: if Publish waited for the writer, a
	// Publish would take that long, and the drop would not be counted.
	body := bytes.Repeat([]byte("x"), 256<<10)
	var longest time.Duration
	for i := 0; ts.Stats().Dropped == 0; i++ {
		if i == 1000 { // 250 MiB: far beyond any socket buffer
			t.Fatal("the slow client was never dropped")
		}
		start := time.Now()
		ts.Publish("/topic/news", nil, body)
		longest = max(longest, time.Since(start))
		if m := fast.expect("MESSAGE"); len(m.body) != len(body) {
			t.Fatalf("fast client got %d bytes", len(m.body))
		}
	}
	if longest > writeTimeout/2 {
		t.Fatalf("a Publish took %v", longest)
	}
	waitFor(t, "the slow client gone", func() bool { return ts.Stats().Connections == 1 })
	if n := ts.Publish("/topic/news", nil, []byte("after")); n != 1 {
		t.Fatalf("Publish reached %d, want the fast client alone", n)
	}
	if m := fast.expect("MESSAGE"); string(m.body) != "after" {
		t.Fatalf("got %q", m.body)
	}
	if st := ts.Stats(); st.Dropped != 1 || st.Refused != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestClose: Close ends connections, hooks in progress included, and
// refuses new ones.
func TestClose(t *testing.T) {
	inHook := make(chan struct{})
	ts := newTestServer(t, Config{OnSend: func(ctx context.Context, _ any, _ string, _ map[string]string, _ []byte) error {
		close(inHook)
		<-ctx.Done() // held until the connection ends
		return ctx.Err()
	}})
	s := ts.Server

	a := connect(t, ts)
	a.send(fr("SUBSCRIBE", "", "id", "0", "destination", "/topic/x", "receipt", "r"))
	a.expect("RECEIPT")
	b := connect(t, ts)
	b.send(fr("SEND", "", "destination", "/app/hold"))
	<-inHook
	idle := dial(t, ts) // upgraded, never CONNECTed

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Connections != 0 || st.Subscriptions != 0 {
		t.Fatalf("after Close: %+v", st)
	}
	for _, c := range []*client{a, b, idle} {
		if _, err := c.next(); err == nil {
			t.Fatal("a connection outlived Close")
		}
	}
	if n := s.Publish("/topic/x", nil, nil); n != 0 {
		t.Fatalf("Publish after Close reached %d", n)
	}
	resp, err := http.Get("http" + strings.TrimPrefix(ts.url, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after Close: status %d", resp.StatusCode)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestConcurrent subscribes, unsubscribes, sends and publishes from many
// goroutines at once, for the race detector. The queues are deep enough
// for every message, so that no client is dropped.
func TestConcurrent(t *testing.T) {
	const clients, rounds, publishes = 4, 50, 2000
	var srv *Server
	cfg := echoConfig(nil, &srv)
	cfg.SendQueue = publishes + clients*rounds + 10
	ts := newTestServer(t, cfg, &srv)
	var wg sync.WaitGroup
	for i := range clients {
		c := connect(t, ts, "passcode", "secret")
		wg.Add(2)
		go func() { // reads until the DISCONNECT's receipt, then the close
			defer wg.Done()
			for {
				f, err := c.next()
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				if f.command == "RECEIPT" {
					break
				}
			}
			if _, err := c.next(); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Errorf("client %d: after DISCONNECT: %v", i, err)
			}
		}()
		go func() {
			defer wg.Done()
			var frames []byte
			for j := range rounds {
				id := fmt.Sprint(j)
				for _, f := range []*frame{
					fr("SUBSCRIBE", "", "id", id, "destination", fmt.Sprintf("/topic/t%d", j%3)),
					fr("SEND", "x", "destination", fmt.Sprintf("/app/t%d", (i+j)%3)),
					fr("UNSUBSCRIBE", "", "id", id),
				} {
					frames = appendFrame(frames, f, v12)
					// Some frames alone, some several to a message.
					if j%2 == 0 {
						if err := c.write(string(frames)); err != nil {
							t.Error(err)
							return
						}
						frames = frames[:0]
					}
				}
			}
			frames = appendFrame(frames, fr("DISCONNECT", "", "receipt", "done"), v12)
			if err := c.write(string(frames)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := range publishes {
			ts.Publish(fmt.Sprintf("/topic/t%d", n%3), nil, []byte("p"))
		}
	}()
	wg.Wait()
	waitFor(t, "every connection gone", func() bool { st := ts.Stats(); return st.Connections == 0 && st.Subscriptions == 0 })
	if st := ts.Stats(); st.Refused != 0 || st.Dropped != 0 || st.Accepted != clients {
		t.Fatalf("stats %+v", st)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	bad := Config{AppPrefix: "app", TopicPrefix: "/topic/", MaxFrameSize: -1, SendQueue: -1, WriteTimeout: -time.Second, HeartBeat: time.Microsecond}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad Config accepted")
	}
	for _, want := range []string{"AppPrefix", "TopicPrefix", "MaxFrameSize", "SendQueue", "WriteTimeout", "HeartBeat"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := NewServer(bad); err == nil {
		t.Fatal("NewServer accepted a bad Config")
	}
	for dest, want := range map[string]bool{"/app/x": true, "/app/x/y": true, "/app": false, "/app/": false, "/apple": false, "/ap": false} {
		if got := under(dest, "/app"); got != want {
			t.Errorf("under(%q, /app) = %v", dest, got)
		}
	}
}
