package stomp

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// waitLimit bounds every wait of the tests. It is a fail-safe against a
// hang, never what orders events: tests wait on conditions.
const waitLimit = 30 * time.Second

// testServer is a Server behind an httptest.Server on 127.0.0.1.
type testServer struct {
	*Server
	url string
}

// newTestServer starts a server for cfg. Hooks that need the server
// itself (to publish) read it from *self, which is set before the
// listener starts, so that every connection sees it. On cleanup it
// closes the server, which must return promptly with every connection
// and subscription gone.
func newTestServer(t *testing.T, cfg Config, self ...**Server) *testServer {
	t.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range self {
		*p = s
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		hs.Close()
		if st := s.Stats(); st.Connections != 0 || st.Subscriptions != 0 {
			t.Errorf("after Close: %+v", st)
		}
		// Close waited for every goroutine of the server; the one that
		// waits inside Close may take a moment to return after it.
		var left string
		for deadline := time.Now().Add(waitLimit); ; time.Sleep(time.Millisecond) {
			if left = serverGoroutines(); left == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("server goroutines left after Close:\n%s", left)
				break
			}
		}
	})
	return &testServer{Server: s, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws/tcc"}
}

// serverGoroutines returns the stacks of running goroutines in the
// server's code (connections, writers, Close), or "".
func serverGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "stomp.(*conn).") || strings.Contains(g, "stomp.(*Server).") {
			found = append(found, g)
		}
	}
	return strings.Join(found, "\n\n")
}

// waitFor waits until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// client is a raw STOMP client for tests: it writes what it is told, and
// reads frames with the package's own decoder.
type client struct {
	t   *testing.T
	ws  *websocket.Conn
	dec *decoder
	// ctx bounds the client's reads and writes; cancel ends it.
	ctx    context.Context
	cancel context.CancelFunc
	// connected is the CONNECTED frame, when connect made the client.
	connected *frame
}

// dial opens a WebSocket to ts offering subprotocols.
func dial(t *testing.T, ts *testServer, subprotocols ...string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	ws, _, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{Subprotocols: subprotocols})
	if err != nil {
		cancel()
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(-1)
	c := &client{t: t, ws: ws, dec: newDecoder(limits{maxFrameSize: 64 << 20, maxHeaders: 100, maxHeaderLength: 1 << 20}), ctx: ctx, cancel: cancel}
	t.Cleanup(func() {
		ws.CloseNow()
		cancel()
	})
	return c
}

// connect dials and connects with extra CONNECT headers (key, value…).
func connect(t *testing.T, ts *testServer, kv ...string) *client {
	t.Helper()
	c := dial(t, ts, "v12.stomp")
	c.send(fr("CONNECT", "", append([]string{"accept-version", "1.2", "host", "test"}, kv...)...))
	c.connected = c.expect("CONNECTED")
	return c
}

func (c *client) raw(s string) {
	c.t.Helper()
	if err := c.write(s); err != nil {
		c.t.Fatal(err)
	}
}

// write writes s in one WebSocket message; it may be called from any one
// goroutine.
func (c *client) write(s string) error {
	if err := c.ws.Write(c.ctx, websocket.MessageText, []byte(s)); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func (c *client) send(f *frame) {
	c.t.Helper()
	c.raw(string(appendFrame(nil, f, c.dec.version)))
}

// next returns the next frame, or the error that ended the connection.
// It may be called from any one goroutine.
func (c *client) next() (*frame, error) {
	for {
		f, err := c.dec.next()
		if err != nil {
			return nil, fmt.Errorf("client decoder: %w", err)
		}
		if f != nil {
			return f, nil
		}
		_, data, err := c.ws.Read(c.ctx)
		if err != nil {
			if c.ctx.Err() != nil {
				return nil, fmt.Errorf("timed out reading a frame: %w", err)
			}
			return nil, err
		}
		c.dec.feed(data)
	}
}

// read returns the next frame.
func (c *client) read() *frame {
	c.t.Helper()
	f, err := c.next()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

// expect reads the next frame and checks its command.
func (c *client) expect(command string) *frame {
	c.t.Helper()
	f := c.read()
	if f.command != command {
		c.t.Fatalf("got %s %q %q, want %s", f.command, f.headers, f.body, command)
	}
	return f
}

// expectError reads an ERROR whose message contains want, then the end
// of the connection, closed by the server with a protocol error.
func (c *client) expectError(want string) *frame {
	c.t.Helper()
	f := c.expect("ERROR")
	if msg, _ := f.get("message"); !strings.Contains(msg, want) {
		c.t.Fatalf("ERROR message %q, want one containing %q", msg, want)
	}
	c.expectClosed(websocket.StatusProtocolError)
	return f
}

// expectClosed reads until the connection ends and checks the close
// status (-1: no close frame, the connection was cut).
func (c *client) expectClosed(status websocket.StatusCode) {
	c.t.Helper()
	f, err := c.next()
	if err == nil {
		c.t.Fatalf("got %s %q, want the connection closed", f.command, f.headers)
	}
	if got := websocket.CloseStatus(err); got != status {
		c.t.Fatalf("connection ended with %v (status %d), want status %d", err, got, status)
	}
}

// header returns a frame's header, failing when it is missing.
func header1(t *testing.T, f *frame, key string) string {
	t.Helper()
	v, ok := f.get(key)
	if !ok {
		t.Fatalf("%s frame without %s: %q", f.command, key, f.headers)
	}
	return v
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
