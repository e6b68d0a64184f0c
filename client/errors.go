package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/tccd/tccd/api"
)

// Sentinel errors to test with errors.Is. The errors the client returns
// are *Error, *HeuristicError and *ConflictError values that match them.
var (
	// ErrTimedOut: asked to confirm, the coordinator cancelled the
	// transaction instead (code timed_out on the native API, 404 on the
	// Atomikos API).
	ErrTimedOut = errors.New("tccd: the transaction has timed out and was cancelled")
	// ErrHeuristic: the participants did not all end the same way.
	ErrHeuristic = errors.New("tccd: heuristic outcome")
	// ErrNotFound: the coordinator knows no transaction with that id.
	ErrNotFound = errors.New("tccd: not found")
	// ErrConflict: the transaction's state does not allow the request.
	ErrConflict = errors.New("tccd: conflict")
	// ErrInProgress: the transaction is decided but the coordinator was
	// still settling its participants when the context ended. It will
	// finish on its own; look at it later with Get.
	ErrInProgress = errors.New("tccd: the transaction is still in progress")
)

// Error is an error answer of the coordinator.
type Error struct {
	// Status is the HTTP status of the answer.
	Status int
	// Code is the stable error code (one of the api.Code* constants), or ""
	// when the answer did not tell it.
	Code string
	// Message is the problem's detail, or the text of a plain-text answer
	// (the Atomikos API's).
	Message string
	// Problem is the decoded problem document of the native API; nil for
	// plain-text answers.
	Problem *api.Problem
	// Transaction is the transaction as the coordinator last showed it,
	// when known: from the problem document, or from polling.
	Transaction *api.Transaction
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("tccd: ")
	if e.Message != "" {
		b.WriteString(e.Message)
	} else {
		b.WriteString(http.StatusText(e.Status))
	}
	if e.Status != 0 || e.Code != "" {
		b.WriteString(" (")
		if e.Status != 0 {
			fmt.Fprintf(&b, "%d", e.Status)
		}
		if e.Code != "" {
			if e.Status != 0 {
				b.WriteByte(' ')
			}
			b.WriteString(e.Code)
		}
		b.WriteByte(')')
	}
	return b.String()
}

// Is makes errors.Is(err, ErrTimedOut) (ErrHeuristic, ErrNotFound,
// ErrConflict) true for an Error with that code.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrTimedOut:
		return e.Code == api.CodeTimedOut
	case ErrHeuristic:
		return e.Code == api.CodeHeuristic
	case ErrNotFound:
		return e.Code == api.CodeNotFound
	case ErrConflict:
		return e.Code == api.CodeConflict
	}
	return false
}

// HeuristicError reports a heuristic outcome: some participants confirmed
// and some did not. errors.Is(err, ErrHeuristic) is true for it, and
// errors.As finds the underlying *Error.
type HeuristicError struct {
	Err *Error
	// Transaction holds the outcome of every participant (State,
	// LastStatus, LastError). It is nil on the Atomikos API, which gives
	// no participant detail: check each participant.
	Transaction *api.Transaction
}

func (e *HeuristicError) Error() string {
	if e.Transaction == nil {
		return e.Err.Error() + "; the Atomikos API gives no participant detail: check each participant"
	}
	counts := map[string]int{}
	var order []string
	for _, p := range e.Transaction.Participants {
		if counts[p.State] == 0 {
			order = append(order, p.State)
		}
		counts[p.State]++
	}
	parts := make([]string, len(order))
	for i, s := range order {
		parts[i] = fmt.Sprintf("%d %s", counts[s], s)
	}
	return fmt.Sprintf("%s; participants: %s", e.Err.Error(), strings.Join(parts, ", "))
}

// Unwrap returns the underlying *Error.
func (e *HeuristicError) Unwrap() error { return e.Err }

// Participants returns the per-participant outcome; nil on the Atomikos API.
func (e *HeuristicError) Participants() []api.Participant {
	if e.Transaction == nil {
		return nil
	}
	return e.Transaction.Participants
}

// ConflictError reports a request the transaction's current state does not
// allow, such as cancelling a confirmed transaction or enlisting in a
// cancelled one. errors.Is(err, ErrConflict) is true for it.
type ConflictError struct {
	Err *Error
	// State is the transaction's state when the coordinator refused.
	State string
	// Transaction is the transaction as it stood, when the coordinator sent it.
	Transaction *api.Transaction
}

func (e *ConflictError) Error() string {
	if e.State == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%s; state %s", e.Err.Error(), e.State)
}

// Unwrap returns the underlying *Error.
func (e *ConflictError) Unwrap() error { return e.Err }

// ProblemOf returns the problem document carried by err (or by an error it
// wraps), or nil.
func ProblemOf(err error) *api.Problem {
	var e *Error
	if errors.As(err, &e) {
		return e.Problem
	}
	return nil
}

// typed wraps e in the type a caller branches on.
func typed(e *Error) error {
	switch e.Code {
	case api.CodeHeuristic:
		return &HeuristicError{Err: e, Transaction: e.Transaction}
	case api.CodeConflict:
		state := ""
		if e.Problem != nil {
			state = e.Problem.State
		}
		if state == "" && e.Transaction != nil {
			state = e.Transaction.State
		}
		return &ConflictError{Err: e, State: state, Transaction: e.Transaction}
	}
	return e
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// maxMessage bounds the text of a non-problem answer kept in an Error.
const maxMessage = 512

// decodeError reads an error answer. A problem document gives the code; a
// plain-text answer of the Atomikos endpoints gives it in the
// Tcc-Error-Code header, or (from another coordinator) is read by that
// protocol's table (404 timed out, 409 heuristic); anything else gets the
// code that api's table gives its status, when exactly one does.
func decodeError(resp *http.Response, atomikos bool) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{Status: resp.StatusCode}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err == nil && mt == api.MediaProblem {
		var p api.Problem
		if json.Unmarshal(body, &p) == nil && p.Code != "" {
			e.Problem, e.Code, e.Message, e.Transaction = &p, p.Code, p.Detail, p.Transaction
			if e.Message == "" {
				e.Message = p.Title
			}
			return typed(e)
		}
	}
	e.Message = strings.TrimSpace(string(body))
	if len(e.Message) > maxMessage {
		e.Message = e.Message[:maxMessage] + "…"
	}
	switch code := resp.Header.Get(api.HeaderErrorCode); {
	case atomikos && slices.Contains(api.Codes(), code):
		// tccd names the code of its plain-text answers.
		e.Code = code
	case atomikos && resp.StatusCode == http.StatusNotFound:
		e.Code = api.CodeTimedOut
	case atomikos && resp.StatusCode == http.StatusConflict:
		e.Code = api.CodeHeuristic
	default:
		e.Code = codeOfStatus(resp.StatusCode)
	}
	return typed(e)
}

// codeOfStatus returns the one error code api maps to status, or "" when
// none or several do (409 is conflict, timed_out or heuristic).
func codeOfStatus(status int) string {
	found := ""
	for _, c := range api.Codes() {
		if api.StatusOf(c) != status {
			continue
		}
		if found != "" {
			return ""
		}
		found = c
	}
	return found
}

// outcomeError is the error for a transaction that, polled after a 202,
// ended otherwise than wanted: the error the confirm (or cancel) request
// would have answered with had it waited.
func outcomeError(tx *api.Transaction, want string) error {
	e := &Error{Transaction: tx}
	switch {
	case want == stateConfirmed && tx.State == stateCancelled:
		e.Code, e.Message = api.CodeTimedOut, "the transaction has timed out and was cancelled"
	case tx.State == stateHeuristic:
		e.Code, e.Message = api.CodeHeuristic, "partial confirmation: some participants did not confirm"
	default:
		e.Code, e.Message = api.CodeConflict, fmt.Sprintf("the transaction ended %s, not %s", tx.State, want)
	}
	e.Status = api.StatusOf(e.Code)
	return typed(e)
}
