package metrics

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/tccd/tccd"
)

// Outcome classes of tccd_participant_calls_total. An answer is counted by
// its status class, never by its URI (the label values stay few); a call
// that got no answer is a timeout or an error whatever the participant
// did, since the coordinator cannot know.
const (
	OutcomeTimeout    = "timeout"     // no answer within the call timeout
	OutcomeError      = "error"       // no answer: refused or reset connection, lost reply, name not found, shutdown
	OutcomeNotAllowed = "not_allowed" // not sent: the destination is refused by the allowlist
	OutcomeOther      = "other"       // a status outside 100–599
	OutcomeOK         = "ok"          // a message publish the broker stored
)

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// Outcome returns the outcome class of a participant call's result.
func Outcome(r tccd.CallResult) string {
	switch {
	case r.Status >= 100 && r.Status < 600:
		return statusClasses[r.Status/100-1]
	case r.Status != 0:
		return OutcomeOther
	case r.Permanent:
		return OutcomeNotAllowed
	case timedOut(r.Err):
		return OutcomeTimeout
	}
	return OutcomeError
}

// timedOut reports whether err is a deadline running out.
func timedOut(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Caller is a tccd.Caller that counts and times the calls of the one it
// wraps.
type Caller struct {
	next tccd.Caller
	m    *Metrics
}

var _ tccd.Caller = (*Caller)(nil)

// Caller returns next with its calls counted: give it to the coordinator.
func (m *Metrics) Caller(next tccd.Caller) *Caller { return &Caller{next: next, m: m} }

// Call makes the call and counts it by phase (the call made: confirm is
// PUT, cancel DELETE, compensate POST) and outcome class.
func (c *Caller) Call(ctx context.Context, call tccd.Call) tccd.CallResult {
	start := time.Now()
	r := c.next.Call(ctx, call)
	phase := call.Op.String()
	c.m.calls.WithLabelValues(phase, Outcome(r)).Inc()
	c.m.callTime.WithLabelValues(phase).Observe(time.Since(start).Seconds())
	return r
}
