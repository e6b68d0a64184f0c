package participant

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/tccd/tccd/api"
)

// Rejection is an error that becomes an HTTP answer with its own status: a
// try that cannot reserve (409 "sold out"), a request the application finds
// invalid (400). Return one from Try (or, rarely, from Confirm or Cancel)
// with Reject; it may be wrapped. Any other error from the application's
// functions is answered 500 "internal error" and logged with an id.
type Rejection struct {
	// Status is the HTTP status, 400 to 599.
	Status int
	// Detail is shown to the caller as the problem's detail.
	Detail string
	// state, when set, is the reservation's state shown in the problem.
	state State
}

// Reject returns a *Rejection with the status and detail. A status outside
// 400–599 is answered 500.
func Reject(status int, detail string) error {
	return &Rejection{Status: status, Detail: detail}
}

// Rejectf is Reject with a formatted detail.
func Rejectf(status int, format string, args ...any) error {
	return &Rejection{Status: status, Detail: fmt.Sprintf(format, args...)}
}

func (e *Rejection) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Detail)
}

func rejectState(status int, state State, format string, args ...any) error {
	return &Rejection{Status: status, Detail: fmt.Sprintf(format, args...), state: state}
}

// errUnavailable wraps a database error that running the request again may
// cure (a deadlock, a busy SQLite): it is answered 503 with Retry-After.
type errUnavailable struct{ err error }

func (e errUnavailable) Error() string { return "temporarily unavailable: " + e.err.Error() }
func (e errUnavailable) Unwrap() error { return e.err }

// statusCode is the problem code of a status: tccd's code where one has
// that status, else "rejected".
func statusCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return api.CodeInvalid
	case http.StatusNotFound:
		return api.CodeNotFound
	case http.StatusMethodNotAllowed:
		return api.CodeMethodNotAllowed
	case http.StatusConflict:
		return api.CodeConflict
	case http.StatusRequestEntityTooLarge:
		return api.CodeTooLarge
	case http.StatusUnsupportedMediaType:
		return api.CodeUnsupportedMedia
	case http.StatusInternalServerError:
		return api.CodeInternal
	case http.StatusServiceUnavailable:
		return api.CodeUnavailable
	}
	return "rejected"
}

// problemFor renders err as a problem document; an error that is not a
// Rejection shows as "internal error" (or "try again" when retryable).
func problemFor(err error, instance string) api.Problem {
	status, detail, state := http.StatusInternalServerError, "internal error", State("")
	var rej *Rejection
	var unavail errUnavailable
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &rej):
		status, detail, state = rej.Status, rej.Detail, rej.state
		if status < 400 || status > 599 {
			status = http.StatusInternalServerError
		}
	case errors.As(err, &unavail):
		status, detail = http.StatusServiceUnavailable, "the database is busy; try again"
	case errors.As(err, &tooLarge):
		status, detail = http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", tooLarge.Limit)
	}
	code := statusCode(status)
	return api.Problem{
		Type: api.ProblemTypePrefix + code, Title: http.StatusText(status), Status: status,
		Detail: detail, Instance: instance, Code: code, State: string(state),
	}
}

// writeProblem writes err as application/problem+json. Answers of 500 and
// above are logged with an id that the answer carries; the caller never
// sees the error's text unless it is a Rejection.
func writeProblem(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p := problemFor(err, r.URL.Path)
	if p.Status >= 500 {
		p.ErrorID = newErrorID()
		level := slog.LevelError
		if p.Status == http.StatusServiceUnavailable {
			level = slog.LevelWarn
		}
		log.Log(r.Context(), level, "participant: request failed", "error_id", p.ErrorID,
			"method", r.Method, "path", r.URL.Path, "status", p.Status, "err", err)
	}
	if p.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", api.MediaProblem)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func newErrorID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
