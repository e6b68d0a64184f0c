package stomp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"
)

// subprotocols are the WebSocket subprotocols the server offers, best
// first: the handshake picks the first of these the client offers.
var subprotocols = []string{"v12.stomp", "v11.stomp", "v10.stomp"}

var _ http.Handler = (*Server)(nil)

// Server is a STOMP 1.2 server over WebSocket. It is an http.Handler:
// mount it where clients connect (tccd: /ws/tcc). Create it with
// NewServer; stop it with Close.
type Server struct {
	cfg Config
	lim limits
	log *slog.Logger

	// ctx is the parent of every connection's context; Close cancels it.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// mu guards closed, the registry of subscriptions by destination,
	// and the Add side of wg (so that no Add follows Close's Wait).
	mu     sync.RWMutex
	closed bool
	topics map[string]map[*subscription]struct{}
	wg     sync.WaitGroup // ServeHTTP calls and the writers they start

	ids      atomic.Uint64 // session and message ids
	open     atomic.Int64
	subs     atomic.Int64
	accepted atomic.Int64
	dropped  atomic.Int64
	refused  atomic.Int64
	silent   atomic.Int64
}

// NewServer returns a server for cfg, or cfg's problems.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("stomp: %w", err)
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Server{
		cfg:    cfg,
		lim:    limits{maxFrameSize: cfg.MaxFrameSize, maxHeaders: cfg.MaxHeaders, maxHeaderLength: cfg.MaxHeaderLength},
		log:    cfg.Logger,
		ctx:    ctx,
		cancel: cancel,
		topics: map[string]map[*subscription]struct{}{},
	}, nil
}

// Stats are the server's counters.
type Stats struct {
	Connections   int64 // open now (upgraded, CONNECTed or not)
	Subscriptions int64 // active now
	Accepted      int64 // WebSocket connections accepted since start
	Dropped       int64 // closed because their send queue was full
	Refused       int64 // closed after an ERROR frame
	TimedOut      int64 // closed for silence: no CONNECT in time, or heart-beats missed
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Connections:   s.open.Load(),
		Subscriptions: s.subs.Load(),
		Accepted:      s.accepted.Load(),
		Dropped:       s.dropped.Load(),
		Refused:       s.refused.Load(),
		TimedOut:      s.silent.Load(),
	}
}

// ServeHTTP upgrades the request to a WebSocket and serves STOMP on it
// until the connection ends. It answers 503 once the server is closed.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		http.Error(w, "STOMP server closed", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()

	hw := &hijackWriter{ResponseWriter: w}
	ws, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		Subprotocols:   subprotocols,
		OriginPatterns: s.cfg.OriginPatterns,
	})
	if err != nil {
		// Accept has answered the request.
		s.log.Debug("stomp: websocket upgrade refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	// Frames are bounded by the decoder, which answers an oversized one
	// with an ERROR frame; the library's message limit would only close.
	ws.SetReadLimit(-1)
	s.accepted.Add(1)
	s.open.Add(1)
	defer s.open.Add(-1)

	c := newConn(s, ws, hw.conn, r)
	c.serve()
}

// enter registers a ServeHTTP call, unless the server is closed.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// Close closes every connection, refuses new ones, and waits until every
// ServeHTTP call and goroutine of the server has returned, or until ctx
// ends (its error is returned then). Hooks are not called after Close
// returns nil. Connections are closed abruptly, without an ERROR frame.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel(errServerClosed)

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		// The waiting goroutine ends with the last connection; the
		// connections are already being torn down.
		return fmt.Errorf("stomp: close: %w", ctx.Err())
	}
}

// Publish sends a MESSAGE with header and body to every current
// subscriber of destination and returns how many subscriptions it was
// queued for. The server sets the destination, subscription, message-id
// and content-length headers; header adds others, and its values for
// those four are ignored. Pass content-type when there is a body: the
// server does not guess one.
//
// Publish never waits for a client: a connection whose send queue is
// full is closed instead (and counted in Stats.Dropped). It may be
// called concurrently, from hooks too, and does nothing after Close.
func (s *Server) Publish(destination string, header map[string]string, body []byte) int {
	extra := extraHeaders(header)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0
	}
	n := 0
	for sub := range s.topics[destination] {
		if sub.deliver(extra, body) {
			n++
		}
	}
	return n
}

// extraHeaders returns the application's MESSAGE headers in a stable
// order, without the ones the server sets.
func extraHeaders(m map[string]string) []header {
	hs := make([]header, 0, len(m))
	for k, v := range m {
		switch k {
		case hdrDestination, hdrSubscription, hdrMessageID, hdrContentLength:
			continue
		}
		hs = append(hs, header{k, v})
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].key < hs[j].key })
	return hs
}

// register adds sub to the registry, unless the server is closed.
func (s *Server) register(sub *subscription) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	set := s.topics[sub.dest]
	if set == nil {
		set = map[*subscription]struct{}{}
		s.topics[sub.dest] = set
	}
	set[sub] = struct{}{}
	s.subs.Add(1)
	return true
}

// unregister removes sub from the registry.
func (s *Server) unregister(sub *subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.topics[sub.dest]
	if _, ok := set[sub]; !ok {
		return
	}
	delete(set, sub)
	if len(set) == 0 {
		delete(s.topics, sub.dest)
	}
	s.subs.Add(-1)
}

func (s *Server) nextID() string {
	return strconv.FormatUint(s.ids.Add(1), 10)
}

// hijackWriter keeps the network connection the WebSocket library
// hijacks, so that the server can close it under the library when a
// connection must end at once (Close, a slow client): the library's own
// close handshake may otherwise wait seconds for a peer that is gone.
type hijackWriter struct {
	http.ResponseWriter
	conn net.Conn
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	w.conn = c
	return c, brw, nil
}

func (w *hijackWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var errServerClosed = errors.New("server closed")
