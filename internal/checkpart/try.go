package checkpart

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
)

// KeyPlaceholder, in a try's URL, body, header values or command, is
// replaced by the try's idempotency key: a new key for every try, the
// same key for a repeated try.
const KeyPlaceholder = "{key}"

// DefaultShortTTL is the lifetime a try asks for, through the TTL query
// parameter, when the expiry check wants a reservation that expires soon.
const DefaultShortTTL = "2s"

// maxTryAnswer bounds what is read of a try's answer.
const maxTryAnswer = 1 << 20

// Trier makes reservations at the service under test.
type Trier interface {
	// Try makes one reservation. key is the try's idempotency key (a
	// repeated try has the same key); short asks for a reservation that
	// expires soon, when the trier can ask for one (CanShorten). An error
	// means there was no answer to read (a refused connection, a command
	// that failed); an answer without a usable link is a TryAnswer.
	Try(ctx context.Context, hc *http.Client, key string, short bool) (*TryAnswer, error)
	// Keyed reports whether tries carry their key to the service, so that
	// it can recognise a repeated try.
	Keyed() bool
	// CanShorten reports whether a try can ask for a short lifetime.
	CanShorten() bool
	// String describes the try, for the report.
	String() string
}

// TryAnswer is what a try answered.
type TryAnswer struct {
	// Call is the exchange, as the report shows it.
	Call Call
	// HTTP is true when the answer is an HTTP answer, whose status and
	// headers are the service's (false for a command's output).
	HTTP   bool
	Status int
	Header http.Header
	Body   []byte
	// Links are the participant links read from the answer, as tccd's
	// client reads them; LinkErr says why a reported link cannot be read.
	Links   []client.Link
	LinkErr error
}

// newKey returns a fresh idempotency key.
func newKey() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "tccd-check-" + hex.EncodeToString(b[:])
}

// HTTPTry makes reservations with an HTTP request.
type HTTPTry struct {
	URL    string
	Method string // default POST
	Body   string
	// Header is sent with every try; a body without a Content-Type is
	// sent as application/json.
	Header http.Header
	// IdempotencyHeader, when set, names the header that carries the
	// try's key (Idempotency-Key, say).
	IdempotencyHeader string
	// TTLParam, when set, is the query parameter a short try adds to the
	// URL: "ttl" (given DefaultShortTTL) or "ttl=2" (given as written).
	TTLParam string
}

var _ Trier = (*HTTPTry)(nil)

func (t *HTTPTry) String() string { return t.method() + " " + t.URL }

func (t *HTTPTry) method() string {
	if t.Method == "" {
		return http.MethodPost
	}
	return t.Method
}

// Keyed reports whether the try carries its key: in a header, or in
// place of KeyPlaceholder.
func (t *HTTPTry) Keyed() bool {
	if t.IdempotencyHeader != "" || strings.Contains(t.URL, KeyPlaceholder) || strings.Contains(t.Body, KeyPlaceholder) {
		return true
	}
	for _, vs := range t.Header {
		for _, v := range vs {
			if strings.Contains(v, KeyPlaceholder) {
				return true
			}
		}
	}
	return false
}

func (t *HTTPTry) CanShorten() bool { return t.TTLParam != "" }

// Validate reports what makes the try unusable.
func (t *HTTPTry) Validate() error {
	u, err := url.Parse(strings.ReplaceAll(t.URL, KeyPlaceholder, "k"))
	if err != nil {
		return fmt.Errorf("the try URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("the try URL %q must be an absolute http or https URL", t.URL)
	}
	if name, _, _ := strings.Cut(t.TTLParam, "="); t.TTLParam != "" && name == "" {
		return fmt.Errorf("the ttl parameter %q has no name", t.TTLParam)
	}
	return nil
}

// request builds the try's request.
func (t *HTTPTry) request(ctx context.Context, key string, short bool) (*http.Request, error) {
	target := strings.ReplaceAll(t.URL, KeyPlaceholder, url.PathEscape(key))
	if short && t.TTLParam != "" {
		u, err := url.Parse(target)
		if err != nil {
			return nil, err
		}
		name, value, found := strings.Cut(t.TTLParam, "=")
		if !found {
			value = DefaultShortTTL
		}
		q := u.Query()
		q.Set(name, value)
		u.RawQuery = q.Encode()
		target = u.String()
	}
	var body io.Reader
	if t.Body != "" {
		body = strings.NewReader(strings.ReplaceAll(t.Body, KeyPlaceholder, key))
	}
	req, err := http.NewRequestWithContext(ctx, t.method(), target, body)
	if err != nil {
		return nil, err
	}
	for k, vs := range t.Header {
		for _, v := range vs {
			req.Header.Add(k, strings.ReplaceAll(v, KeyPlaceholder, key))
		}
	}
	if t.Body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", api.MediaJSON)
	}
	if t.IdempotencyHeader != "" {
		req.Header.Set(t.IdempotencyHeader, key)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", userAgent)
	}
	return req, nil
}

func (t *HTTPTry) Try(ctx context.Context, hc *http.Client, key string, short bool) (*TryAnswer, error) {
	req, err := t.request(ctx, key, short)
	if err != nil {
		return nil, err
	}
	call := Call{Method: req.Method, URI: req.URL.String()}
	resp, err := hc.Do(req)
	if err != nil {
		call.Error = "no answer: " + errorText(err)
		return &TryAnswer{Call: call}, fmt.Errorf("%s %s got %s", req.Method, req.URL, call.Error)
	}
	defer resp.Body.Close()
	call.Status = resp.StatusCode
	ans := &TryAnswer{Call: call, HTTP: true, Status: resp.StatusCode, Header: resp.Header}
	// ReadLinks puts back what it reads of the body; the rest is read
	// here, for the report.
	ans.Links, ans.LinkErr = client.ReadLinks(resp)
	ans.Body, err = io.ReadAll(io.LimitReader(resp.Body, maxTryAnswer))
	if err != nil {
		ans.Call.Error = errorText(err)
		return ans, fmt.Errorf("%s %s: reading the answer: %w", req.Method, req.URL, err)
	}
	return ans, nil
}

// CommandTry makes reservations by running a command (with sh -c), which
// prints the reservation's participant link on stdout: the JSON
// {"participantLink":{"uri":…,"expires":…}} or "URI EXPIRES" (an RFC 3339
// date-time). The try's key replaces KeyPlaceholder in the command, and is
// in the environment as TCCD_CHECK_KEY.
type CommandTry struct {
	Command string
}

var _ Trier = (*CommandTry)(nil)

func (t *CommandTry) String() string   { return "the command " + t.Command }
func (t *CommandTry) Keyed() bool      { return strings.Contains(t.Command, KeyPlaceholder) }
func (t *CommandTry) CanShorten() bool { return false }

func (t *CommandTry) Try(ctx context.Context, _ *http.Client, key string, _ bool) (*TryAnswer, error) {
	line := strings.ReplaceAll(t.Command, KeyPlaceholder, key)
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Env = append(os.Environ(), "TCCD_CHECK_KEY="+key)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A command that leaves a child holding its output open must not
	// hang the check: its output is taken as it stands shortly after.
	cmd.WaitDelay = time.Second
	call := Call{Method: "RUN", URI: line}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		} else {
			msg = err.Error() + ": " + lastLine(msg)
		}
		call.Error = msg
		return &TryAnswer{Call: call}, fmt.Errorf("the try command failed: %s", msg)
	}
	ans := &TryAnswer{Call: call, Body: stdout.Bytes()}
	ans.Links, ans.LinkErr = linksOfOutput(stdout.String())
	return ans, nil
}

// linksOfOutput reads a try command's output with the client's reader of
// answers: a JSON document as a JSON body, "URI EXPIRES" as a Link header.
func linksOfOutput(out string) ([]client.Link, error) {
	out = strings.TrimSpace(out)
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody}
	switch f := strings.Fields(out); {
	case out == "":
		return nil, errors.New("the command printed nothing")
	case strings.HasPrefix(out, "{"):
		resp.Header.Set("Content-Type", api.MediaJSON)
		resp.Body = io.NopCloser(strings.NewReader(out))
	case len(f) == 2:
		resp.Header.Set("Link", fmt.Sprintf("<%s>; rel=%q; %s=%q", f[0], api.RelParticipant, api.ParamExpires, f[1]))
	default:
		return nil, fmt.Errorf("the command printed %q: want {\"participantLink\":{\"uri\":…,\"expires\":…}} or \"URI EXPIRES\"", clip(out))
	}
	return client.ReadLinks(resp)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return clip(lines[len(lines)-1])
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
