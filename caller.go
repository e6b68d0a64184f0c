package tccd

import (
	"context"
	"fmt"
	"time"
)

// Op is what the coordinator asks of a participant.
type Op int

// Operations.
const (
	OpConfirm    Op = iota // PUT <uri>
	OpCancel               // DELETE <uri>
	OpCompensate           // POST <compensate uri>: undo a confirmed participant
	OpPublish              // publish a message participant to the broker (no HTTP call)
)

func (o Op) String() string {
	switch o {
	case OpConfirm:
		return "confirm"
	case OpCompensate:
		return "compensate"
	case OpPublish:
		return "publish"
	}
	return "cancel"
}

// Caller sends confirm and cancel calls to participants. http.Caller is the
// implementation; it may be used concurrently. Call must honour ctx, and
// must not retry by itself: the coordinator decides what to retry.
type Caller interface {
	Call(ctx context.Context, call Call) CallResult
}

// Call is one call to a participant.
type Call struct {
	Op  Op     // PUT to confirm, DELETE to cancel
	URI string // where to send it
	// Barrier, when set, is the key of the barrier round a confirm
	// belongs to (sent as the Tcc-Barrier header): the participant reports
	// on it and commits only when the round commits.
	Barrier string
}

// CallResult is the answer to one participant call.
type CallResult struct {
	// Status is the HTTP status code, 0 if no answer came (Err is set).
	Status int
	// RetryAfter is the participant's Retry-After, 0 if absent.
	RetryAfter time.Duration
	// Err is a transport failure: refused or reset connection, timeout.
	Err error
	// Permanent marks an Err that retrying cannot cure: the call was not
	// sent because its destination is not allowed (a configuration
	// matter, see Allowlist). Such a call is a permanent failure.
	Permanent bool
	// Duration is how long the call took.
	Duration time.Duration
	// Sent reports that the request was written to the participant (in
	// whole, at least once), so the participant may have acted on it even
	// if no answer came. A call that failed before that (no connection,
	// a name that does not resolve) leaves it false.
	Sent bool
}

// InDoubt reports whether the participant may have done what was asked
// although the answer says nothing definite: the request was written and
// then no answer came (a timeout, a reset connection), or the answer was
// a 5xx. A 408, 425 or 429 says the participant did not act; a refused
// destination was never sent.
func (r CallResult) InDoubt() bool {
	if r.Permanent {
		return false
	}
	if r.Status == 0 {
		return r.Sent
	}
	return r.Status >= 500
}

// Refusal reports whether an answer to a cancel is a refusal: a status
// that is neither success nor 404, 405, 410 nor one to retry (409, "I am
// confirmed", typically). A
// refused cancel is retried until the link expires; one never accepted
// is not a cancel.
func (r CallResult) Refusal() bool {
	return !r.Permanent && r.Err == nil && r.Status != 0 && Classify(OpCancel, r) == VerdictPermanent
}

// Verdict is how the coordinator reads a CallResult.
type Verdict int

// Verdicts.
const (
	// VerdictDone: the participant did what was asked.
	VerdictDone Verdict = iota
	// VerdictGone: (confirm only) the reservation no longer exists: the
	// participant cancelled it, or it expired.
	VerdictGone
	// VerdictRetry: no definite answer; ask again later.
	VerdictRetry
	// VerdictPermanent: the participant refused for good.
	VerdictPermanent
)

// Classify turns a participant's answer into a verdict, per the TCC
// contract: on confirm 2xx is done and 404/410 mean the participant already
// cancelled; on cancel 2xx, 404, 405 and 410 all count as done. 408, 425,
// 429, 5xx and transport errors are retried, unless marked Permanent; any
// other status is permanent.
func Classify(op Op, r CallResult) Verdict {
	if r.Permanent {
		return VerdictPermanent
	}
	if r.Err != nil || r.Status == 0 {
		return VerdictRetry
	}
	s := r.Status
	switch {
	case s >= 200 && s < 300:
		return VerdictDone
	case s == 408 || s == 425 || s == 429 || s >= 500:
		return VerdictRetry
	case op != OpCancel && (s == 404 || s == 410):
		return VerdictGone
	case op == OpCancel && (s == 404 || s == 405 || s == 410):
		return VerdictDone
	default:
		// 1xx and 3xx (redirects are not followed) fall here too.
		return VerdictPermanent
	}
}

// describe renders a CallResult for LastError.
func (r CallResult) describe() string {
	if r.Err != nil {
		return r.Err.Error()
	}
	if r.Status >= 200 && r.Status < 300 {
		return ""
	}
	return fmt.Sprintf("HTTP %d", r.Status)
}
