package http

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/tccd/tccd"
)

// DefaultMaxConnsPerHost bounds idle keep-alive connections kept per
// participant host; enough for the confirm fan-out under load.
const DefaultMaxConnsPerHost = 256

// maxDrain is how much of a participant's answer body is read (and
// dropped) so that the connection can be reused.
const maxDrain = 64 << 10

// Caller sends confirm (PUT) and cancel (DELETE) calls to participants.
type Caller struct {
	client *http.Client
}

// Header values shared by every call. Each call gets its own header map
// (a wrapper may add headers to it), but the value slices are read-only
// and shared: Header.Set replaces a slice, it never writes into one.
var (
	hdrTCC   = []string{"application/tcc"}
	hdrAgent = []string{"tccd"}
)

var _ tccd.Caller = (*Caller)(nil)

// NewCaller returns a Caller over a transport tuned for many short calls
// to a few hosts. Redirects are not followed: a participant URI is the
// reservation itself.
func NewCaller() *Caller {
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           4096,
		MaxIdleConnsPerHost:    DefaultMaxConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    5 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &Caller{client: &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Close drops idle connections.
func (c *Caller) Close() { c.client.CloseIdleConnections() }

// Call sends one confirm or cancel call; it never retries.
func (c *Caller) Call(ctx context.Context, op tccd.Op, uri string) tccd.CallResult {
	method := http.MethodPut
	if op == tccd.OpCancel {
		method = http.MethodDelete
	}
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, method, uri, nil)
	if err != nil {
		return tccd.CallResult{Err: err}
	}
	req.Header = http.Header{"Accept": hdrTCC, "Content-Type": hdrTCC, "User-Agent": hdrAgent}
	resp, err := c.client.Do(req)
	if err != nil {
		return tccd.CallResult{Err: err, Duration: time.Since(start)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	resp.Body.Close()
	return tccd.CallResult{
		Status:     resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		Duration:   time.Since(start),
	}
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
