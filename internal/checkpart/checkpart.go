// Package checkpart checks a participant service against the TCC
// participant contract that tccd relies on — idempotent confirm and
// cancel, the answers for unknown, cancelled, confirmed and expired
// reservations, no redirects — before the service goes live. It is the
// logic of `tccd check-participant`.
//
// Each check makes fresh reservations with the service's own try (an
// HTTP request or a command), calls them as tccd would (PUT to confirm,
// DELETE to cancel, with no body, Accept: application/tcc, redirects not
// followed) and compares the answers with the contract. The checks
// confirm and cancel real reservations: point them at a test instance.
package checkpart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Result is the result of one check.
type Result string

// The results of a check.
const (
	Pass Result = "pass"
	Fail Result = "fail"
	// NotChecked: the check could not run — no way was given to do what
	// it needs, or what it needs first did not work (another check says
	// why).
	NotChecked Result = "not_checked"
)

// Defaults of Config.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxWait     = time.Minute
	DefaultExpiryGrace = time.Second
)

// userAgent identifies the checker's requests.
const userAgent = "tccd check-participant"

// Config configures Run.
type Config struct {
	// Try makes reservations (required).
	Try Trier
	// Timeout bounds each call to the service (default DefaultTimeout).
	Timeout time.Duration
	// MaxWait is the longest the expiry check waits for a reservation to
	// expire (default DefaultMaxWait): a reservation living longer is not
	// checked.
	MaxWait time.Duration
	// ExpiryGrace is waited past a reservation's expiry before the expiry
	// check calls it, for the clocks of the two machines (default
	// DefaultExpiryGrace).
	ExpiryGrace time.Duration
	// UnknownURI is a reservation URI the service never made; default: the
	// first reservation's URI with its last path segment changed to a
	// random one of the same shape.
	UnknownURI string
	// Progress, when set, is told of long waits.
	Progress io.Writer
	// Transport makes the HTTP calls (default http.DefaultTransport).
	Transport http.RoundTripper
}

// Call is one exchange with the service, as the report shows it.
type Call struct {
	Method string `json:"method"` // RUN for a try command
	URI    string `json:"uri"`
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (c Call) String() string {
	switch {
	case c.Error != "":
		return fmt.Sprintf("%s %s → %s", c.Method, c.URI, c.Error)
	case c.Method == "RUN":
		return fmt.Sprintf("RUN %s → printed a link", c.URI)
	}
	return fmt.Sprintf("%s %s → %d %s", c.Method, c.URI, c.Status, http.StatusText(c.Status))
}

// Outcome is the result of one check.
type Outcome struct {
	// Check is the check's name (answers, confirm-idempotent, …).
	Check string `json:"check"`
	// Title says what the contract asks.
	Title string `json:"title"`
	// Required says the check must pass for the service to keep the
	// contract. The repeated try is required only when the try carries
	// a key: without one it cannot be checked.
	Required bool   `json:"required"`
	Result   Result `json:"result"`
	// Detail says what was seen (or why the check did not run).
	Detail string `json:"detail"`
	// Fix says what to change, when the check failed.
	Fix string `json:"fix,omitempty"`
	// Why says why tccd needs it.
	Why   string `json:"why"`
	Calls []Call `json:"calls"`
}

// Report is the result of Run.
type Report struct {
	Target   string    `json:"target"`
	Outcomes []Outcome `json:"checks"`
}

// OK reports whether the service keeps the contract: every required
// check passed (and none failed).
func (r *Report) OK() bool {
	for _, o := range r.Outcomes {
		if o.Result == Fail || (o.Required && o.Result != Pass) {
			return false
		}
	}
	return true
}

// Count returns how many checks had the result.
func (r *Report) Count(res Result) int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Result == res {
			n++
		}
	}
	return n
}

// Outcome returns the outcome of the named check.
func (r *Report) Outcome(name string) (Outcome, bool) {
	for _, o := range r.Outcomes {
		if o.Check == name {
			return o, true
		}
	}
	return Outcome{}, false
}

// Run runs every check and returns the report. It returns an error only
// for a Config it cannot use, or when ctx ends.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Try == nil {
		return nil, errors.New("checkpart: no way to make a reservation")
	}
	setDefault(&cfg.Timeout, DefaultTimeout)
	setDefault(&cfg.MaxWait, DefaultMaxWait)
	setDefault(&cfg.ExpiryGrace, DefaultExpiryGrace)
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	r := &runner{
		cfg: cfg,
		hc: &http.Client{
			Transport: cfg.Transport,
			Timeout:   cfg.Timeout,
			// As tccd's caller: a redirect is an answer, not followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		made: map[string]bool{},
	}
	out := make([]Outcome, len(checks))
	run := func(i int) { out[i] = r.run(ctx, checks[i]) }
	// answers first: it tells whether reservations can be made at all.
	run(0)
	// expiry waits: it runs beside the others. no-redirects, last, reads
	// what every other check saw.
	var wg sync.WaitGroup
	for i, c := range checks[1 : len(checks)-1] {
		if c.name == checkExpiry {
			wg.Go(func() { run(i + 1) })
		}
	}
	for i, c := range checks[1 : len(checks)-1] {
		if c.name != checkExpiry {
			run(i + 1)
		}
	}
	wg.Wait()
	run(len(checks) - 1)
	r.cleanUp(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &Report{Target: cfg.Try.String(), Outcomes: out}, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// runner is one Run: what the checks share.
type runner struct {
	cfg Config
	hc  *http.Client

	mu sync.Mutex
	// noReservation, when set, says why reservations cannot be made: the
	// checks that need one do not run.
	noReservation string
	// firstURI is the URI of the first reservation made, the model of the
	// unknown URIs.
	firstURI string
	// redirects are the answers of every check that were redirects.
	redirects []Call
	// made holds the URIs of the reservations made, true once confirmed
	// or cancelled: the others are cancelled at the end.
	made map[string]bool
}

// run runs one check.
func (r *runner) run(ctx context.Context, c check) Outcome {
	cr := &checkRun{r: r, name: c.name}
	v := c.run(ctx, cr)
	required := c.required || (c.requiredIf != nil && c.requiredIf(r.cfg.Try))
	return Outcome{
		Check: c.name, Title: c.title, Required: required, Why: c.why,
		Result: v.result, Detail: v.detail, Fix: v.fix, Calls: cr.calls,
	}
}

// cleanUp cancels the reservations the checks left tried, so that the
// service does not hold them until they expire.
func (r *runner) cleanUp(ctx context.Context) {
	r.mu.Lock()
	var open []string
	for uri, settled := range r.made {
		if !settled {
			open = append(open, uri)
		}
	}
	r.mu.Unlock()
	cr := &checkRun{r: r, name: "clean-up"}
	for _, uri := range open {
		_, _ = cr.call(ctx, http.MethodDelete, uri)
	}
}

func (r *runner) progress(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, format+"\n", args...)
	}
}

// verdict is what a check found.
type verdict struct {
	result Result
	detail string
	fix    string
}

func pass(format string, args ...any) verdict {
	return verdict{result: Pass, detail: fmt.Sprintf(format, args...)}
}

func notChecked(format string, args ...any) verdict {
	return verdict{result: NotChecked, detail: fmt.Sprintf(format, args...)}
}

// fail is a failed check: what was seen, and what to fix.
func fail(fix, format string, args ...any) verdict {
	return verdict{result: Fail, detail: fmt.Sprintf(format, args...), fix: fix}
}
