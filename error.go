package tccd

import (
	"errors"
	"fmt"
)

// Code classifies an Error. Codes are stable: clients branch on them, and
// the HTTP layer maps each to one status code in a single table.
type Code string

// Error codes.
const (
	// EInvalid: the request is malformed or breaks a rule (400).
	EInvalid Code = "invalid"
	// EUnauthorized: the request carries no valid credentials (401).
	EUnauthorized Code = "unauthorized"
	// EForbidden: the caller is known but may not do this (403).
	EForbidden Code = "forbidden"
	// ETooLarge: the request body is over the configured limit (413).
	ETooLarge Code = "too_large"
	// EUnsupportedMedia: the request has a content type we do not read (415).
	EUnsupportedMedia Code = "unsupported_media_type"
	// ENotFound: no transaction has that id, or no such resource (404).
	ENotFound Code = "not_found"
	// EMethodNotAllowed: the resource exists but not with that method (405).
	EMethodNotAllowed Code = "method_not_allowed"
	// ETooManyRequests: the caller is over its rate limit (429).
	ETooManyRequests Code = "too_many_requests"
	// ENotConfigured: the request is well formed, but asks for something
	// this coordinator is not set up to do (a webhook without a secret to
	// sign it, messages without a broker) (422).
	ENotConfigured Code = "not_configured"
	// EConflict: the transaction's state does not allow the request, or a
	// concurrent request changed it first (409).
	EConflict Code = "conflict"
	// ETimedOut: asked to confirm, the coordinator cancelled instead because
	// a participant had expired or too little time was left (409 native, 404 Atomikos).
	ETimedOut Code = "timed_out"
	// EHeuristic: some participants confirmed and some did not (409).
	EHeuristic Code = "heuristic"
	// ECompensated: asked to confirm, some participants did not confirm
	// and the ones that did were undone (compensated): the transaction
	// did not happen (409 native and Atomikos).
	ECompensated Code = "compensated"
	// EUnavailable: the coordinator cannot take the request now (not ready,
	// shutting down, store failing) (503).
	EUnavailable Code = "unavailable"
	// EInternal: a bug or an unexpected failure (500).
	EInternal Code = "internal"
)

// Codes lists every error code.
var Codes = []Code{
	EInvalid, EUnauthorized, EForbidden, ETooLarge, EUnsupportedMedia, ENotFound,
	EMethodNotAllowed, ETooManyRequests, ENotConfigured, EConflict, ETimedOut, EHeuristic, ECompensated,
	EUnavailable, EInternal,
}

// Error is the one error type of the domain. Its Message is safe to show to
// clients; internal causes are wrapped in Err and never shown.
type Error struct {
	Code    Code
	Message string
	// Field names the offending request field for EInvalid, when known.
	Field string
	// Tx is the transaction as it stands, for conflicts and outcomes.
	Tx *Transaction
	// Err is the underlying cause, if any.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an Error with the given code and formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldError returns an EInvalid error about one request field.
func FieldError(field, format string, args ...any) *Error {
	return &Error{Code: EInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, EInternal for errors that are not an *Error.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return ""
	}
	return EInternal
}

// ErrorMessage returns the client-safe message of err.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ErrorTx returns the transaction attached to err, if any.
func ErrorTx(err error) *Transaction {
	var e *Error
	if errors.As(err, &e) {
		return e.Tx
	}
	return nil
}
