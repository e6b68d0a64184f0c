package metrics

import (
	"context"
	"time"

	"github.com/tccd/tccd"
)

// Messages is a tccd.MessagePublisher that counts and times the publishes
// of the one it wraps, as participant calls of phase "publish".
type Messages struct {
	tccd.MessagePublisher
	m *Metrics
}

var _ tccd.MessagePublisher = (*Messages)(nil)

// Messages returns next with its publishes counted: give it to the
// coordinator (tccd.Config.Messages).
func (m *Metrics) Messages(next tccd.MessagePublisher) *Messages {
	return &Messages{MessagePublisher: next, m: m}
}

// Publish publishes msg and counts it: ok once the broker stored it,
// else timeout or error.
func (p *Messages) Publish(ctx context.Context, msg tccd.OutgoingMessage) error {
	start := time.Now()
	err := p.MessagePublisher.Publish(ctx, msg)
	outcome := OutcomeOK
	switch {
	case err == nil:
	case timedOut(err):
		outcome = OutcomeTimeout
	default:
		outcome = OutcomeError
	}
	phase := tccd.OpPublish.String()
	p.m.calls.WithLabelValues(phase, outcome).Inc()
	p.m.callTime.WithLabelValues(phase).Observe(time.Since(start).Seconds())
	return err
}
