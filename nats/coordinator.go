package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tccd/tccd"
)

// Coordinator publishes the messages enlisted in tccd transactions: it is
// the coordinator's tccd.MessagePublisher over a Publisher.
//
// A stream drops a repeated message id only within its duplicate window.
// The coordinator repeats a publish whose acknowledgement it did not get —
// at once, or after a restart that may come much later — so a repeat made
// past the window could be stored twice. Before such a repeat, Coordinator
// reads the stream for the message id from the first attempt on, and
// publishes only if it is not there.
type Coordinator struct {
	p *Publisher
	// Margin is how long before the end of the duplicate window a repeat
	// is already checked against the stream (clock skew between tccd and
	// the server, the time a publish takes).
	Margin time.Duration
}

// NewCoordinator returns p as the coordinator's message publisher.
func NewCoordinator(p *Publisher) *Coordinator {
	return &Coordinator{p: p, Margin: 10 * time.Second}
}

var _ tccd.MessagePublisher = (*Coordinator)(nil)

// CheckSubject returns nil if a stream captures subject; an error
// wrapping tccd.ErrSubjectNotCaptured if none does.
func (c *Coordinator) CheckSubject(ctx context.Context, subject string) error {
	err := c.p.CheckSubject(ctx, subject)
	if errors.Is(err, ErrNoStream) {
		return fmt.Errorf("%w: %w", tccd.ErrSubjectNotCaptured, err)
	}
	return err
}

// Publish publishes m with the message id m.ID. A repeat (m.Since set)
// that may fall outside the stream's duplicate window is published only
// if the stream does not hold the message already.
func (c *Coordinator) Publish(ctx context.Context, m tccd.OutgoingMessage) error {
	if !m.Since.IsZero() {
		found, err := c.storedSince(ctx, m)
		if err != nil {
			return fmt.Errorf("nats: look for message %q before publishing it again: %w", m.ID, err)
		}
		if found {
			return nil
		}
	}
	headers := make(map[string][]string, len(m.Headers))
	for k, v := range m.Headers {
		headers[k] = []string{v}
	}
	err := c.p.Publish(ctx, m.Subject, m.ID, m.Data, headers)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNoStream):
		// Nothing answered, and no stream captures the subject: nothing
		// stored the message.
		return fmt.Errorf("%w: %w: %w", tccd.ErrNotSent, tccd.ErrSubjectNotCaptured, err)
	case errors.Is(err, ErrNotConnected), errors.Is(err, ErrInvalid):
		return fmt.Errorf("%w: %w", tccd.ErrNotSent, err)
	}
	return err
}

// storedSince reports whether a repeat of m must not be published: the
// stream holds a message with its id. Within the duplicate window (less
// the margin) it does not look: the stream drops the repeat itself.
func (c *Coordinator) storedSince(ctx context.Context, m tccd.OutgoingMessage) (bool, error) {
	if err := c.p.usable(); err != nil {
		return false, err
	}
	ctx, cancel := c.p.withTimeout(ctx)
	defer cancel()
	name, err := c.p.js.StreamNameBySubject(ctx, m.Subject)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return false, nil // nothing can hold it; Publish will say why
		}
		return false, err
	}
	stream, err := c.p.js.Stream(ctx, name)
	if err != nil {
		return false, err
	}
	window := stream.CachedInfo().Config.Duplicates
	if time.Since(m.Since) < window-c.Margin {
		return false, nil
	}
	// An ordered consumer of the subject from a little before the first
	// attempt: read to the end, looking at the message ids.
	from := m.Since.Add(-c.Margin)
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{m.Subject}, DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime: &from, HeadersOnly: true,
	})
	if err != nil {
		return false, err
	}
	for {
		wait := time.Second
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait <= 0 {
			return false, context.DeadlineExceeded
		}
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(wait))
		if err != nil {
			return false, err
		}
		n := 0
		var pending uint64
		for msg := range batch.Messages() {
			n++
			if msg.Headers().Get(jetstream.MsgIDHeader) == m.ID {
				return true, nil
			}
			if md, err := msg.Metadata(); err == nil {
				pending = md.NumPending
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
			return false, err
		}
		if n == 0 || pending == 0 {
			return false, nil
		}
	}
}
