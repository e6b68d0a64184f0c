package http

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
)

// ProblemTypePrefix starts the `type` of every problem document.
const ProblemTypePrefix = api.ProblemTypePrefix

// Problem is an RFC 9457 problem document (see package api).
type Problem = api.Problem

// StatusOf returns the HTTP status of an error code on the native API.
func StatusOf(code tccd.Code) int { return api.StatusOf(string(code)) }

// ProblemFor renders err as a problem document; internal details stay out.
func ProblemFor(err error, instance string) Problem {
	code := tccd.ErrorCode(err)
	status := StatusOf(code)
	p := Problem{
		Type: ProblemTypePrefix + string(code), Title: http.StatusText(status), Status: status,
		Detail: tccd.ErrorMessage(err), Instance: instance, Code: string(code),
	}
	var e *tccd.Error
	if errors.As(err, &e) {
		p.Field = e.Field
	}
	if tx := tccd.ErrorTx(err); tx != nil {
		w := FromTx(tx)
		p.State = w.State
		p.Transaction = &w
	}
	return p
}

// writeProblem writes err as application/problem+json. Internal errors and
// store failures are logged with an id that the answer carries.
func writeProblem(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p := ProblemFor(err, r.URL.EscapedPath())
	if p.Status >= 500 {
		p.ErrorID = newErrorID()
		level := slog.LevelError
		if p.Status == http.StatusServiceUnavailable {
			level = slog.LevelWarn
		}
		log.Log(r.Context(), level, "request failed", "error_id", p.ErrorID, "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if p.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func newErrorID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// atomikosStatus maps errors on the Atomikos endpoints, whose protocol
// answers 404 for "timed out and cancelled".
func atomikosStatus(code tccd.Code) int {
	switch code {
	case tccd.ETimedOut:
		return http.StatusNotFound
	case tccd.EHeuristic:
		return http.StatusConflict
	}
	return StatusOf(code)
}

// atomikosText is the plain-text body of an Atomikos error answer,
// worded as the reference coordinator words it.
func atomikosText(err error) string {
	switch tccd.ErrorCode(err) {
	case tccd.ETimedOut:
		return "transaction has timed out and was cancelled"
	case tccd.EHeuristic:
		if tx := tccd.ErrorTx(err); tx != nil {
			switch tx.Reason {
			case tccd.ReasonInDoubt:
				return "outcome unknown - some participants gave no definite answer; check each participant for details"
			case tccd.ReasonParticipant:
				return "partial cancellation - some participants refused to cancel; check each participant for details"
			}
		}
		return "partial confirmation - check each participant for details"
	case tccd.EInternal:
		return "internal error"
	}
	return tccd.ErrorMessage(err)
}
