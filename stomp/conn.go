package stomp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// Why a connection ended, when the server ended it without an ERROR frame.
var (
	errSlow           = errors.New("send queue full: client too slow")
	errConnectTimeout = errors.New("no CONNECT frame in time")
	errHeartBeat      = errors.New("client silent past its heart-beat window")
	errDisconnect     = errors.New("client disconnected")
	errEnded          = errors.New("connection ended")
)

// A stompError is a frame the server refuses: it answers with an ERROR
// frame and closes the connection, as STOMP requires.
type stompError struct {
	message string   // the message header
	receipt string   // the receipt header of the refused frame, echoed as receipt-id
	headers []header // more headers (version, on a version mismatch)
	body    string
}

func (e *stompError) Error() string { return e.message }

// refuse returns the ERROR for frame f (nil when the frame could not be
// read).
func refuse(f *frame, format string, args ...any) *stompError {
	e := &stompError{message: fmt.Sprintf(format, args...)}
	if f != nil {
		e.receipt, _ = f.get(hdrReceipt)
	}
	return e
}

// maxMessageLength bounds the message header of an ERROR frame, which
// may carry an application's error text.
const maxMessageLength = 256

// cleanMessage makes s fit a header on one line in every version.
func cleanMessage(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxMessageLength {
		s = s[:maxMessageLength]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// outItem is a unit of the send queue.
type outItem struct {
	data []byte // a frame; nil for none
	// heartBeat, on CONNECTED, is the negotiated interval of the
	// server's heart-beats, which start once CONNECTED is written.
	heartBeat time.Duration
	// last ends the connection once data is written.
	last bool
}

// conn is one WebSocket connection. Its reader runs on the ServeHTTP
// goroutine and alone touches the fields marked "reader"; its writer
// goroutine alone writes to the socket.
type conn struct {
	s       *Server
	ws      *websocket.Conn
	netConn net.Conn // nil if the library did not hijack through us
	r       *http.Request
	session string

	ctx    context.Context
	cancel context.CancelCauseFunc

	out         chan outItem
	writerDone  chan struct{}
	aborted     chan struct{} // closed when abort has run
	dropping    atomic.Bool
	pastConnect atomic.Bool // CONNECT answered: readTimer now times heart-beats

	// reader
	dec        *decoder
	connected  bool
	version    version
	principal  any
	subs       map[string]*subscription
	readTimer  *time.Timer   // the connect timeout, then the heart-beat window
	readWindow time.Duration // 0: no heart-beats expected
}

func newConn(s *Server, ws *websocket.Conn, netConn net.Conn, r *http.Request) *conn {
	ctx, cancel := context.WithCancelCause(s.ctx)
	return &conn{
		s:          s,
		ws:         ws,
		netConn:    netConn,
		r:          r,
		session:    "session-" + s.nextID(),
		ctx:        ctx,
		cancel:     cancel,
		out:        make(chan outItem, s.cfg.SendQueue),
		writerDone: make(chan struct{}),
		aborted:    make(chan struct{}),
		dec:        newDecoder(s.lim),
		version:    v12,
		subs:       map[string]*subscription{},
	}
}

// serve runs the connection to its end: it reads and handles frames,
// then ends the connection the way the reason calls for. The deferred
// clean-up also runs if a hook panics, so the writer never outlives it.
func (c *conn) serve() {
	// Cancelling ctx (Close, a slow client, a missed heart-beat) closes
	// the network connection under the library, which unblocks every
	// read, write and close handshake at once.
	stop := context.AfterFunc(c.ctx, c.abort)

	c.s.wg.Add(1) // within an entered ServeHTTP: never after Close's Wait
	go c.writeLoop()
	defer func() {
		if !stop() {
			<-c.aborted // abort started: let it finish
		}
		c.cancel(errEnded)
		<-c.writerDone
		c.ws.CloseNow()
	}()
	defer c.unsubscribeAll()

	c.readTimer = time.AfterFunc(c.s.cfg.ConnectTimeout, func() {
		if c.pastConnect.Load() {
			c.cancel(errHeartBeat)
		} else {
			c.cancel(errConnectTimeout)
		}
	})
	defer c.readTimer.Stop()

	err := c.readLoop()
	c.readTimer.Stop()
	c.end(err)
}

// abort closes the network connection at once.
func (c *conn) abort() {
	defer close(c.aborted)
	if c.netConn != nil {
		c.netConn.Close()
		return
	}
	c.ws.CloseNow()
}

// end ends the connection after the reader stopped with err.
func (c *conn) end(err error) {
	log := c.s.log
	var se *stompError
	switch {
	case errors.As(err, &se):
		c.s.refused.Add(1)
		log.Info("stomp: frame refused, closing", "session", c.session, "remote", c.r.RemoteAddr, "error", se.message)
		c.unsubscribeAll() // no MESSAGE after the ERROR
		if c.enqueue(outItem{data: c.errorFrame(se), last: true}) {
			<-c.writerDone
			c.closeGracefully(websocket.StatusProtocolError, "STOMP ERROR")
		}
	case errors.Is(err, errDisconnect):
		log.Debug("stomp: client disconnected", "session", c.session)
		c.unsubscribeAll()
		if c.enqueue(outItem{last: true}) {
			<-c.writerDone
			c.closeGracefully(websocket.StatusNormalClosure, "")
		}
	default:
		c.cancel(err)
		switch cause := context.Cause(c.ctx); cause {
		case errConnectTimeout, errHeartBeat:
			c.s.silent.Add(1)
			log.Info("stomp: closing a silent connection", "session", c.session, "remote", c.r.RemoteAddr, "reason", cause)
		case errSlow, errServerClosed:
			// Counted and logged where it was decided.
		default:
			log.Debug("stomp: connection closed", "session", c.session, "reason", err)
		}
	}
}

// closeGracefully closes the WebSocket with a close handshake, which the
// library bounds, and Close or a dead peer cut short through ctx.
func (c *conn) closeGracefully(code websocket.StatusCode, reason string) {
	if c.ctx.Err() == nil {
		c.ws.Close(code, reason)
	}
}

// readLoop reads WebSocket messages and handles the frames they carry
// until the connection ends or a frame ends it.
func (c *conn) readLoop() error {
	buf := make([]byte, 4096)
	for {
		c.armRead()
		_, r, err := c.ws.Reader(c.ctx)
		c.disarmRead()
		if err != nil {
			return err
		}
		for {
			c.armRead()
			n, err := r.Read(buf)
			c.disarmRead()
			if n > 0 {
				c.dec.feed(buf[:n])
				if err := c.handleFrames(); err != nil {
					return err
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
	}
}

// armRead starts the heart-beat window while the reader waits for input:
// any input, heart-beat or frame, resets it. Before CONNECT the connect
// timeout runs instead, once, whatever arrives. Handling a frame does not
// count against the client, so a slow hook cannot time it out.
func (c *conn) armRead() {
	if c.connected && c.readWindow > 0 {
		c.readTimer.Reset(c.readWindow)
	}
}

func (c *conn) disarmRead() {
	if c.connected {
		c.readTimer.Stop()
	}
}

// handleFrames handles every frame the decoder has complete.
func (c *conn) handleFrames() error {
	for {
		f, err := c.dec.next()
		if err != nil {
			var de *decodeError
			if errors.As(err, &de) {
				return &stompError{message: de.msg, receipt: de.receipt}
			}
			return err
		}
		if f == nil {
			return nil
		}
		if err := c.handle(f); err != nil {
			return err
		}
	}
}

// handle acts on one frame: nil to go on, a *stompError to refuse it,
// errDisconnect, or another error that ends the connection.
func (c *conn) handle(f *frame) error {
	if len(f.body) > 0 && f.command != cmdSend {
		return refuse(f, "%s frame with a body: only SEND may have one", f.command)
	}
	if !c.connected {
		if f.command != cmdConnect && f.command != cmdStomp {
			return refuse(f, "expected CONNECT or STOMP, got %s", f.command)
		}
		return c.connect(f)
	}
	var err error
	switch f.command {
	case cmdConnect, cmdStomp:
		err = refuse(f, "already connected")
	case cmdSend:
		err = c.send(f)
	case cmdSubscribe:
		err = c.subscribe(f)
	case cmdUnsubscribe:
		err = c.unsubscribe(f)
	case cmdDisconnect:
		err = errDisconnect
	case cmdAck, cmdNack:
		err = refuse(f, "%s not supported: every subscription is ack:auto", f.command)
	case cmdBegin, cmdCommit, cmdAbort:
		err = refuse(f, "%s not supported: this server has no STOMP transactions", f.command)
	default:
		err = refuse(f, "unknown command %s", f.command)
	}
	if err != nil && err != errDisconnect {
		return err
	}
	if receipt, ok := f.get(hdrReceipt); ok {
		if !c.enqueue(outItem{data: c.encode(&frame{command: cmdReceipt, headers: []header{{hdrReceiptID, receipt}}})}) {
			return c.ctx.Err()
		}
	}
	return err
}

// connect answers CONNECT or STOMP: version, heart-beats, authentication.
func (c *conn) connect(f *frame) error {
	accept, ok := f.get(hdrAcceptVersion)
	if !ok {
		accept = "1.0" // a 1.0 client does not say
	}
	v := negotiateVersion(accept)
	if v == 0 {
		e := refuse(f, "unsupported STOMP version %q", accept)
		e.headers = []header{{hdrVersion, "1.2,1.1,1.0"}}
		e.body = "Supported protocol versions are 1.0 1.1 1.2"
		return e
	}
	cx, cy := 0, 0
	if hb, ok := f.get(hdrHeartBeat); ok {
		var err error
		if cx, cy, err = parseHeartBeat(hb); err != nil {
			return refuse(f, "heart-beat %q: %v", hb, err)
		}
	}
	login, _ := f.get(hdrLogin)
	passcode, _ := f.get(hdrPasscode)
	if auth := c.s.cfg.Authenticate; auth != nil {
		p, err := auth(c.ctx, c.r, login, passcode)
		if err != nil {
			if c.ctx.Err() != nil {
				return err
			}
			c.s.log.Info("stomp: authentication failed", "remote", c.r.RemoteAddr, "login", login, "error", err)
			return refuse(f, "authentication failed")
		}
		c.principal = p
	}

	// The server can send heart-beats every sx ms and wants the client's
	// every sy ms; each direction takes the larger figure of its two
	// sides, and is off if either side says 0.
	sx := 0
	if hb := c.s.cfg.HeartBeat; hb > 0 {
		sx = int(hb / time.Millisecond)
	}
	sy := sx
	out, in := negotiateInterval(sx, cy), negotiateInterval(cx, sy)

	c.pastConnect.Store(true)
	c.readTimer.Stop() // the connect timeout; from now on the heart-beat window
	c.connected = true
	c.version = v
	c.dec.version = v
	if in > 0 {
		c.readWindow = in + c.s.cfg.HeartBeatGrace
	}
	connected := &frame{command: cmdConnected, headers: []header{
		{hdrVersion, v.String()},
		{hdrHeartBeat, strconv.Itoa(sx) + "," + strconv.Itoa(sy)},
		{hdrServer, c.s.cfg.ServerName},
		{hdrSession, c.session},
	}}
	if !c.enqueue(outItem{data: c.encode(connected), heartBeat: out}) {
		return c.ctx.Err()
	}
	return nil
}

// negotiateVersion picks the highest version of a comma-separated
// accept-version list the server speaks, or 0.
func negotiateVersion(accept string) version {
	best := version(0)
	for _, s := range strings.Split(accept, ",") {
		var v version
		switch strings.TrimSpace(s) {
		case "1.0":
			v = v10
		case "1.1":
			v = v11
		case "1.2":
			v = v12
		}
		best = max(best, v)
	}
	return best
}

// parseHeartBeat parses a heart-beat header: two non-negative integers
// (milliseconds) separated by a comma.
func parseHeartBeat(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, ",")
	if !ok {
		return 0, 0, errors.New("want two numbers separated by a comma")
	}
	x, err1 := parseMillis(a)
	y, err2 := parseMillis(b)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	return x, y, nil
}

func parseMillis(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 9 { // above 9 digits: more than 11 days
		return 0, fmt.Errorf("%q is not a number of milliseconds", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a number of milliseconds", s)
		}
	}
	n, _ := strconv.Atoi(s)
	return n, nil
}

// negotiateInterval is one direction's heart-beat interval, from what the
// sender can do and what the receiver wants, in milliseconds.
func negotiateInterval(canSend, wants int) time.Duration {
	if canSend == 0 || wants == 0 {
		return 0
	}
	return time.Duration(max(canSend, wants)) * time.Millisecond
}

// send hands a SEND to the application.
func (c *conn) send(f *frame) error {
	dest, ok := f.get(hdrDestination)
	if !ok {
		return refuse(f, "SEND without a destination header")
	}
	if _, ok := f.get(hdrTransaction); ok {
		return refuse(f, "SEND in a transaction: this server has no STOMP transactions")
	}
	if !under(dest, c.s.cfg.AppPrefix) {
		return refuse(f, "SEND to %q: clients send only to destinations under %s/", dest, c.s.cfg.AppPrefix)
	}
	h := c.s.cfg.OnSend
	if h == nil {
		return refuse(f, "SEND to %q: this server accepts no SEND", dest)
	}
	if err := h(c.ctx, c.principal, dest, f.headerMap(), f.body); err != nil {
		if c.ctx.Err() != nil {
			return c.ctx.Err()
		}
		return refuse(f, "%s", cleanMessage(err.Error()))
	}
	return nil
}

// subscribe registers a subscription, asks the application about it,
// and delivers its retained message.
func (c *conn) subscribe(f *frame) error {
	id, ok := f.get(hdrID)
	if !ok {
		return refuse(f, "SUBSCRIBE without an id header")
	}
	dest, ok := f.get(hdrDestination)
	if !ok {
		return refuse(f, "SUBSCRIBE without a destination header")
	}
	if ack, ok := f.get(hdrAck); ok && ack != "auto" {
		return refuse(f, "ack:%s not supported: subscriptions are ack:auto", ack)
	}
	if !under(dest, c.s.cfg.TopicPrefix) {
		return refuse(f, "SUBSCRIBE to %q: subscriptions are to destinations under %s/", dest, c.s.cfg.TopicPrefix)
	}
	if _, dup := c.subs[id]; dup {
		return refuse(f, "subscription id %q already in use", id)
	}
	if len(c.subs) >= c.s.cfg.MaxSubscriptions {
		return refuse(f, "too many subscriptions: at most %d a connection", c.s.cfg.MaxSubscriptions)
	}
	sub := &subscription{c: c, id: id, dest: dest, version: c.version}
	if !c.s.register(sub) {
		return errServerClosed
	}
	c.subs[id] = sub
	var retained *Message
	if h := c.s.cfg.OnSubscribe; h != nil {
		var err error
		if retained, err = h(c.ctx, c.principal, dest); err != nil {
			c.s.unregister(sub)
			delete(c.subs, id)
			if c.ctx.Err() != nil {
				return c.ctx.Err()
			}
			return refuse(f, "%s", cleanMessage(err.Error()))
		}
	}
	sub.activate(retained)
	return nil
}

// unsubscribe ends a subscription. An unknown id is not an error: the
// outcome the client wants holds.
func (c *conn) unsubscribe(f *frame) error {
	id, ok := f.get(hdrID)
	if !ok {
		return refuse(f, "UNSUBSCRIBE without an id header")
	}
	if sub, ok := c.subs[id]; ok {
		c.s.unregister(sub)
		delete(c.subs, id)
	}
	return nil
}

func (c *conn) unsubscribeAll() {
	for id, sub := range c.subs {
		c.s.unregister(sub)
		delete(c.subs, id)
	}
}

// enqueue queues an item from the reader, waiting for room: the reader
// may wait for its own client. It reports false if the connection ended.
func (c *conn) enqueue(it outItem) bool {
	select {
	case c.out <- it:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// offer queues a frame for a publisher, which must not wait: if the
// queue is full the connection is dropped.
func (c *conn) offer(data []byte) bool {
	select {
	case c.out <- outItem{data: data}:
		return true
	default:
		c.drop()
		return false
	}
}

// drop closes a connection that fell behind, and counts it once.
func (c *conn) drop() {
	if c.ctx.Err() != nil || !c.dropping.CompareAndSwap(false, true) {
		return
	}
	c.s.dropped.Add(1)
	c.s.log.Warn("stomp: dropping a slow client", "session", c.session, "remote", c.r.RemoteAddr, "queue", cap(c.out))
	c.cancel(errSlow)
}

// writeLoop is the connection's only writer to the socket: it writes
// queued frames, and heart-beats when it has been idle for the
// negotiated interval.
func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	defer close(c.writerDone)
	var (
		interval time.Duration
		timer    *time.Timer
		tick     <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-c.ctx.Done():
			return
		case it := <-c.out:
			if it.data != nil {
				if err := c.write(it.data); err != nil {
					c.cancel(err)
					return
				}
			}
			if it.last {
				return
			}
			if it.heartBeat > 0 {
				interval = it.heartBeat
				timer = time.NewTimer(interval)
				tick = timer.C
			} else if timer != nil {
				timer.Reset(interval)
			}
		case <-tick:
			if err := c.write([]byte{'\n'}); err != nil {
				c.cancel(err)
				return
			}
			timer.Reset(interval)
		}
	}
}

// write writes one WebSocket message: text when it is UTF-8, as STOMP
// clients expect; binary otherwise (a binary body).
func (c *conn) write(data []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.WriteTimeout)
	defer cancel()
	typ := websocket.MessageText
	if !utf8.Valid(data) {
		typ = websocket.MessageBinary
	}
	if err := c.ws.Write(ctx, typ, data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// encode encodes a frame in the connection's version.
func (c *conn) encode(f *frame) []byte {
	return appendFrame(nil, f, c.version)
}

// errorFrame encodes the ERROR frame for e.
func (c *conn) errorFrame(e *stompError) []byte {
	hs := []header{{hdrMessage, cleanMessage(e.message)}}
	if e.receipt != "" {
		hs = append(hs, header{hdrReceiptID, e.receipt})
	}
	hs = append(hs, e.headers...)
	body := []byte(e.body)
	if len(body) > 0 {
		hs = append(hs, header{hdrContentType, "text/plain"})
	}
	return c.encode(&frame{command: cmdError, headers: withBody(hs, body), body: body})
}
