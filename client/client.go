package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tccd/tccd/api"
)

// Transaction states as the native API names them.
// (The api package has no constants for them yet.)
const (
	stateConfirmed = "confirmed"
	stateCancelled = "cancelled"
	stateHeuristic = "heuristic"
)

func finalState(s string) bool {
	return s == stateConfirmed || s == stateCancelled || s == stateHeuristic
}

// DefaultPollInterval is how long the client waits before asking again
// when the coordinator answers "not yet" without a Retry-After header.
const DefaultPollInterval = time.Second

// minRetryWait keeps a Retry-After of 0 from making a busy loop.
const minRetryWait = 10 * time.Millisecond

// Client talks to one coordinator. It is safe for concurrent use.
type Client struct {
	base   string // the coordinator URL, without a trailing slash
	hc     *http.Client
	header http.Header
	poll   time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the *http.Client used for calls to the coordinator
// (by default a new one over http.DefaultTransport). Its timeouts apply
// besides the contexts of the calls.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithHeader adds a header to every request to the coordinator, such as
// Authorization. It is never sent to participants, and the client never
// prints it (a Client formats as its coordinator URL only).
func WithHeader(key, value string) Option {
	return func(c *Client) { c.header.Add(key, value) }
}

// WithPollInterval sets how long to wait before asking the coordinator
// again when it answers "still in progress" without a Retry-After header
// (DefaultPollInterval by default).
func WithPollInterval(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.poll = d
		}
	}
}

// New returns a client of the coordinator at coordinatorURL, such as
// "http://127.0.0.1:8420" (an http or https URL; a path prefix is kept).
func New(coordinatorURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(coordinatorURL)
	if err != nil {
		return nil, fmt.Errorf("tccd: bad coordinator URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tccd: coordinator URL must be an absolute http or https URL, not %q", coordinatorURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("tccd: coordinator URL must not carry credentials, a query or a fragment (use WithHeader for credentials)")
	}
	c := &Client{
		base:   strings.TrimRight(u.String(), "/"),
		hc:     &http.Client{},
		header: make(http.Header),
		poll:   DefaultPollInterval,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// String returns the coordinator URL; the headers (which may hold a
// secret) are left out.
func (c *Client) String() string { return "tccd client of " + c.base }

// GoString is String, so that %#v does not print the headers either.
func (c *Client) GoString() string { return c.String() }

// URL returns the coordinator URL the client was made with.
func (c *Client) URL() string { return c.base }

// txURL is the URL of a registered transaction.
func (c *Client) txURL(id string) string {
	return c.base + "/api/v1/transactions/" + url.PathEscape(id)
}

// request is one call to the coordinator.
type request struct {
	method, path string
	mediaType    string // of the body
	body         any    // marshalled to JSON; nil sends no body
	// retry503 repeats the request on 503 (honouring Retry-After) until
	// the context ends; only for idempotent requests.
	retry503 bool
	atomikos bool // decode errors by the Atomikos protocol
	header   http.Header
}

// do sends r and returns the answer when its status is one of ok. Other
// answers are decoded into errors; the body of a returned response is the
// caller's to close.
func (c *Client) do(ctx context.Context, r request, ok ...int) (*http.Response, error) {
	var body []byte
	if r.body != nil {
		var err error
		if body, err = json.Marshal(r.body); err != nil {
			return nil, fmt.Errorf("tccd: cannot encode request: %w", err)
		}
	}
	// Calls to the coordinator never propagate the transaction, even when
	// the user's *http.Client is a wrapped one.
	ctx = context.WithValue(ctx, txKey{}, (*Tx)(nil))
	var last error
	for {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, r.method, c.base+r.path, rd)
		if err != nil {
			return nil, fmt.Errorf("tccd: %w", err)
		}
		if body != nil {
			req.Header.Set("Content-Type", r.mediaType)
		}
		req.Header.Set("Accept", api.MediaJSON+", "+api.MediaProblem)
		for k, vs := range r.header {
			req.Header[k] = vs
		}
		for k, vs := range c.header {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			if last != nil && ctx.Err() != nil {
				return nil, fmt.Errorf("%w (gave up waiting: %w)", last, ctx.Err())
			}
			return nil, fmt.Errorf("tccd: %s %s: %w", r.method, r.path, err)
		}
		for _, s := range ok {
			if resp.StatusCode == s {
				return resp, nil
			}
		}
		err = decodeError(resp, r.atomikos)
		wait := retryAfter(resp.Header.Get("Retry-After"), time.Now(), c.poll)
		drain(resp)
		if !r.retry503 || resp.StatusCode != http.StatusServiceUnavailable {
			return nil, err
		}
		last = err
		if werr := sleep(ctx, wait); werr != nil {
			return nil, fmt.Errorf("%w (gave up waiting: %w)", err, werr)
		}
	}
}

// doJSON is do for an answer with a JSON body, decoded into out.
func (c *Client) doJSON(ctx context.Context, r request, out any, ok ...int) error {
	resp, err := c.do(ctx, r, ok...)
	if err != nil {
		return err
	}
	defer drain(resp)
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out); err != nil {
		return fmt.Errorf("tccd: cannot decode the coordinator's answer to %s %s: %w", r.method, r.path, err)
	}
	return nil
}

// maxAnswer bounds a successful answer of the coordinator (a transaction
// with up to max-links participants fits many times over).
const maxAnswer = 16 << 20

// drain reads a little of what is left of a body, so the connection can be
// reused, and closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// retryAfter reads a Retry-After header (delay-seconds or an HTTP-date);
// def when absent or unreadable.
func retryAfter(v string, now time.Time, def time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return def
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return def
		}
		return min(max(time.Duration(min(n, maxRetryAfterSecs))*time.Second, minRetryWait), maxRetryWait)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), minRetryWait), maxRetryWait)
	}
	return def
}

// maxRetryWait caps a Retry-After (the context usually ends sooner).
const (
	maxRetryWait      = 24 * time.Hour
	maxRetryAfterSecs = int(maxRetryWait / time.Second)
)

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Get returns a registered (or one-shot) transaction by id.
func (c *Client) Get(ctx context.Context, id string) (*api.Transaction, error) {
	var tx api.Transaction
	r := request{method: http.MethodGet, path: "/api/v1/transactions/" + url.PathEscape(id), retry503: true}
	if err := c.doJSON(ctx, r, &tx, http.StatusOK); err != nil {
		return nil, err
	}
	return &tx, nil
}

// BeginOption configures Begin.
type BeginOption func(*beginOptions)

type beginOptions struct {
	timeout time.Duration
	name    string
	labels  map[string]string
	links   []Link
	notify  string
	barrier bool
}

// WithBarrier makes the transaction confirm in barrier mode (forsrc's
// all-confirmed barrier): each participant applies its confirm in a local
// transaction it keeps open, reports to the coordinator, and commits only
// once every participant has reported confirmed; a participant whose
// confirm fails makes them all roll back, and the transaction is
// cancelled. The participants must speak the barrier (package
// participant does, given Config.Coordinator).
func WithBarrier() BeginOption {
	return func(o *beginOptions) { o.barrier = true }
}

// WithNotify asks the coordinator to POST the transaction, signed, to url
// once it reaches a final state (a webhook; see VerifyWebhook). The
// coordinator must have a webhook secret.
func WithNotify(url string) BeginOption {
	return func(o *beginOptions) { o.notify = url }
}

// WithTimeout sets how long the transaction may stay active before the
// coordinator cancels it (the coordinator's default-timeout otherwise).
func WithTimeout(d time.Duration) BeginOption {
	return func(o *beginOptions) { o.timeout = d }
}

// WithName names the transaction, for people reading the coordinator's lists.
func WithName(name string) BeginOption {
	return func(o *beginOptions) { o.name = name }
}

// WithLabels attaches labels to the transaction.
func WithLabels(labels map[string]string) BeginOption {
	return func(o *beginOptions) {
		if o.labels == nil {
			o.labels = make(map[string]string, len(labels))
		}
		for k, v := range labels {
			o.labels[k] = v
		}
	}
}

// WithParticipants enlists links already known when the transaction begins.
func WithParticipants(links ...Link) BeginOption {
	return func(o *beginOptions) { o.links = append(o.links, links...) }
}

// Begin starts a registered transaction. Begin is not repeated on failure:
// a transaction begun whose answer was lost is cancelled at its timeout.
func (c *Client) Begin(ctx context.Context, opts ...BeginOption) (*Tx, error) {
	var o beginOptions
	for _, opt := range opts {
		opt(&o)
	}
	req := api.BeginRequest{Name: o.name, Labels: o.labels, Notify: o.notify, Barrier: o.barrier}
	if o.timeout != 0 {
		s := o.timeout.String()
		req.Timeout = &s
	}
	for _, l := range o.links {
		req.Participants = append(req.Participants, l.wire())
	}
	var tx api.Transaction
	r := request{method: http.MethodPost, path: "/api/v1/transactions", mediaType: api.MediaJSON, body: req}
	if err := c.doJSON(ctx, r, &tx, http.StatusCreated); err != nil {
		return nil, err
	}
	if tx.ID == "" {
		return nil, errors.New("tccd: the coordinator's answer to begin has no transaction id")
	}
	return c.Tx(tx.ID), nil
}

// Tx returns a handle on the registered transaction id, to enlist in,
// confirm or cancel a transaction begun elsewhere (by another process, or
// before a restart). It does not check that the transaction exists.
func (c *Client) Tx(id string) *Tx {
	return &Tx{c: c, id: id, url: c.txURL(id)}
}

// Link is a participant link: the URI of a reservation and when it expires.
type Link struct {
	URI     string
	Expires time.Time
}

// wire is l as requests carry it.
func (l Link) wire() api.Link {
	uri, exp := l.URI, formatTime(l.Expires)
	return api.Link{URI: &uri, Expires: &exp}
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
