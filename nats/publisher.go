// Package nats publishes messages to NATS JetStream for tccd's "TCC with a
// message broker": a message that takes part in a transaction is published
// if and only if the transaction confirms, exactly once. It wraps the
// official client, github.com/nats-io/nats.go and its jetstream package,
// behind a small API:
//
//	p, err := nats.Open(ctx, nats.Config{URL: "nats://127.0.0.1:4222"})
//	defer p.Close()
//	err = p.CheckSubject(ctx, "order.placed")                       // some stream captures it?
//	err = p.Publish(ctx, "order.placed", "r1/1", data, headers)     // nil: stored by the stream
//
// Exactly once rests on two things: every message carries a stable message
// id in the Nats-Msg-Id header, and the stream drops a message whose id it
// has stored within its duplicate window (StreamConfig.Duplicates, two
// minutes by default). So a publish repeated after a crash or a lost
// acknowledgement is stored once, provided the repeat comes within the
// window. Publish reports such a dropped repeat as success.
//
// The operator owns the streams: this package never creates one.
// CheckSubject tells whether one captures a subject, so that a subject
// without a stream is refused up front rather than failing at every
// publish. The user needs permission to publish on the subjects and on the
// JetStream API's $JS.API.INFO (checked by Open) and $JS.API.STREAM.NAMES
// (CheckSubject, and Publish when it has to explain a failure).
package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher publishes to JetStream over one connection. It is safe for
// concurrent use. The connection survives a server restart: the client
// reconnects on its own, for ever, and a Publish while it is away fails at
// once with a retryable error (ErrNotConnected) instead of waiting.
type Publisher struct {
	nc         *natsgo.Conn
	js         jetstream.JetStream
	log        *slog.Logger
	closeOnce  sync.Once
	closed     chan struct{} // closed by the client once the connection is closed for good
	ackTimeout time.Duration
}

// Open connects to the server of cfg and checks that JetStream answers
// there. It fails when the server cannot be reached within
// cfg.ConnectTimeout (or ctx ends first), refuses the credentials, or has
// no JetStream for this user; later losses of the connection are repaired
// by reconnecting. Close the Publisher when done.
func Open(ctx context.Context, cfg Config) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	p := &Publisher{log: cfg.Logger, closed: make(chan struct{}), ackTimeout: cfg.AckTimeout}
	// The client dials with this dialer on connect and on every
	// reconnect: Open's context may cut the first short, and must not
	// touch the later ones.
	d := &dialer{Dialer: net.Dialer{Timeout: cfg.ConnectTimeout}, ctx: ctx}
	opts := []natsgo.Option{
		natsgo.Name(cfg.Name),
		natsgo.Timeout(cfg.ConnectTimeout),
		natsgo.SetCustomDialer(d),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(cfg.ReconnectWait),
		// No buffering while reconnecting: a publish then fails at once
		// and its caller retries, rather than waiting for an
		// acknowledgement that a buffered message may get long after its
		// caller gave up.
		natsgo.ReconnectBufSize(-1),
		natsgo.DisconnectErrHandler(func(nc *natsgo.Conn, err error) {
			if err == nil {
				return // Close: not news
			}
			p.log.Warn("nats: connection lost; reconnecting", "server", nc.ConnectedUrlRedacted(), "err", err)
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			p.log.Info("nats: reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		natsgo.ErrorHandler(func(nc *natsgo.Conn, _ *natsgo.Subscription, err error) {
			p.log.Warn("nats: server error", "server", nc.ConnectedUrlRedacted(), "err", err)
		}),
		natsgo.ClosedHandler(func(*natsgo.Conn) { close(p.closed) }),
	}
	switch {
	case cfg.User != "":
		opts = append(opts, natsgo.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, natsgo.Token(cfg.Token))
	case cfg.CredsFile != "":
		opts = append(opts, natsgo.UserCredentials(cfg.CredsFile))
	case cfg.NKeySeedFile != "":
		opt, err := natsgo.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats: NKeySeedFile: %w", err)
		}
		opts = append(opts, opt)
	}
	if cfg.CAFile != "" {
		opts = append(opts, natsgo.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" {
		opts = append(opts, natsgo.ClientCert(cfg.CertFile, cfg.KeyFile))
	}

	nc, err := natsgo.Connect(cfg.URL, opts...)
	d.done()
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return nil, fmt.Errorf("nats: connect to %s: %w", redactURL(cfg.URL), err)
	}
	p.nc = nc
	p.js, err = jetstream.New(nc, jetstream.WithDefaultTimeout(cfg.AckTimeout))
	if err == nil {
		// A server without JetStream (or a user without it) would accept
		// the connection and fail every publish: say so now.
		actx, cancel := p.withTimeout(ctx)
		_, err = p.js.AccountInfo(actx)
		cancel()
	}
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("nats: JetStream at %s: %w", redactURL(cfg.URL), err)
	}
	return p, nil
}

// Close closes the connection and waits until the client has stopped.
// Publish calls under way fail with ErrClosed. Close is idempotent.
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() {
		p.nc.Close()
		<-p.closed
	})
	return nil
}

// withTimeout bounds ctx by the acknowledgement timeout unless it has a
// deadline already.
func (p *Publisher) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, p.ackTimeout)
}

// Publish publishes data to subject with the header Nats-Msg-Id: msgID and
// the given headers, and returns nil only once a stream has acknowledged
// storing it — or has recognised msgID as one it stored within its
// duplicate window, which is the same outcome. ctx bounds the wait
// (Config.AckTimeout when it has no deadline).
//
// A failure is an *Error saying whether retrying may help (IsRetryable):
// ErrNoStream when no stream captures subject, ErrNotConnected while the
// connection is being re-established, a timeout when the acknowledgement
// did not come. After a retryable failure the message may or may not be
// stored; publish it again with the same msgID.
//
// subject must be literal (no * or > token). msgID must not be empty, and
// headers must not carry another Nats-Msg-Id.
func (p *Publisher) Publish(ctx context.Context, subject, msgID string, data []byte, headers map[string][]string) error {
	fail := func(err error) error {
		return &Error{Op: "publish", Subject: subject, MsgID: msgID, Retryable: retryable(err), Err: err}
	}
	if err := checkSubject(subject); err != nil {
		return fail(err)
	}
	if msgID == "" {
		return fail(fmt.Errorf("%w: empty message id (exactly-once publishing needs one)", ErrInvalid))
	}
	msg := natsgo.NewMsg(subject)
	msg.Data = data
	for k, vs := range headers {
		if strings.EqualFold(k, jetstream.MsgIDHeader) {
			if len(vs) != 1 || vs[0] != msgID {
				return fail(fmt.Errorf("%w: header %s %q contradicts the message id %q", ErrInvalid, k, vs, msgID))
			}
			continue
		}
		msg.Header[k] = append([]string(nil), vs...)
	}
	if err := p.usable(); err != nil {
		return fail(err)
	}
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID))
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			err = p.explainNoResponse(ctx, subject, err)
		}
		if p.nc.IsClosed() {
			err = errors.Join(ErrClosed, err)
		}
		return fail(err)
	}
	if ack.Duplicate {
		p.log.Debug("nats: repeat of a stored message dropped by the stream", "subject", subject, "msg_id", msgID,
			"stream", ack.Stream, "seq", ack.Sequence)
	}
	return nil
}

// explainNoResponse tells why nothing answered a publish: no stream
// captures the subject (permanent), or JetStream did not answer (a
// restart, a leader election: retryable).
func (p *Publisher) explainNoResponse(ctx context.Context, subject string, err error) error {
	if _, lerr := p.js.StreamNameBySubject(ctx, subject); errors.Is(lerr, jetstream.ErrStreamNotFound) {
		return ErrNoStream
	}
	return err
}

// CheckSubject returns nil if some stream captures subject, so that
// publishing to it can succeed; otherwise an *Error wrapping ErrNoStream
// that names the subject (permanent: the operator must create or widen a
// stream), or one saying why it could not tell (retryable).
func (p *Publisher) CheckSubject(ctx context.Context, subject string) error {
	fail := func(err error) error {
		return &Error{Op: "check subject", Subject: subject, Retryable: retryable(err), Err: err}
	}
	if err := checkSubject(subject); err != nil {
		return fail(err)
	}
	if err := p.usable(); err != nil {
		return fail(err)
	}
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	if _, err := p.js.StreamNameBySubject(ctx, subject); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			err = fmt.Errorf("%w: the operator must create a stream whose subjects include it", ErrNoStream)
		}
		return fail(err)
	}
	return nil
}

// usable fails fast when the connection cannot carry a request now.
func (p *Publisher) usable() error {
	switch p.nc.Status() {
	case natsgo.CONNECTED:
		return nil
	case natsgo.CLOSED:
		return ErrClosed
	default:
		return ErrNotConnected
	}
}

// checkSubject accepts a literal subject: dot-separated non-empty tokens
// without white space, none of them a wildcard (* or >).
func checkSubject(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty subject", ErrInvalid)
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("%w: subject %q contains white space", ErrInvalid, s)
	}
	for _, tok := range strings.Split(s, ".") {
		switch tok {
		case "":
			return fmt.Errorf("%w: subject %q has an empty token", ErrInvalid, s)
		case "*", ">":
			return fmt.Errorf("%w: subject %q is a wildcard; a message needs a literal subject", ErrInvalid, s)
		}
	}
	return nil
}

// dialer is the client's dialer: it honours Open's context while Open
// runs, and no context afterwards.
type dialer struct {
	net.Dialer
	mu  sync.Mutex
	ctx context.Context
}

func (d *dialer) Dial(network, address string) (net.Conn, error) {
	d.mu.Lock()
	ctx := d.ctx
	d.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	return d.DialContext(ctx, network, address)
}

// done detaches Open's context.
func (d *dialer) done() {
	d.mu.Lock()
	d.ctx = nil
	d.mu.Unlock()
}
