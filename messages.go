package tccd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MessagePublisher publishes the messages enlisted in transactions to a
// broker that keeps them (NATS JetStream: nats.Coordinator). It may be
// used concurrently.
type MessagePublisher interface {
	// CheckSubject returns nil if the broker keeps what is published to
	// subject, an error wrapping ErrSubjectNotCaptured if nothing would
	// keep it, another error if the broker cannot tell now.
	CheckSubject(ctx context.Context, subject string) error
	// Publish publishes m and returns nil only once the broker has stored
	// it, or had stored it already under the same id. An error wrapping
	// ErrNotSent says the message cannot have reached the broker; any
	// other error leaves that open.
	Publish(ctx context.Context, m OutgoingMessage) error
}

// OutgoingMessage is a message as the coordinator publishes it.
type OutgoingMessage struct {
	ID      string // MessageID: the same at every attempt
	Subject string
	Data    []byte
	Headers map[string]string
	// Since is when the first attempt to publish it started (zero for
	// the first attempt). A broker whose duplicate detection holds for a
	// window of time must not store a repeat made past that window twice:
	// it looks for the message first.
	Since time.Time
}

// Errors of a MessagePublisher.
var (
	ErrSubjectNotCaptured = errors.New("no stream captures the subject")
	ErrNotSent            = errors.New("the message was not sent")
)

// EnlistMessage adds a message to an active transaction: it is published
// when the transaction confirms, after every other participant has
// confirmed, and dropped when it cancels. It returns the transaction and
// the message's participant (whose URI is MessageURI(n)). The message is
// written durably before EnlistMessage returns: a confirm decision taken
// later includes it. Enlisting is not idempotent — a client that lost
// the answer reads the transaction to see whether its message is there.
func (c *Coordinator) EnlistMessage(ctx context.Context, id string, m Message) (*Transaction, *Participant, error) {
	if err := c.enter(); err != nil {
		return nil, nil, err
	}
	defer c.wg.Done()
	if c.cfg.Messages == nil {
		return nil, nil, &Error{Code: ENotConfigured, Message: "this coordinator has no message broker (start it with nats-url)"}
	}
	if err := checkMessage(&m); err != nil {
		return nil, nil, err
	}
	// Refused at enlist, not discovered at confirm: a subject nothing
	// keeps would make a confirmed transaction's message undeliverable.
	// The transaction is checked first, so that an unknown id is a 404
	// whatever the subject.
	if _, err := c.load(ctx, id); err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	err := c.cfg.Messages.CheckSubject(cctx, m.Subject)
	cancel()
	switch {
	case errors.Is(err, ErrSubjectNotCaptured):
		return nil, nil, &Error{Code: ENotConfigured, Field: "subject", Message: fmt.Sprintf("no stream of the broker captures subject %q: messages published to it would not be kept", m.Subject)}
	case err != nil:
		return nil, nil, &Error{Code: EUnavailable, Message: "the message broker cannot be reached to check the subject", Err: err}
	}
	msg := m // never changed from here on
	var uri string
	tx, _, err := c.update(ctx, id, true, func(tx *Transaction) (State, error) {
		if tx.State != StateActive {
			return "", conflict(tx, "cannot enlist a message: the transaction is %s", tx.State)
		}
		if len(tx.Participants) >= c.cfg.MaxLinks {
			return "", Errorf(EInvalid, "too many participants: at most %d", c.cfg.MaxLinks)
		}
		uri = MessageURI(tx.Messages() + 1)
		tx.Participants = append(tx.Participants, Participant{
			URI: uri, Expires: tx.Deadline, Style: StyleMessage, State: ParticipantPending, Message: &msg,
		})
		return StateActive, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return tx, &tx.Participants[tx.Participant(uri)], nil
}

// checkMessage checks an enlisted message.
func checkMessage(m *Message) error {
	if err := checkSubject(m.Subject); err != nil {
		return err
	}
	if len(m.Data) > MaxMessageBytes {
		return &Error{Code: ETooLarge, Field: "data", Message: fmt.Sprintf("message data is %d bytes, at most %d", len(m.Data), MaxMessageBytes)}
	}
	if len(m.Headers) > MaxMessageHeaders {
		return FieldError("headers", "%d headers, at most %d", len(m.Headers), MaxMessageHeaders)
	}
	for k, v := range m.Headers {
		if k == "" || len(k) > 256 || strings.IndexFunc(k, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
			return FieldError("headers", "header name %q is not a token (letters, digits and !#$%%&'*+-.^_`|~)", k)
		}
		if len(k) >= 5 && strings.EqualFold(k[:5], "Nats-") {
			return FieldError("headers", "header %q is reserved: Nats- headers are the broker's (tccd sets Nats-Msg-Id)", k)
		}
		if len(v) > 4096 || strings.ContainsAny(v, "\r\n\x00") {
			return FieldError("headers", "header %q: values are at most 4096 bytes, without CR, LF or NUL", k)
		}
	}
	return nil
}

// checkSubject checks a subject to publish to: dot-separated tokens of
// printable ASCII without spaces, and no wildcard (a message goes to one
// subject).
func checkSubject(s string) error {
	if s == "" {
		return FieldError("subject", "a message needs a subject")
	}
	if len(s) > 256 {
		return FieldError("subject", "subject is %d bytes, at most 256", len(s))
	}
	for _, tok := range strings.Split(s, ".") {
		switch {
		case tok == "":
			return FieldError("subject", "subject %q has an empty token", s)
		case tok == "*" || tok == ">":
			return FieldError("subject", "subject %q has a wildcard: a message is published to one subject", s)
		}
		for _, r := range tok {
			if r <= ' ' || r >= 0x7f {
				return FieldError("subject", "subject %q: tokens are printable ASCII without spaces", s)
			}
		}
	}
	return nil
}

// isTokenChar reports whether r may appear in an HTTP-style header name.
func isTokenChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}

// publish publishes one message participant of a confirmed transaction
// until the broker stores it, the coordinator closes, or the in-doubt
// window after the decision passes, or the driver finds itself fenced.
// It reports like settle.
func (c *Coordinator) publish(tx *Transaction, idx int, p Participant, ps *phaseState, events chan<- event) {
	policy := backoffPolicy(c.cfg)
	limit := tx.DecidedAt.Add(c.cfg.InDoubtWindow)
	out := OutgoingMessage{ID: MessageID(tx.ID, &p), Subject: p.Message.Subject, Data: p.Message.Data, Headers: p.Message.Headers}
	for retry := 0; ; retry++ {
		if c.ctx.Err() != nil || !c.owns(tx.ID) || ps.isFenced() {
			events <- event{idx: idx, p: p, final: true}
			return
		}
		start := c.clock.Now()
		out.Since = p.FirstAttemptAt
		ctx, cancel := context.WithTimeout(c.callCtx, c.cfg.CallTimeout)
		ctx, end := c.cfg.Tracer.Start(ctx, tx.TraceParent, "tccd.message.publish",
			Attr{"tccd.transaction.id", tx.ID}, Attr{"messaging.destination.name", out.Subject}, Attr{"messaging.message.id", out.ID})
		err := c.cfg.Messages.Publish(ctx, out)
		end(err)
		cancel()
		p.Attempts++
		p.LastAttemptAt, p.LastDuration = start, c.clock.Now().Sub(start)
		if p.FirstAttemptAt.IsZero() && !errors.Is(err, ErrNotSent) {
			p.FirstAttemptAt = start
		}
		if err == nil {
			p.State, p.LastError = ParticipantConfirmed, ""
			events <- event{idx: idx, p: p, final: true, ended: true, call: OpPublish}
			return
		}
		p.LastError = err.Error()
		now := c.clock.Now()
		if !now.Before(limit) {
			// Published or not, the coordinator cannot tell — unless no
			// attempt can have reached the broker.
			if p.FirstAttemptAt.IsZero() {
				p.State = ParticipantFailed
				c.log.Error("message never reached the broker within the in-doubt window: it was not published", logTx(tx.ID, tx.TraceParent, "subject", out.Subject, "message_id", out.ID, "window", c.cfg.InDoubtWindow, "last_error", p.LastError)...)
			} else {
				p.State = ParticipantInDoubt
				c.log.Error("message publish unacknowledged at the end of the in-doubt window: whether the broker kept it is unknown", logTx(tx.ID, tx.TraceParent, "subject", out.Subject, "message_id", out.ID, "window", c.cfg.InDoubtWindow, "last_error", p.LastError)...)
			}
			events <- event{idx: idx, p: p, final: true, ended: true, call: OpPublish}
			return
		}
		wait := min(policy.Delay(retry, nil), limit.Sub(now))
		msg := "message publish failed; retrying"
		if errors.Is(err, ErrSubjectNotCaptured) {
			msg = "message publish refused: no stream captures its subject any more; retrying"
		}
		args := logTx(tx.ID, tx.TraceParent, "subject", out.Subject, "message_id", out.ID, "attempt", p.Attempts, "error", p.LastError, "retry_in", wait.Round(time.Millisecond))
		c.log.Debug(msg, args...)
		if n, ok := c.warns.allow("nats:"+out.Subject, now); ok {
			c.log.Warn(msg, append(args, "failures_since_last_warning", n)...)
		}
		events <- event{idx: idx, p: p, call: OpPublish, next: now.Add(wait)}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
			continue
		case <-ps.fence:
		case <-c.ctx.Done():
		}
		t.Stop()
		events <- event{idx: idx, p: p, final: true}
		return
	}
}
