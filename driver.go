package tccd

import (
	"context"
	"errors"
	"net"
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
	if c.closed || !c.drives(tx) {
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
		if final != nil && final.State.Final() && final.Notification.State != NotificationPending {
			c.released(tx.ID)
		}
		d.final, d.err = final, err
		close(d.done)
		if errors.Is(err, errFenced) && c.owns(tx.ID) {
			// This node holds the lease again (it took the transaction
			// back while this driver ran on an old copy): drive it from
			// the record as it is now.
			c.goTracked(func() { c.resume([]string{tx.ID}) })
		}
	})
	return d
}

// drive settles one decided transaction: confirm, and cancel instead if
// a participant had already cancelled (or refused, or expired) before
// anything was confirmed. Given no fresh copy, it loads the transaction
// first, so a driver started for a transaction that another finished
// meanwhile does nothing; and it then treats every confirm as possibly
// sent already (see runPhase). It returns the final transaction, or nil if
// it stopped early (shutdown, store failure): the transaction is then
// resumed at the next start, or by the re-drive loop.
func (c *Coordinator) drive(id string, tx *Transaction) (*Transaction, error) {
	resumed := tx == nil
	if resumed {
		var err error
		if tx, err = c.store.Get(c.writeCtx(), id); err != nil {
			return nil, err
		}
		if !tx.State.Final() && !c.drives(tx) {
			// Another node took a decision on it, or took it over,
			// since this driver was asked for.
			return nil, errFenced
		}
	}
	var carry []Event // attempts whose results the next write records
	for !tx.State.Final() {
		switch tx.State {
		case StateConfirming:
			if tx.Barrier {
				reason, stopped, err := c.barrierConfirm(tx)
				switch {
				case err != nil:
					return nil, err
				case stopped:
					return nil, errStopped
				case reason != "":
					tx.Reason = reason
					if err := c.transition(c.writeCtx(), tx, StateCancelling, true); err != nil {
						c.log.Error("cannot record the switch to cancel", logTx(id, tx.TraceParent, "err", err)...)
						return nil, err
					}
					continue
				}
				return c.finishConfirm(tx, resumed, nil)
			}
			res := c.runPhase(tx, OpConfirm, resumed)
			if !res.complete {
				return nil, res.stopped()
			}
			res.attempts = append(carry, res.attempts...)
			carry = nil
			if res.aborted {
				if tx.confirmedTCC() > 0 {
					carry = res.attempts
					// A confirm in flight when the phase stopped came
					// back 2xx: confirm the rest after all.
					continue
				}
				// Nothing was confirmed: cancel instead — a new decision,
				// synced, with what is known of each participant.
				tx.Reason = ReasonParticipant
				if err := c.transitionWith(c.writeCtx(), tx, StateCancelling, true, res.attempts); err != nil {
					c.log.Error("cannot record the switch to cancel", logTx(id, tx.TraceParent, "err", err)...)
					return nil, err
				}
				c.log.Info("confirm stopped: a participant had cancelled or refused before any confirmed; cancelling the rest", logTx(id, tx.TraceParent)...)
				continue
			}
			to, reason := confirmPhaseOutcome(tx)
			if to == StateConfirmed {
				return c.finishConfirm(tx, resumed, res.attempts)
			}
			if to == StateCompensating {
				tx.Reason = reason
				// A new decision, synced: from here the confirmed ones are
				// undone, never confirmed further.
				if err := c.transitionWith(c.writeCtx(), tx, StateCompensating, true, res.attempts); err != nil {
					c.log.Error("cannot record the switch to compensate", logTx(id, tx.TraceParent, "err", err)...)
					return nil, err
				}
				c.log.Warn("confirm did not reach every participant: undoing the ones that confirmed", logTx(id, tx.TraceParent, participantSummary(tx)...)...)
				continue
			}
			return c.finish(tx, to, reason, res.attempts)
		case StateCompensating:
			res := c.runPhase(tx, OpCompensate, resumed)
			if !res.complete {
				return nil, res.stopped()
			}
			to, reason := compensatePhaseOutcome(tx)
			return c.finish(tx, to, reason, res.attempts)
		case StateCancelling:
			res := c.runPhase(tx, OpCancel, resumed)
			if !res.complete {
				return nil, res.stopped()
			}
			to, reason := cancelPhaseOutcome(tx)
			return c.finish(tx, to, reason, res.attempts)
		default:
			return tx, nil // active: nothing to drive
		}
	}
	return tx, nil
}

// backoffPolicy is the retry back-off of a configuration.
func backoffPolicy(cfg Config) backoff.Policy {
	return backoff.Policy{Min: cfg.RetryMin, Max: cfg.RetryMax}
}

// errStopped says a driver stopped before the end: the coordinator is
// closing, or this node's lease ran out.
var errStopped = errors.New("stopped: the coordinator is closing, or its lease ran out")

// errFenced says a driver stopped because another node drives its
// transaction now: a write of the driver failed its compare-and-set (the
// other node wrote since: it took the transaction over), or the record
// names another owner.
var errFenced = errors.New("fenced: another node drives the transaction now")

// writeCtx is the context of the engine's own writes: not cancelled when
// Close begins, so that what participants answer within the shutdown
// grace is recorded. (Close waits for every driver before the store is
// closed.)
func (c *Coordinator) writeCtx() context.Context { return context.WithoutCancel(c.ctx) }

// finishConfirm ends a confirm phase in which every participant
// confirmed: it publishes the transaction's messages (only now, when
// nothing can undo the confirm), then records the outcome.
func (c *Coordinator) finishConfirm(tx *Transaction, resumed bool, attempts []Event) (*Transaction, error) {
	to, reason := confirmPhaseOutcome(tx)
	if to == StateConfirmed && tx.Messages() > 0 {
		res := c.runPhase(tx, OpPublish, resumed)
		if !res.complete {
			return nil, res.stopped()
		}
		attempts = append(attempts, res.attempts...)
		to, reason = publishOutcome(tx)
	}
	return c.finish(tx, to, reason, attempts)
}

// publishOutcome is how publishing a confirmed transaction's messages
// ends: confirmed when the broker stored every one; heuristic otherwise —
// in_doubt when whether it kept one is unknown, mixed_outcome when one
// was never published.
func publishOutcome(tx *Transaction) (State, Reason) {
	switch {
	case tx.Count(ParticipantInDoubt) > 0:
		return StateHeuristic, ReasonInDoubt
	case tx.Count(ParticipantFailed) > 0:
		return StateHeuristic, ReasonMixedOutcome
	}
	return StateConfirmed, tx.Reason
}

// confirmPhaseOutcome is how a confirm phase that ran to its end (not
// stopped to cancel) ends: confirmed when every participant confirmed
// (messages, published after it, aside); otherwise heuristic — in_doubt
// when some participant never gave a definite answer within its window,
// mixed_outcome when the participants ended differently.
func confirmPhaseOutcome(tx *Transaction) (State, Reason) {
	switch {
	case tx.Count(ParticipantConfirmed)+tx.pendingMessages() == len(tx.Participants):
		return StateConfirmed, tx.Reason
	case tx.Count(ParticipantInDoubt) > 0:
		return StateHeuristic, ReasonInDoubt
	case canCompensate(tx):
		return StateCompensating, ReasonParticipant
	default:
		return StateHeuristic, ReasonMixedOutcome
	}
}

// canCompensate reports whether every participant that confirmed can be
// undone: a compensate-style one by its DELETE, a TCC one by its
// compensate URI.
func canCompensate(tx *Transaction) bool {
	for i := range tx.Participants {
		p := &tx.Participants[i]
		if p.State == ParticipantConfirmed && !p.compensateStyle() && p.CompensateURI == "" {
			return false
		}
	}
	return true
}

// compensatePhaseOutcome is how undoing the confirmed participants ends:
// compensated when every one was undone; heuristic when one could not be
// (it stays confirmed, the others say what happened to them).
func compensatePhaseOutcome(tx *Transaction) (State, Reason) {
	if tx.Count(ParticipantConfirmed) > 0 || tx.Count(ParticipantInDoubt) > 0 || tx.Count(ParticipantCancelRefused) > 0 {
		return StateHeuristic, ReasonMixedOutcome
	}
	return StateCompensated, tx.Reason
}

// cancelPhaseOutcome is how a cancel phase ends: cancelled when no
// participant can have confirmed; heuristic when one is still in doubt
// after its window (in_doubt), turned out confirmed (mixed_outcome), or
// refused the cancel until its link expired (participant).
func cancelPhaseOutcome(tx *Transaction) (State, Reason) {
	switch {
	case tx.Count(ParticipantInDoubt) > 0:
		return StateHeuristic, ReasonInDoubt
	case tx.Count(ParticipantConfirmed) > 0:
		return StateHeuristic, ReasonMixedOutcome
	case tx.Count(ParticipantCancelRefused) > 0:
		return StateHeuristic, ReasonParticipant
	}
	return StateCancelled, tx.Reason
}

// finish records the final state. The write is not synced: if it is lost,
// recovery sends the same idempotent calls again and reaches the same end.
func (c *Coordinator) finish(tx *Transaction, to State, reason Reason, attempts []Event) (*Transaction, error) {
	tx.Reason = reason
	if to != StateConfirmed {
		// Messages are published only when every other participant
		// confirmed: any still pending now is dropped, never published.
		for i := range tx.Participants {
			if p := &tx.Participants[i]; p.message() && p.State == ParticipantPending {
				p.State = ParticipantCancelled
			}
		}
	}
	if to == StateHeuristic {
		args := append(logTx(tx.ID, tx.TraceParent, "reason", reason), participantSummary(tx)...)
		c.log.Error("heuristic outcome: the participants did not all end the same way", args...)
	}
	if err := c.transitionWith(c.writeCtx(), tx, to, false, attempts); err != nil {
		if ErrorCode(err) == EConflict {
			// Another node took the transaction over and wrote it: its
			// record, not this driver's view, is the outcome.
			c.log.Warn("fenced: another node took this transaction over; its outcome is the one that node records", logTx(tx.ID, tx.TraceParent, "state", to)...)
			return nil, errFenced
		}
		c.log.Error("cannot record outcome", logTx(tx.ID, tx.TraceParent, "state", to, "err", err)...)
		// The participants are settled all the same; report what happened.
		out := tx.Clone()
		out.State = to
		return out, err
	}
	return tx, nil
}

// participantSummary lists, for a log line, how many participants are in
// each state.
func participantSummary(tx *Transaction) []any {
	var out []any
	for _, s := range ParticipantStates {
		if n := tx.Count(s); n > 0 {
			out = append(out, string(s), n)
		}
	}
	return out
}

// event is a worker's report to runPhase: progress (a failed attempt that
// will be retried) or the participant's end in this phase.
type event struct {
	idx   int
	p     Participant
	final bool // the worker is done with this participant (ended or stopped)
	ended bool // final, and the participant reached its end in this phase
	// call is the call of the attempt reported (progress, or ended), and
	// next when the next attempt is due (progress).
	call Op
	next time.Time
}

// phaseResult says how a phase ended.
type phaseResult struct {
	// complete: every participant reached its end in this phase (settled,
	// or in doubt past its window); false when the coordinator closed first.
	complete bool
	// aborted: a confirm phase stopped because a participant had
	// cancelled, expired or refused before any confirmed.
	aborted bool
	// attempts are the attempt events of the participants that reached
	// their end: their results are written by the write that concludes
	// the phase, which publishes them.
	attempts []Event
	// fenced: a progress write failed its compare-and-set — another node
	// took the transaction over — and the phase stopped sending.
	fenced bool
}

// stopped is the error of a phase that did not complete.
func (r phaseResult) stopped() error {
	if r.fenced {
		return errFenced
	}
	return errStopped
}

// runPhase sends op to every unsettled participant of tx in parallel (at
// most MaxParallel at once) and updates tx.Participants in place. A
// confirm phase stops starting and retrying confirms once a participant is
// found cancelled, expired or failed before any confirmed: the
// transaction will be cancelled. maybeSent says confirms may have been
// sent to the pending participants before (the coordinator restarted, or
// another driver stopped): then a participant without a definite answer is
// in doubt even if no call of this phase reached it.
func (c *Coordinator) runPhase(tx *Transaction, op Op, maybeSent bool) phaseResult {
	return c.runPhaseWith(tx, op, maybeSent, nil)
}

// runPhaseWith is runPhase with the barrier keys of a committed round, by
// participant URI: each confirm carries its key.
func (c *Coordinator) runPhaseWith(tx *Transaction, op Op, maybeSent bool, keys map[string]string) phaseResult {
	var pending []int
	for i, p := range tx.Participants {
		switch {
		case p.message():
			switch {
			case p.State != ParticipantPending:
			case op == OpPublish:
				pending = append(pending, i)
			case op != OpConfirm:
				// Cancelled, or undone: the message is dropped, never
				// published.
				tx.Participants[i].State = ParticipantCancelled
			}
		case op == OpPublish:
		case !p.State.Settled() || undo(op, &p):
			pending = append(pending, i)
		}
	}
	if len(pending) == 0 {
		return phaseResult{complete: true}
	}
	events := make(chan event, len(pending))
	ps := &phaseState{op: op, abort: make(chan struct{}), fence: make(chan struct{}), confirmed: tx.confirmedTCC()}
	jobs := make(chan int, len(pending))
	for _, i := range pending {
		jobs <- i
	}
	close(jobs)
	workers := min(len(pending), c.cfg.MaxParallel)
	if op == OpPublish {
		// A transaction's messages go out one at a time, in the order
		// they were enlisted: each is published to its end (stored, or
		// failed for good) before the next is tried.
		workers = 1
	}
	for w := 0; w < workers; w++ {
		c.wg.Add(1)
		c.pool.Go(func() {
			defer c.wg.Done()
			for i := range jobs {
				if op == OpPublish {
					c.publish(tx, i, tx.Participants[i], ps, events)
					continue
				}
				c.settle(tx.ID, tx.TraceParent, op, i, tx.Participants[i], ps, maybeSent, keys[tx.Participants[i].URI], events)
			}
		})
	}
	complete := true
	var ended []Event
	for left := len(pending); left > 0; {
		ev := <-events
		tx.Participants[ev.idx] = ev.p
		if !ev.final {
			if !ps.isFenced() && ErrorCode(c.saveProgress(tx, c.attemptEvent(tx, ev))) == EConflict {
				// Only another node writes a decided transaction while
				// its driver runs here: it took it over. Stop sending.
				c.log.Warn("fenced: another node took this transaction over; this node stops driving it", logTx(tx.ID, tx.TraceParent, "state", tx.State)...)
				ps.stopFenced()
			}
			continue
		}
		left--
		complete = complete && ev.ended
		if ev.ended {
			ended = append(ended, c.attemptEvent(tx, ev))
		}
	}
	ps.mu.Lock()
	aborted, fenced := ps.aborted, ps.fenced
	ps.mu.Unlock()
	if fenced {
		return phaseResult{fenced: true}
	}
	complete = complete || (aborted && c.ctx.Err() == nil)
	if !complete && len(ended) > 0 {
		// Closing: record what the participants answered within the
		// grace; the rest resumes at the next start.
		c.saveProgress(tx, ended...)
		ended = nil
	}
	return phaseResult{complete: complete, aborted: aborted, attempts: ended}
}

// undo reports whether a settled participant still gets a call in a phase
// of op: a confirmed compensate-style participant is undone by its DELETE
// in a cancel; in a compensation every confirmed participant is undone,
// and one that refused to confirm is sent DELETE (its reservation
// released).
func undo(op Op, p *Participant) bool {
	switch op {
	case OpCancel:
		return p.compensateStyle() && p.State == ParticipantConfirmed
	case OpCompensate:
		return p.State == ParticipantConfirmed || (p.State == ParticipantFailed && !p.compensateStyle())
	}
	return false
}

// attemptEvent is the event of the attempt a worker reported.
func (c *Coordinator) attemptEvent(tx *Transaction, ev event) Event {
	return Event{
		Type: EventAttempt, Transaction: tx.ID, Owner: tx.CreatedBy,
		Participant: ev.p.URI, Phase: ev.call, Attempt: ev.p.Attempts,
		Status: ev.p.LastStatus, Error: ev.p.LastError, NextRetry: ev.next,
		ParticipantState: ev.p.State, Elapsed: ev.p.LastDuration,
	}
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
	// fence is closed when the driver finds itself fenced (see
	// runPhaseWith): no worker sends anything after that.
	fenced bool
	fence  chan struct{}
}

func (ps *phaseState) stopFenced() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if !ps.fenced {
		ps.fenced = true
		close(ps.fence)
	}
}

func (ps *phaseState) isFenced() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.fenced
}

func (ps *phaseState) settled(s ParticipantState) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch s {
	case ParticipantConfirmed:
		ps.confirmed++ // only a confirm phase settles participants confirmed
	case ParticipantCancelled, ParticipantExpired, ParticipantFailed:
		if ps.op == OpConfirm && ps.confirmed == 0 && !ps.aborted {
			ps.aborted = true
			close(ps.abort)
		}
	}
}

// saveProgress writes participant progress without syncing, and
// publishes the attempts it records; it is for observers, recovery does
// not need it. It is written during shutdown too. It returns the write's
// error (logged already), EConflict when another node wrote since.
func (c *Coordinator) saveProgress(tx *Transaction, attempts ...Event) error {
	err := c.transitionWith(c.writeCtx(), tx, tx.State, false, attempts)
	if err != nil {
		c.log.Warn("cannot record participant progress", logTx(tx.ID, tx.TraceParent, "err", err)...)
	}
	return err
}

// settle calls one participant until it reaches its end in this phase,
// the phase is aborted, or the coordinator closes. It reports every
// failed attempt, then exactly one final event.
//
// A confirm phase: 2xx is confirmed, 404/410 cancelled, another 4xx
// failed. Without a definite answer the call is retried with back-off
// until the link expires — then the participant has cancelled itself
// (expired) — unless a confirm may have taken effect (CallResult.InDoubt,
// or maybeSent): then it is in doubt, and asked again past the expiry,
// until the expiry plus the in-doubt window.
//
// A cancel phase: 2xx, 404, 405 and 410 are cancelled; a refusal (409,
// say) is retried until the link expires, and then the participant is
// cancel_refused. A participant in doubt is sent DELETE until its link
// expires (2xx, 404 and 410 are definite; 405 says nothing of a confirm
// that may have landed), and from then on the same PUT as before, which
// now cannot make a confirm happen: 2xx is confirmed, 404/410 cancelled.
func (c *Coordinator) settle(id, traceparent string, op Op, idx int, p Participant, ps *phaseState, maybeSent bool, barrier string, events chan<- event) {
	policy := backoffPolicy(c.cfg)
	host := HostOf(p.URI)
	refused := op == OpCancel && (CallResult{Status: p.LastStatus}).Refusal()
	for retry := 0; ; retry++ {
		select {
		case <-ps.abort:
			events <- event{idx: idx, p: p, final: true}
			return
		case <-ps.fence:
			events <- event{idx: idx, p: p, final: true}
			return
		default:
		}
		if c.ctx.Err() != nil || !c.owns(id) {
			// Closing, or this node's lease ran out (another node drives
			// the transaction now, or will): send nothing more.
			events <- event{idx: idx, p: p, final: true}
			return
		}
		start := c.clock.Now()
		call := op
		switch {
		case op == OpCancel && p.State == ParticipantInDoubt && !start.Before(p.Expires):
			call = OpConfirm
		case op == OpCompensate && (p.compensateStyle() || p.State != ParticipantConfirmed):
			call = OpCancel // undone (or released) by its DELETE
		}
		timeout, key := c.cfg.CallTimeout, ""
		if call == OpConfirm && barrier != "" {
			// The participant reports, hears "commit", commits, answers.
			timeout, key = c.cfg.CallTimeout+c.cfg.BarrierWait, barrier
		}
		ctx, cancel := context.WithTimeout(c.callCtx, timeout)
		ctx, end := c.cfg.Tracer.Start(ctx, traceparent, "tccd.participant."+call.String(),
			Attr{"tccd.transaction.id", id}, Attr{"url.full", p.callURI(call)})
		r := c.caller.Call(ctx, Call{Op: call, URI: p.callURI(call), Barrier: key})
		end(r.Err)
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
		if c.verdict(id, traceparent, op, call, &p, r, maybeSent, &refused) {
			ps.settled(p.State)
			events <- event{idx: idx, p: p, final: true, ended: true, call: call}
			return
		}
		// No definite answer: retry, or reach the end of what is asked.
		now := c.clock.Now()
		limit := p.Expires
		if p.State == ParticipantInDoubt || call == OpCompensate {
			// A compensation has no expiry: a confirmed participant stays
			// confirmed until undone. It is retried as long as a confirm
			// in doubt would be.
			limit = p.Expires.Add(c.cfg.InDoubtWindow)
		}
		if !now.Before(limit) {
			c.giveUp(id, traceparent, op, &p, refused)
			ps.settled(p.State)
			events <- event{idx: idx, p: p, final: true, ended: true, call: call}
			return
		}
		// Never wait past the link's expiry, where an answer changes
		// meaning (the participant has cancelled itself unless it
		// confirmed), nor past the limit.
		wait := max(policy.Delay(retry, nil), r.RetryAfter)
		if now.Before(p.Expires) {
			wait = min(wait, p.Expires.Sub(now))
		}
		wait = min(wait, limit.Sub(now))
		c.logRetry(id, traceparent, call, &p, r, wait)
		events <- event{idx: idx, p: p, call: call, next: now.Add(wait)}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
			continue
		case <-ps.abort:
		case <-ps.fence:
		case <-c.ctx.Done():
		}
		t.Stop()
		events <- event{idx: idx, p: p, final: true}
		return
	}
}

// verdict reads the answer r to call (op, or the PUT that asks a
// participant in doubt for its outcome during a cancel phase) and updates
// p. It reports whether p reached its end in this phase.
func (c *Coordinator) verdict(id, traceparent string, op, call Op, p *Participant, r CallResult, maybeSent bool, refused *bool) bool {
	v := Classify(call, r)
	if call == OpCompensate {
		switch v {
		case VerdictDone:
			p.State = ParticipantCompensated
			return true
		case VerdictRetry:
			return false
		}
		// Refused (or gone): it stays confirmed, and the transaction
		// will be heuristic, saying so.
		c.log.Error("participant refused to be undone", logTx(id, traceparent, "host", HostOf(p.URI), "uri", p.CompensateURI, "status", r.Status, "error", p.LastError)...)
		return true
	}
	if call == OpConfirm {
		switch v {
		case VerdictDone:
			p.State = ParticipantConfirmed
			return true
		case VerdictGone:
			p.State = ParticipantCancelled
			return true
		case VerdictPermanent:
			if op == OpConfirm {
				p.State = ParticipantFailed
				c.log.Warn("participant refused to confirm", logTx(id, traceparent, "host", HostOf(p.URI), "uri", p.URI, "status", r.Status, "error", p.LastError)...)
				return true
			}
			// Asked for its outcome, the participant refused: still in doubt.
		case VerdictRetry:
			if op == OpConfirm && p.State == ParticipantPending && (r.InDoubt() || maybeSent) {
				p.State = ParticipantInDoubt
				c.log.Warn("participant in doubt: a confirm may have taken effect without a definite answer", logTx(id, traceparent, "host", HostOf(p.URI), "uri", p.URI, "status", r.Status, "error", p.LastError)...)
			}
		}
		return false
	}
	switch v {
	case VerdictDone:
		if r.Status == 405 && p.State == ParticipantInDoubt {
			return false // cancel not implemented: ask for the outcome after the expiry
		}
		if p.compensateStyle() {
			// Its DELETE undoes what its try did.
			if r.Status == 405 {
				*refused = true // it cannot undo what its try did
				return false
			}
			p.State = ParticipantCompensated
			return true
		}
		p.State = ParticipantCancelled
		return true
	case VerdictPermanent:
		if r.Refusal() {
			*refused = true
			c.log.Warn("participant refused to cancel", logTx(id, traceparent, "host", HostOf(p.URI), "uri", p.URI, "status", r.Status)...)
		}
	}
	return false
}

// giveUp ends a participant whose last chance passed without a definite
// answer: in doubt past its window, it stays in doubt; one that refused to
// cancel is cancel_refused; any other has cancelled itself at its expiry.
func (c *Coordinator) giveUp(id, traceparent string, op Op, p *Participant, refused bool) {
	switch {
	case op == OpCompensate && p.State == ParticipantConfirmed && !p.compensateStyle():
		c.log.Error("participant could not be undone within the in-doubt window: it stays confirmed", logTx(id, traceparent, "host", HostOf(p.URI), "uri", p.CompensateURI, "last_error", p.LastError)...)
	case p.State == ParticipantInDoubt:
		c.log.Error("participant still in doubt at the end of the in-doubt window: its outcome is unknown", logTx(id, traceparent, "host", HostOf(p.URI), "uri", p.URI, "expired", p.Expires, "window", c.cfg.InDoubtWindow, "last_error", p.LastError)...)
	case refused:
		p.State = ParticipantCancelRefused
		c.log.Error("participant refused to cancel until its link expired", logTx(id, traceparent, "host", HostOf(p.URI), "uri", p.URI, "status", p.LastStatus)...)
	default:
		p.State = ParticipantExpired
		c.log.Warn("participant link expired without a definite answer: it has cancelled itself", logTx(id, traceparent, "op", op, "host", HostOf(p.URI), "uri", p.URI, "last_error", p.LastError)...)
	}
}

// logRetry logs a failed attempt that will be retried: at debug level
// every time, and as a warning at most once per host every
// retryWarnEvery, with how many more failed in between.
func (c *Coordinator) logRetry(id, traceparent string, call Op, p *Participant, r CallResult, wait time.Duration) {
	host := HostOf(p.URI)
	msg := "participant call failed; retrying"
	var dns *net.DNSError
	if errors.As(r.Err, &dns) {
		msg = "participant host does not resolve; retrying"
	}
	args := logTx(id, traceparent, "op", call, "host", host, "uri", p.URI, "attempt", p.Attempts, "status", r.Status, "error", p.LastError, "retry_in", wait.Round(time.Millisecond))
	c.log.Debug(msg, args...)
	if n, ok := c.warns.allow(host, c.clock.Now()); ok {
		c.log.Warn(msg, append(args, "failures_since_last_warning", n)...)
	}
}
