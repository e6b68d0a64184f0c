package tccd

import (
	"context"
	"sync"
	"time"

	"github.com/tccd/tccd/internal/backoff"
)

// startDriver returns the driver settling tx, starting one if none runs.
// It returns nil once Close has begun. fresh says tx is what the caller
// has just written; otherwise the driver reloads it first, because a copy
// read earlier may describe a transaction another driver has finished
// since.
func (c *Coordinator) startDriver(tx *Transaction, fresh bool) *driver {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.drivers[tx.ID]; d != nil {
		return d
	}
	if c.closed {
		return nil
	}
	d := &driver{done: make(chan struct{})}
	c.drivers[tx.ID] = d
	var own *Transaction // the driver's own copy: the caller keeps reading tx
	if fresh {
		own = tx.Clone()
	}
	c.wg.Add(1)
	c.pool.Go(func() {
		defer c.wg.Done()
		final, err := c.drive(tx.ID, own)
		c.mu.Lock()
		delete(c.drivers, tx.ID)
		c.mu.Unlock()
		d.final, d.err = final, err
		close(d.done)
	})
	return d
}

// drive settles one decided transaction: confirm, and cancel instead if a
// participant had already cancelled before anything was confirmed. Given
// no fresh copy, it loads the transaction first, so a driver started for a
// transaction that another finished meanwhile does nothing. It returns
// the final transaction, or nil if it stopped early (shutdown, store
// failure): the transaction is then resumed at the next start.
func (c *Coordinator) drive(id string, tx *Transaction) (*Transaction, error) {
	if tx == nil {
		var err error
		if tx, err = c.store.Get(c.ctx, id); err != nil {
			return nil, err
		}
	}
	if tx.State == StateConfirming {
		if !c.runPhase(tx, OpConfirm) {
			return nil, c.ctx.Err()
		}
		confirmed := tx.Count(ParticipantConfirmed)
		switch {
		case confirmed == len(tx.Participants):
			return c.finish(tx, StateConfirmed, tx.Reason)
		case confirmed > 0:
			c.log.Warn("heuristic outcome", "id", id, "confirmed", confirmed, "participants", len(tx.Participants))
			return c.finish(tx, StateHeuristic, ReasonMixedOutcome)
		}
		// Nothing was confirmed: cancel what is left.
		tx.Reason = ReasonParticipant
		if err := c.transition(c.ctx, tx, StateCancelling, true); err != nil {
			c.log.Error("cannot record cancel", "id", id, "err", err)
			return nil, err
		}
	}
	if tx.State == StateCancelling {
		if !c.runPhase(tx, OpCancel) {
			return nil, c.ctx.Err()
		}
		return c.finish(tx, StateCancelled, tx.Reason)
	}
	return tx, nil
}

// finish records the final state. The write is not synced: if it is lost,
// recovery sends the same idempotent calls again and reaches the same end.
func (c *Coordinator) finish(tx *Transaction, to State, reason Reason) (*Transaction, error) {
	tx.Reason = reason
	if err := c.transition(c.ctx, tx, to, false); err != nil {
		c.log.Error("cannot record outcome", "id", tx.ID, "state", to, "err", err)
		// The participants are settled all the same; report what happened.
		out := tx.Clone()
		out.State = to
		return out, err
	}
	return tx, nil
}

// event is a worker's report to runPhase: progress (a failed attempt that
// will be retried) or the participant's settled state.
type event struct {
	idx   int
	p     Participant
	final bool // the worker is done with this participant (settled or stopped)
}

// runPhase sends op to every pending participant of tx in parallel (at most
// MaxParallel at once) and updates tx.Participants in place. A confirm
// phase stops retrying once a participant is found cancelled, expired or
// failed before any confirmed: the transaction will be cancelled. It
// reports false if the coordinator is closing before every worker settled.
func (c *Coordinator) runPhase(tx *Transaction, op Op) bool {
	var pending []int
	for i, p := range tx.Participants {
		if p.State == ParticipantPending {
			pending = append(pending, i)
		}
	}
	if len(pending) == 0 {
		return true
	}
	events := make(chan event, len(pending))
	ps := &phaseState{op: op, abort: make(chan struct{})}
	jobs := make(chan int, len(pending))
	for _, i := range pending {
		jobs <- i
	}
	close(jobs)
	workers := min(len(pending), c.cfg.MaxParallel)
	for w := 0; w < workers; w++ {
		c.wg.Add(1)
		c.pool.Go(func() {
			defer c.wg.Done()
			for i := range jobs {
				c.settle(op, i, tx.Participants[i], ps, events)
			}
		})
	}
	for left := len(pending); left > 0; {
		ev := <-events
		tx.Participants[ev.idx] = ev.p
		if !ev.final {
			if c.ctx.Err() == nil {
				c.saveProgress(tx)
			}
			continue
		}
		left--
	}
	return c.ctx.Err() == nil
}

// phaseState is shared by the workers of one phase. The decision to stop
// confirming — a participant turned out cancelled, expired or failed
// before any confirmed — is taken under its lock by the worker that
// settled that participant, before it reports and before it takes its next
// job, so that no worker starts a confirm after the decision. (A call
// already in flight on another worker is answered as it comes.)
type phaseState struct {
	op        Op
	mu        sync.Mutex
	confirmed int
	aborted   bool
	abort     chan struct{}
}

func (ps *phaseState) settled(s ParticipantState) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch s {
	case ParticipantConfirmed:
		ps.confirmed++
	case ParticipantCancelled, ParticipantExpired, ParticipantFailed:
		if ps.op == OpConfirm && ps.confirmed == 0 && !ps.aborted {
			ps.aborted = true
			close(ps.abort)
		}
	}
}

// saveProgress writes participant progress without syncing; it is for
// observers, recovery does not need it.
func (c *Coordinator) saveProgress(tx *Transaction) {
	if err := c.store.Update(c.ctx, tx, false); err != nil {
		c.log.Warn("cannot record participant progress", "id", tx.ID, "err", err)
	}
}

// settle calls one participant until it gives a definite answer, its link
// expires, the phase is aborted, or the coordinator closes. It reports
// every failed attempt and then exactly one final event: settled, or
// unsettled (still pending) when it stopped early.
func (c *Coordinator) settle(op Op, idx int, p Participant, ps *phaseState, events chan<- event) {
	policy := backoff.Policy{Min: c.cfg.RetryMin, Max: c.cfg.RetryMax}
	host := HostOf(p.URI)
	for retry := 0; ; retry++ {
		select {
		case <-ps.abort:
			events <- event{idx: idx, p: p, final: true}
			return
		default:
		}
		if c.ctx.Err() != nil {
			events <- event{idx: idx, p: p, final: true}
			return
		}
		start := c.clock.Now()
		ctx, cancel := context.WithTimeout(c.callCtx, c.cfg.CallTimeout)
		r := c.caller.Call(ctx, op, p.URI)
		cancel()
		if r.Duration == 0 {
			r.Duration = c.clock.Now().Sub(start)
		}
		if r.Status != 0 {
			c.rtt.observe(host, r.Duration)
		}
		p.Attempts++
		p.LastStatus, p.LastError = r.Status, r.describe()
		p.LastAttemptAt, p.LastDuration = start, r.Duration
		switch Classify(op, r) {
		case VerdictDone:
			if op == OpConfirm {
				p.State = ParticipantConfirmed
			} else {
				p.State = ParticipantCancelled
			}
		case VerdictGone:
			p.State = ParticipantCancelled
		case VerdictPermanent:
			p.State = ParticipantFailed
			c.log.Warn("participant call failed for good", "op", op, "uri", p.URI, "status", r.Status, "error", p.LastError)
		case VerdictRetry:
			now := c.clock.Now()
			if !now.Before(p.Expires) {
				// The participant has cancelled on its own by now.
				p.State = ParticipantExpired
				break
			}
			wait := max(policy.Delay(retry, nil), r.RetryAfter)
			wait = min(wait, p.Expires.Sub(now))
			events <- event{idx: idx, p: p}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
				continue
			case <-ps.abort:
			case <-c.ctx.Done():
			}
			t.Stop()
			events <- event{idx: idx, p: p, final: true}
			return
		}
		ps.settled(p.State)
		events <- event{idx: idx, p: p, final: true}
		return
	}
}
