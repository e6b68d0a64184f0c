package nats

import (
	"context"
	"errors"
	"fmt"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Sentinels that an *Error wraps; test for them with errors.Is.
var (
	// ErrNoStream: no JetStream stream captures the subject. Publishing
	// to it cannot succeed until the operator creates (or widens) a
	// stream; tccd never creates one. Not retryable.
	ErrNoStream = errors.New("no JetStream stream captures the subject")
	// ErrNotConnected: the connection to the server is lost and being
	// re-established. Retryable.
	ErrNotConnected = errors.New("not connected to the NATS server (reconnecting)")
	// ErrClosed: the Publisher was closed. Not retryable with it.
	ErrClosed = errors.New("publisher closed")
	// ErrInvalid: the subject, the message id or a header cannot be
	// published as given. Not retryable.
	ErrInvalid = errors.New("invalid message")
)

// Error is every failure of Publish and CheckSubject. Retryable says
// whether the same call may succeed later without anyone changing
// anything: true for timeouts, a lost connection, a server or stream that
// is busy; false when the subject has no stream (ErrNoStream), the message
// is refused as it is (too large, bad subject), or the Publisher is
// closed.
//
// A retryable publish failure does not say the message was not stored:
// the server may have stored it and the acknowledgement been lost.
// Publishing it again with the same message id is how to find out safely
// (the stream drops the repeat if it comes within its duplicate window).
type Error struct {
	// Op is "publish" or "check subject".
	Op string
	// Subject and MsgID name the message ("" when not applicable).
	Subject, MsgID string
	// Retryable says whether trying again may help.
	Retryable bool
	// Err is the cause: one of the sentinels above, a context error, or
	// the client's or the server's error.
	Err error
}

func (e *Error) Error() string {
	s := "nats: " + e.Op + " " + fmt.Sprintf("%q", e.Subject)
	if e.MsgID != "" {
		s += fmt.Sprintf(" (message id %q)", e.MsgID)
	}
	s += ": " + e.Err.Error()
	if e.Retryable {
		return s + " (retryable)"
	}
	return s + " (permanent)"
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports Retryable, in the convention of net.Error, so that
// code which does not import this package (the participant kit's relay)
// can tell the two kinds apart.
func (e *Error) Temporary() bool { return e.Retryable }

// IsRetryable reports whether err is an *Error that says retrying may
// help, or a context's deadline (a caller's timeout).
func IsRetryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Retryable
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// retryable classifies an error of the client or the server. Unknown
// errors count as retryable: the relay that publishes keeps the message
// and tries again later, which is harmless with a message id, whereas
// dropping a message wrongly judged permanent is not.
func retryable(err error) bool {
	var api *jetstream.APIError
	switch {
	case errors.Is(err, ErrNoStream), errors.Is(err, ErrClosed), errors.Is(err, ErrInvalid),
		errors.Is(err, natsgo.ErrConnectionClosed),
		errors.Is(err, natsgo.ErrBadSubject), errors.Is(err, natsgo.ErrMaxPayload),
		errors.Is(err, natsgo.ErrBadHeaderMsg), errors.Is(err, natsgo.ErrHeadersNotSupported),
		errors.Is(err, natsgo.ErrAuthorization), errors.Is(err, natsgo.ErrPermissionViolation),
		errors.Is(err, jetstream.ErrInvalidSubject), errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum):
		return false
	case errors.As(err, &api):
		// The server's answer carries an HTTP-like code: 4xx refuses the
		// message as it is (too large, sealed stream, a broken
		// expectation), 5xx is the server's own trouble (storage full,
		// no leader, JetStream unavailable).
		return api.Code == 0 || api.Code >= 500 || api.Code == 408 || api.Code == 429
	}
	return true
}
