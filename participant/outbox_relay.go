package participant

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// The relay: it claims the due messages of one reservation at a time with
// a lease (a guarded UPDATE, so that of several relays one wins), publishes
// them in order, and marks each published after the broker's
// acknowledgement. Nothing is held open while it talks to the broker: no
// transaction, no row lock. Several relays — one per replica, or a
// process of its own — are safe together: in the normal case each message
// is published by one of them; when a lease runs out under a relay that
// is slow or dead, another publishes again, and the broker drops the
// repeat by its message id.

// errNoPublisher: the outbox was made without a Publisher.
var errNoPublisher = errors.New("participant: outbox: no Publisher: this outbox stores messages but does not relay them")

// MessageState is the state of a message in the outbox table.
type MessageState string

// Message states.
const (
	// MessageHeld: its reservation is tried; it is published if the
	// reservation confirms, deleted if it is cancelled or expires.
	MessageHeld MessageState = msgHeld
	// MessageDue: its reservation confirmed; the relay publishes it.
	MessageDue MessageState = msgDue
	// MessagePublished: the broker acknowledged it.
	MessagePublished MessageState = msgPublished
)

// OutboxMessage is a row of the outbox table, for diagnosis and tests.
type OutboxMessage struct {
	// ID is the message id the relay publishes it with.
	ID      string
	N       int
	State   MessageState
	Subject string
	Headers map[string][]string
	Data    []byte
	// Attempts counts the failed publishes; LastError is the last one's.
	Attempts  int
	LastError string
	// Created, Due, Next and Published are the times it was stored,
	// became due, may next be tried, and was acknowledged (zero: not
	// yet).
	Created, Due, Next, Published time.Time
}

// MessageID is the id the relay publishes message n of reservation id
// with: "<IDPrefix><id>/<n>".
func (o *Outbox) MessageID(id string, n int) string {
	return o.idPrefix + id + "/" + strconv.Itoa(n)
}

// Messages returns the messages of reservation id that the outbox table
// holds, in order.
func (o *Outbox) Messages(ctx context.Context, id string) ([]OutboxMessage, error) {
	rows, err := o.db.QueryContext(ctx, o.q.messages, id)
	if err != nil {
		return nil, fmt.Errorf("participant: outbox: messages of %s: %w", id, err)
	}
	defer rows.Close()
	var out []OutboxMessage
	for rows.Next() {
		var m OutboxMessage
		var state string
		var headers, lastErr sql.NullString
		var created, due, next, published int64
		if err := rows.Scan(&m.N, &state, &m.Subject, &headers, &m.Data, &created, &due, &next, &m.Attempts, &lastErr, &published); err != nil {
			return nil, fmt.Errorf("participant: outbox: messages of %s: %w", id, err)
		}
		m.ID, m.State, m.LastError = o.MessageID(id, m.N), MessageState(state), lastErr.String
		if m.Headers, err = decodeHeaders(headers); err != nil {
			return nil, fmt.Errorf("participant: outbox: message %s: %w", m.ID, err)
		}
		m.Created, m.Due, m.Next, m.Published = msTime(created), msTime(due), msTime(next), msTime(published)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("participant: outbox: messages of %s: %w", id, err)
	}
	return out, nil
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func decodeHeaders(s sql.NullString) (map[string][]string, error) {
	if !s.Valid || s.String == "" {
		return nil, nil
	}
	var h map[string][]string
	if err := json.Unmarshal([]byte(s.String), &h); err != nil {
		return nil, fmt.Errorf("headers: %w", err)
	}
	return h, nil
}

// Relay makes one pass of the relay: it publishes every due message whose
// back-off has passed and that no other relay holds, reservation by
// reservation, each reservation's in order, and returns how many it
// published. A failed publish puts that message and the reservation's
// later ones off (exponential back-off from OutboxConfig.RetryMin to
// RetryMax) and is reported in err; the other reservations are still
// relayed. Run calls Relay periodically; tests and cron-style deployments
// may call it directly.
func (o *Outbox) Relay(ctx context.Context) (int, error) {
	if o.pub == nil {
		return 0, errNoPublisher
	}
	published, failed := 0, 0
	var errs []error
	for {
		now := o.now().UnixMilli()
		ids, rows, err := o.candidates(ctx, now)
		if err != nil {
			errs = append(errs, err)
			break
		}
		progress := false
		for _, id := range ids {
			n, tried, err := o.relayReservation(ctx, id)
			published += n
			progress = progress || tried
			if err != nil {
				if ctx.Err() != nil {
					return published, errors.Join(append(errs, ctx.Err())...)
				}
				if failed++; failed <= maxSweepErrors {
					errs = append(errs, err)
				}
			}
		}
		// A full page may hide more. Every reservation claimed is out of
		// the next page (published, put off, or left for the next pass
		// when its lease ran short), so the loop ends.
		if rows < o.batch || !progress {
			break
		}
	}
	if failed > maxSweepErrors {
		errs = append(errs, fmt.Errorf("participant: outbox: %d more reservations' messages failed to publish", failed-maxSweepErrors))
	}
	return published, errors.Join(errs...)
}

// candidates reads a page of due messages and returns their reservations,
// each once, in the order of their first message, and the page's size.
func (o *Outbox) candidates(ctx context.Context, now int64) ([]string, int, error) {
	rows, err := o.db.QueryContext(ctx, o.q.candidates, now, now)
	if err != nil {
		return nil, 0, fmt.Errorf("participant: outbox: find due messages: %w", err)
	}
	defer rows.Close()
	var ids []string
	n := 0
	seen := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, 0, fmt.Errorf("participant: outbox: find due messages: %w", err)
		}
		n++
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("participant: outbox: find due messages: %w", err)
	}
	return ids, n, nil
}

// claimedMsg is a message this relay holds the lease of.
type claimedMsg struct {
	n        int
	subject  string
	headers  map[string][]string
	data     []byte
	attempts int
}

// relayReservation claims reservation id's due messages and publishes
// them in order. It reports how many it published and whether it claimed
// any (false: another relay holds them, or none is due any more).
func (o *Outbox) relayReservation(ctx context.Context, id string) (published int, claimed bool, err error) {
	token := o.newToken()
	now := o.now().UnixMilli()
	leaseUntil := now + o.lease.Milliseconds()
	res, err := o.db.ExecContext(ctx, o.q.claim, token, leaseUntil, id, now, now)
	if err != nil {
		return 0, false, fmt.Errorf("participant: outbox: claim the messages of %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return 0, false, fmt.Errorf("participant: outbox: claim the messages of %s: %w", id, err)
	} else if n == 0 {
		return 0, false, nil
	}
	// Whatever happens below, what is still claimed is released for the
	// next pass (a dead relay's lease runs out instead). After a failure
	// the release already put the rest off.
	released := false
	defer func() {
		if released {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, rerr := o.db.ExecContext(rctx, o.q.release, o.now().UnixMilli(), id, token); rerr != nil {
			err = errors.Join(err, fmt.Errorf("participant: outbox: release the messages of %s: %w", id, rerr))
		}
	}()
	msgs, err := o.claimedMessages(ctx, id, token)
	if err != nil {
		return 0, true, err
	}
	for _, m := range msgs {
		// Never publish past the lease: another relay may take the
		// messages over once it ends.
		if o.now().UnixMilli()+o.timeout.Milliseconds() >= leaseUntil {
			break
		}
		msgID := o.MessageID(id, m.n)
		pctx, cancel := context.WithTimeout(ctx, o.timeout)
		perr := o.pub.Publish(pctx, m.subject, msgID, m.data, m.headers)
		cancel()
		if perr != nil {
			if ctx.Err() != nil {
				return published, true, ctx.Err()
			}
			released = true
			return published, true, o.putOff(ctx, id, token, m, msgID, perr)
		}
		if _, err := o.db.ExecContext(ctx, o.q.published, o.now().UnixMilli(), id, m.n); err != nil {
			// Published but not marked: it stays due under this lease,
			// and is published again once the lease runs out; the
			// broker drops the repeat.
			released = true
			return published, true, fmt.Errorf("participant: outbox: mark %s published: %w", msgID, err)
		}
		published++
	}
	return published, true, nil
}

// putOff records a failed publish of m and puts it and the reservation's
// later messages off by the back-off.
func (o *Outbox) putOff(ctx context.Context, id, token string, m claimedMsg, msgID string, perr error) error {
	permanent := false
	var t interface{ Temporary() bool }
	if errors.As(perr, &t) && !t.Temporary() {
		permanent = true
	}
	delay := o.backoff(m.attempts, permanent)
	next := o.now().Add(delay).UnixMilli()
	text := perr.Error()
	if len(text) > 1000 {
		text = text[:1000]
	}
	fail := fmt.Errorf("participant: outbox: publish %s to %s (attempt %d; next in %v): %w", msgID, m.subject, m.attempts+1, delay.Round(time.Millisecond), perr)
	if permanent {
		// Retried all the same: the operator can cure it (create the
		// stream), and a confirmed reservation's message must not be
		// lost. Say so loudly.
		o.log.Error("participant: outbox: the broker refuses a confirmed message; it is retried until an operator fixes the cause",
			"table", o.outbox, "msg_id", msgID, "subject", m.subject, "attempts", m.attempts+1, "err", perr)
	}
	if _, err := o.db.ExecContext(ctx, o.q.failed, next, text, id, m.n, token); err != nil {
		return errors.Join(fail, fmt.Errorf("participant: outbox: record the failure of %s: %w", msgID, err))
	}
	if _, err := o.db.ExecContext(ctx, o.q.release, next, id, token); err != nil {
		return errors.Join(fail, fmt.Errorf("participant: outbox: put off the messages of %s: %w", id, err))
	}
	return fail
}

func (o *Outbox) claimedMessages(ctx context.Context, id, token string) ([]claimedMsg, error) {
	rows, err := o.db.QueryContext(ctx, o.q.claimed, id, token)
	if err != nil {
		return nil, fmt.Errorf("participant: outbox: read the messages of %s: %w", id, err)
	}
	defer rows.Close()
	var msgs []claimedMsg
	for rows.Next() {
		var m claimedMsg
		var headers sql.NullString
		if err := rows.Scan(&m.n, &m.subject, &headers, &m.data, &m.attempts); err != nil {
			return nil, fmt.Errorf("participant: outbox: read the messages of %s: %w", id, err)
		}
		if m.headers, err = decodeHeaders(headers); err != nil {
			return nil, fmt.Errorf("participant: outbox: message %s: %w", o.MessageID(id, m.n), err)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("participant: outbox: read the messages of %s: %w", id, err)
	}
	return msgs, nil
}

// backoff is the wait after a message's failures-th failure (from 0):
// RetryMin doubled per earlier failure, at most RetryMax, with the upper
// half jittered so that relays do not retry in step; RetryMax at once for
// a refusal that needs an operator.
func (o *Outbox) backoff(failures int, permanent bool) time.Duration {
	d := o.retryMin
	for i := 0; i < failures && d < o.retryMax; i++ {
		d *= 2
	}
	if permanent || d > o.retryMax {
		d = o.retryMax
	}
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// newToken returns a lease token unique to one claim: the relay's owner
// id and a counter.
func (o *Outbox) newToken() string {
	o.seqMu.Lock()
	defer o.seqMu.Unlock()
	o.claimSeq++
	return o.owner + "-" + strconv.FormatUint(o.claimSeq, 10)
}

// Cleanup deletes the published messages acknowledged more than olderThan
// ago and returns how many. They serve diagnosis only: a published message
// is never published again, whether its row is there or not.
func (o *Outbox) Cleanup(ctx context.Context, olderThan time.Duration) (int64, error) {
	if olderThan < 0 {
		return 0, fmt.Errorf("participant: outbox: cleanup: negative age %v", olderThan)
	}
	res, err := o.db.ExecContext(ctx, o.q.cleanup, o.now().Add(-olderThan).UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("participant: outbox: cleanup: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("participant: outbox: cleanup: %w", err)
	}
	return n, nil
}

// Run is the relay: it calls Relay now and every OutboxConfig.RelayEvery,
// and about once a minute deletes the published rows older than
// KeepPublished, logging what it does, until ctx ends. Participant.Run
// runs it for the participant's outbox; run it yourself for an outbox in
// a process of its own (several are safe). It returns at once with an
// error if the outbox has no Publisher, and nil when ctx ends.
func (o *Outbox) Run(ctx context.Context) error {
	if o.pub == nil {
		return errNoPublisher
	}
	ticker := time.NewTicker(o.every)
	defer ticker.Stop()
	var lastCleanup time.Time
	for {
		n, err := o.Relay(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			o.log.Warn("participant: outbox relay: messages not published yet", "table", o.outbox, "published", n, "err", err)
		} else if n > 0 {
			o.log.Debug("participant: outbox relay: messages published", "table", o.outbox, "published", n)
		}
		if o.keep > 0 && time.Since(lastCleanup) >= cleanupEvery {
			lastCleanup = time.Now()
			if n, err := o.Cleanup(ctx, o.keep); err != nil && ctx.Err() == nil {
				o.log.Warn("participant: outbox cleanup failed", "table", o.outbox, "err", err)
			} else if n > 0 {
				o.log.Info("participant: published outbox rows deleted", "table", o.outbox, "deleted", n)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// startRelay runs p's outbox relay, if it has one that publishes, until
// ctx ends; the returned function waits for it to stop.
func (p *Participant) startRelay(ctx context.Context) (wait func()) {
	if p.outbox == nil || p.outbox.pub == nil {
		return func() {}
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.outbox.Run(ctx) })
	return wg.Wait
}
