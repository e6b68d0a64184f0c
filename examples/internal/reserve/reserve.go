// Package reserve makes a try at a participant of the examples — a POST
// answered by the participant kit — and reads the participant link of the
// answer.
package reserve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/participant"
)

// Answer is a successful try.
type Answer struct {
	// Link is the reservation's participant link, for the coordinator.
	Link client.Link
	// Data is what the participant said about the reservation (the kit's
	// "data" member), for the application.
	Data json.RawMessage
}

// Refused is a try the participant answered with an error: no reservation
// was made (the kit rolls the try back).
type Refused struct {
	URL    string
	Status int
	// Detail is the participant's explanation (its problem's detail).
	Detail string
}

func (e *Refused) Error() string {
	return fmt.Sprintf("%s: %d %s", e.URL, e.Status, e.Detail)
}

// Unreachable is a try that got no answer: the service is down or did not
// answer in time. A reservation may have been made; if so it expires.
type Unreachable struct {
	URL string
	Err error
}

func (e *Unreachable) Error() string { return fmt.Sprintf("%s unreachable: %v", e.URL, e.Err) }
func (e *Unreachable) Unwrap() error { return e.Err }

// Post tries at url with body (JSON; nil for none) through hc. With an
// hc from (*client.Client).WrapHTTPClient and a ctx carrying a *client.Tx,
// the transaction travels with the request and the links of the answer are
// enlisted before Post returns.
func Post(ctx context.Context, hc *http.Client, url string, body any) (Answer, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Answer{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, rd)
	if err != nil {
		return Answer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) {
			return Answer{}, &Unreachable{URL: url, Err: ne}
		}
		return Answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Answer{}, &Unreachable{URL: url, Err: err}
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return Answer{}, &Refused{URL: url, Status: resp.StatusCode, Detail: detail(resp, raw)}
	}
	var a struct {
		ParticipantLink struct {
			URI     string `json:"uri"`
			Expires string `json:"expires"`
		} `json:"participantLink"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return Answer{}, fmt.Errorf("%s: the answer is no participant link: %w", url, err)
	}
	exp, err := time.Parse(time.RFC3339Nano, a.ParticipantLink.Expires)
	if err != nil || a.ParticipantLink.URI == "" {
		return Answer{}, fmt.Errorf("%s: the answer's participant link has no uri or a bad expires (%q)", url, a.ParticipantLink.Expires)
	}
	return Answer{Link: client.Link{URI: a.ParticipantLink.URI, Expires: exp}, Data: a.Data}, nil
}

// detail is the explanation of an error answer: the problem's detail, or
// the start of a text body, or the status text.
func detail(resp *http.Response, raw []byte) string {
	var p struct {
		Detail string `json:"detail"`
		Title  string `json:"title"`
	}
	if json.Unmarshal(raw, &p) == nil && (p.Detail != "" || p.Title != "") {
		if p.Detail != "" {
			return p.Detail
		}
		return p.Title
	}
	if s := strings.TrimSpace(string(raw)); s != "" && len(s) < 200 {
		return s
	}
	return http.StatusText(resp.StatusCode)
}

// Reason is a short explanation of a failed try at service, for people.
func Reason(service string, err error) string {
	var refused *Refused
	var down *Unreachable
	switch {
	case errors.As(err, &refused):
		return service + ": " + refused.Detail
	case errors.As(err, &down):
		return service + " unreachable"
	default:
		return service + ": " + err.Error()
	}
}

// TTLParam reads the lifetime a try asks for in its ?ttl= query parameter
// (a Go duration such as "90s"); zero when there is none, so that the
// participant's default applies. max is the longest lifetime the service
// grants (its participant.Config.MaxTTL; zero means
// participant.DefaultMaxTTL). A value that is not a positive duration, or
// is longer than max, is a 400 for the kit that says why: a try is never
// granted silently less than it asked for.
func TTLParam(r *http.Request, max time.Duration) (time.Duration, error) {
	s := r.URL.Query().Get("ttl")
	if s == "" {
		return 0, nil
	}
	if max <= 0 {
		max = participant.DefaultMaxTTL
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil || d <= 0:
		return 0, participant.Rejectf(http.StatusBadRequest, "ttl %q: want a positive duration such as 90s", s)
	case d > max:
		return 0, participant.Rejectf(http.StatusBadRequest, "ttl %q: this service grants at most %v", s, max)
	}
	return d, nil
}

// WithTTL returns url with ?ttl=d added, or url when d is zero.
func WithTTL(url string, d time.Duration) string {
	if d <= 0 {
		return url
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "ttl=" + d.String()
}
