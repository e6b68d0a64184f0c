package http

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
)

// DefaultMaxConnsPerHost bounds idle keep-alive connections kept per
// participant host; enough for the confirm fan-out under load.
const DefaultMaxConnsPerHost = 256

// maxDrain is how much of a participant's answer body is read (and
// dropped) so that the connection can be reused.
const maxDrain = 64 << 10

// Caller sends confirm (PUT) and cancel (DELETE) calls to participants,
// and, given a webhook secret, the signed notifications of outcomes.
type Caller struct {
	client *http.Client
	allow  *tccd.Allowlist
	secret []byte
	tracer tccd.Tracer // nil: no traceparent
}

// CallerConfig configures a Caller. The zero value calls participants
// over HTTP or HTTPS (trusting the system's roots) and refuses only the
// destinations tccd.Allowlist always refuses.
type CallerConfig struct {
	// TLS configures HTTPS calls: RootCAs to trust a private CA,
	// Certificates to present a client certificate. nil: Go's defaults.
	TLS *tls.Config
	// Allow is the participant destination allowlist. Every call checks
	// its URI against it, and every connection the address it dials (see
	// tccd.Allowlist). nil: the built-in refusals only.
	Allow *tccd.Allowlist
	// Resolver resolves participant host names, so that the addresses can
	// be checked before connecting; nil: net.DefaultResolver.
	Resolver Resolver
	// WebhookSecret signs the notifications of outcomes (Notify); it must
	// be set for the Caller to be a tccd.Notifier.
	WebhookSecret []byte
	// Tracer, when set, gives each call the W3C traceparent of the span in
	// its context (the coordinator's span of the call), so that the
	// participant's work joins the transaction's trace.
	Tracer tccd.Tracer
}

// Resolver looks up the addresses of a host; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Header values shared by every call. Each call gets its own header map
// (a wrapper may add headers to it), but the value slices are read-only
// and shared: Header.Set replaces a slice, it never writes into one.
var (
	hdrTCC   = []string{"application/tcc"}
	hdrAgent = []string{"tccd"}
)

var _ tccd.Caller = (*Caller)(nil)

// NewCaller returns a Caller with the zero CallerConfig.
func NewCaller() *Caller { return NewCallerWith(CallerConfig{}) }

// NewCallerWith returns a Caller over a transport tuned for many short
// calls to a few hosts. Redirects are not followed: a participant URI is
// the reservation itself.
func NewCallerWith(cfg CallerConfig) *Caller {
	g := &dialGuard{allow: cfg.Allow, resolver: cfg.Resolver}
	if g.resolver == nil {
		g.resolver = net.DefaultResolver
	}
	g.dialer = &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, ControlContext: g.control}
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            g.dial,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           4096,
		MaxIdleConnsPerHost:    DefaultMaxConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    5 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		// A participant call is a bodiless request and a small answer:
		// smaller buffers than the 4 KiB defaults keep the memory of each
		// call in flight low (longer headers are still read whole).
		WriteBufferSize: 1 << 10,
		ReadBufferSize:  1 << 10,
	}
	if cfg.TLS != nil {
		tr.TLSClientConfig = cfg.TLS.Clone()
	}
	return &Caller{allow: cfg.Allow, secret: cfg.WebhookSecret, tracer: cfg.Tracer, client: &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Close drops idle connections.
func (c *Caller) Close() { c.client.CloseIdleConnections() }

// Call sends one confirm or cancel call; it never retries.
func (c *Caller) Call(ctx context.Context, call tccd.Call) tccd.CallResult {
	method, uri := http.MethodPut, call.URI
	switch call.Op {
	case tccd.OpCancel:
		method = http.MethodDelete
	case tccd.OpCompensate:
		method = http.MethodPost
	}
	start := time.Now()
	// Links were checked when accepted; this catches those accepted before
	// the rules changed (recovered after a restart). The dial-time check
	// covers all but the scheme, so without rules there is nothing to add.
	if !c.allow.Empty() {
		if err := c.allow.CheckLink(uri); err != nil {
			return tccd.CallResult{Err: err, Permanent: true}
		}
	}
	// Whether the request was written tells a call that failed before the
	// participant could act on it (no connection) from one that may have
	// taken effect (a timeout or a reset after the write): the latter
	// leaves a confirm in doubt. The transport may write it more than
	// once (it retries idempotent requests on a broken idle connection).
	var sent atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			sent.Store(true)
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, uri, nil)
	if err != nil {
		return tccd.CallResult{Err: err}
	}
	req.Header = http.Header{"Accept": hdrTCC, "Content-Type": hdrTCC, "User-Agent": hdrAgent}
	if call.Barrier != "" {
		req.Header[api.HeaderBarrier] = []string{call.Barrier}
	}
	if c.tracer != nil {
		if tp := c.tracer.TraceParent(ctx); tp != "" {
			req.Header[HeaderTraceParent] = []string{tp}
		}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return tccd.CallResult{Err: err, Duration: time.Since(start), Permanent: refused(err), Sent: sent.Load()}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	resp.Body.Close()
	return tccd.CallResult{
		Status:     resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		Duration:   time.Since(start),
		Sent:       true,
	}
}

// dialGuard makes the connections of a Caller, checking each address it
// connects to against the allowlist (tccd.Allowlist.CheckDial) in the
// dialer's Control function: after name resolution, before the connect,
// so that a name resolving (or rebound) to a refused address is refused
// and nothing is sent to it.
type dialGuard struct {
	dialer   *net.Dialer
	allow    *tccd.Allowlist
	resolver Resolver
}

type dialHostKey struct{}

// dial resolves addr's host and connects to its addresses in turn. Each
// connection attempt is checked by control. If every address is refused,
// the error wraps the refusal (a *tccd.Error): the call is a permanent
// failure; if an allowed address failed to connect, its error is returned
// and the call is retried.
func (g *dialGuard) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("dial %s: bad port", addr)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if ips, err = g.resolver.LookupNetIP(ctx, "ip", host); err != nil {
		return nil, err
	}
	ctx = context.WithValue(ctx, dialHostKey{}, host)
	var refusal, failure error
	for _, ip := range ips {
		conn, err := g.dialer.DialContext(ctx, network, netip.AddrPortFrom(ip.Unmap(), uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		switch {
		case refused(err):
			refusal = cmpOr(refusal, err)
		default:
			failure = cmpOr(failure, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if failure != nil {
		return nil, failure
	}
	if refusal != nil {
		return nil, refusal
	}
	return nil, fmt.Errorf("dial %s: no addresses", addr)
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// control checks the address a socket is about to connect to.
func (g *dialGuard) control(ctx context.Context, network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: unexpected address", address)
	}
	host, _ := ctx.Value(dialHostKey{}).(string)
	return g.allow.CheckDial(host, ap.Addr(), int(ap.Port()))
}

// refused reports whether err is (or wraps) a destination refusal.
func refused(err error) bool {
	var e *tccd.Error
	return errors.As(err, &e) && (e.Code == tccd.EForbidden || e.Code == tccd.EInvalid)
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(min(n, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// HeaderTraceParent is the W3C trace context header, in its canonical form.
const HeaderTraceParent = "Traceparent"

// Webhook headers.
const (
	HeaderDelivery  = api.HeaderWebhookDelivery
	HeaderSignature = api.HeaderWebhookSignature
)

// Sign returns the Tcc-Signature value of a notification body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

var _ tccd.Notifier = (*Caller)(nil)

// Notify posts the transaction document (the JSON of GET
// /api/v1/transactions/{id}) to url, signed (Tcc-Signature) and with the
// delivery's id (Tcc-Delivery). The destination is checked like a
// participant's, at call and at dial time. Without a secret every call
// fails for good.
func (c *Caller) Notify(ctx context.Context, url, deliveryID string, tx *tccd.Transaction) tccd.CallResult {
	start := time.Now()
	if len(c.secret) == 0 {
		return tccd.CallResult{Err: errors.New("no webhook secret"), Permanent: true}
	}
	if err := c.allow.CheckLink(url); err != nil {
		return tccd.CallResult{Err: err, Permanent: true}
	}
	wire := FromTx(tx)
	body := appendTransaction(make([]byte, 0, 1024), &wire)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return tccd.CallResult{Err: err, Permanent: true}
	}
	req.Header = http.Header{
		"Content-Type": {"application/json"}, "User-Agent": hdrAgent,
		HeaderDelivery: {deliveryID}, HeaderSignature: {Sign(c.secret, body, time.Now())},
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return tccd.CallResult{Err: err, Duration: time.Since(start), Permanent: refused(err)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	resp.Body.Close()
	return tccd.CallResult{
		Status: resp.StatusCode, Duration: time.Since(start), Sent: true,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
}
