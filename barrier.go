package tccd

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"sync"
	"time"
)

// The all-confirmed barrier (forsrc's design). A barrier-mode
// transaction's confirm runs in rounds: every participant gets its PUT in
// parallel with a fresh key (Tcc-Barrier); it applies the confirm inside a
// local database transaction it keeps open, reports "confirmed" (or
// "failed") for its key, and waits. When every participant of the round has
// reported confirmed within BarrierWait, the coordinator syncs a commit
// record for the round and then publishes "commit" to every key; each
// participant commits and answers its PUT. Otherwise it publishes "abort":
// every participant rolls back, nothing was confirmed, and a later round is
// tried — or, after a permanent failure, the transaction is cancelled.
// After its commit record a round is never aborted.

// BarrierStatus is what a participant reports for its key.
type BarrierStatus string

// Barrier reports.
const (
	BarrierConfirmed BarrierStatus = "confirmed"
	BarrierFailed    BarrierStatus = "failed"
)

// BarrierOutcome is a round's outcome, as told to its participants.
type BarrierOutcome string

// Barrier outcomes.
const (
	BarrierPending BarrierOutcome = "pending"
	BarrierCommit  BarrierOutcome = "commit"
	BarrierAbort   BarrierOutcome = "abort"
)

// BarrierPublisher tells the participants waiting on a key the outcome of
// its round (STOMP subscribers of /topic/tccLink/<key>). Publish must not
// block; a participant that joins later asks Coordinator.BarrierOutcome.
type BarrierPublisher interface {
	PublishOutcome(key string, outcome BarrierOutcome)
}

// DefaultBarrierWait is how long a round waits for every report.
const DefaultBarrierWait = 10 * time.Second

// barrierHub holds the rounds in progress and their keys.
type barrierHub struct {
	mu   sync.Mutex
	keys map[string]*barrierKey
}

type barrierKey struct {
	round  *barrierRound
	uri    string
	status BarrierStatus // "" until reported
	detail string
}

// barrierRound is one round's state at the hub.
type barrierRound struct {
	txID    string
	keys    []string
	reports int
	failed  string // the detail of a failed report, if any
	outcome BarrierOutcome
	// changed is closed (and replaced) at every report and at the
	// outcome: waiters wake and look again.
	changed chan struct{}
}

func (h *barrierHub) init() {
	if h.keys == nil {
		h.keys = make(map[string]*barrierKey)
	}
}

// open registers a round of tx with the keys of r; a committed round
// answers every report "commit" at once.
func (h *barrierHub) open(txID string, r *Round) *barrierRound {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.init()
	br := &barrierRound{txID: txID, outcome: BarrierPending, changed: make(chan struct{})}
	if r.Committed {
		br.outcome = BarrierCommit
	}
	for uri, key := range r.Keys {
		br.keys = append(br.keys, key)
		h.keys[key] = &barrierKey{round: br, uri: uri}
	}
	return br
}

// forget drops the keys of a round.
func (h *barrierHub) forget(br *barrierRound) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range br.keys {
		if e := h.keys[k]; e != nil && e.round == br {
			delete(h.keys, k)
		}
	}
}

// report records a participant's report for key and returns the round's
// outcome as it stands.
func (h *barrierHub) report(key string, st BarrierStatus, detail string) (BarrierOutcome, *barrierRound, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.keys[key]
	if e == nil {
		return "", nil, Errorf(ENotFound, "no barrier round has this key (it ended, or never existed)")
	}
	br := e.round
	if br.outcome != BarrierPending {
		return br.outcome, br, nil // decided: a repeat, or a participant retrying
	}
	if e.status == "" {
		br.reports++
	}
	e.status, e.detail = st, detail
	if st == BarrierFailed && br.failed == "" {
		br.failed = detail
		if br.failed == "" {
			br.failed = "failed"
		}
	}
	close(br.changed)
	br.changed = make(chan struct{})
	return BarrierPending, br, nil
}

// state returns how a round stands: its outcome, whether every key has
// reported confirmed, the failed report's detail, and a channel closed at
// the next change.
func (h *barrierHub) state(br *barrierRound) (outcome BarrierOutcome, allConfirmed bool, failed string, changed <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return br.outcome, br.reports == len(br.keys) && br.failed == "", br.failed, br.changed
}

// decide sets a round's outcome; it returns false if it had one.
func (h *barrierHub) decide(br *barrierRound, o BarrierOutcome) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if br.outcome != BarrierPending {
		return false
	}
	br.outcome = o
	close(br.changed)
	br.changed = make(chan struct{})
	return true
}

// outcome returns the outcome of key's round.
func (h *barrierHub) outcome(key string) (BarrierOutcome, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.keys[key]; e != nil {
		return e.round.outcome, true
	}
	return "", false
}

// newBarrierKey returns a fresh unguessable key: 192 random bits.
func newBarrierKey() string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// BarrierReport records a participant's report for a barrier key and
// returns the round's outcome as it stands: pending, or commit/abort if
// the round is decided (a late or repeated report learns it at once).
// An unknown key is ENotFound.
func (c *Coordinator) BarrierReport(ctx context.Context, key string, st BarrierStatus, detail string) (BarrierOutcome, error) {
	if st != BarrierConfirmed && st != BarrierFailed {
		return "", FieldError("status", "status must be %q or %q, not %q", BarrierConfirmed, BarrierFailed, st)
	}
	if len(detail) > MaxNoteLength {
		return "", FieldError("detail", "detail is longer than %d bytes", MaxNoteLength)
	}
	o, _, err := c.barriers.report(key, st, detail)
	return o, err
}

// BarrierOutcome returns the outcome of key's round (pending while it is
// open); ENotFound for an unknown key.
func (c *Coordinator) BarrierOutcome(key string) (BarrierOutcome, error) {
	o, ok := c.barriers.outcome(key)
	if !ok {
		return "", Errorf(ENotFound, "no barrier round has this key (it ended, or never existed)")
	}
	return o, nil
}

// BarrierWait waits up to wait for the outcome of key's round and returns
// it (pending if the wait ran out first); ENotFound for an unknown key.
func (c *Coordinator) BarrierWait(ctx context.Context, key string, wait time.Duration) (BarrierOutcome, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		c.barriers.mu.Lock()
		e := c.barriers.keys[key]
		var o BarrierOutcome
		var changed chan struct{}
		if e != nil {
			o, changed = e.round.outcome, e.round.changed
		}
		c.barriers.mu.Unlock()
		if e == nil {
			return "", Errorf(ENotFound, "no barrier round has this key (it ended, or never existed)")
		}
		if o != BarrierPending {
			return o, nil
		}
		select {
		case <-changed:
		case <-t.C:
			return BarrierPending, nil
		case <-ctx.Done():
			return BarrierPending, nil
		case <-c.ctx.Done():
			return BarrierPending, nil
		}
	}
}

// publishOutcome tells every key of a round its outcome.
func (c *Coordinator) publishOutcome(br *barrierRound, o BarrierOutcome) {
	if c.cfg.Barriers == nil {
		return
	}
	for _, k := range br.keys {
		c.cfg.Barriers.PublishOutcome(k, o)
	}
}

// barrierCall is the answer to one participant's PUT of a round.
type barrierCall struct {
	idx int
	r   CallResult
	at  time.Time
}

// barrierConfirm runs the confirm phase of a barrier-mode transaction in
// rounds until it is confirmed (or ends otherwise), the transaction must
// be cancelled (cancel: the reason), or the coordinator closes (stopped).
// It updates tx in place and writes its progress; a round's commit record
// is synced before anyone hears "commit".
func (c *Coordinator) barrierConfirm(tx *Transaction) (cancel Reason, stopped bool, err error) {
	policy := backoffPolicy(c.cfg)
	for retry := 0; ; retry++ {
		if c.ctx.Err() != nil {
			return "", true, nil
		}
		if tx.Round != nil && tx.Round.Committed {
			return "", !c.barrierFinish(tx), nil
		}
		if tx.Round != nil {
			// A round from before a restart, never committed: its
			// participants roll back (or already did, when their own wait
			// ran out); tell the ones still waiting.
			br := c.barriers.open(tx.ID, tx.Round)
			if c.barriers.decide(br, BarrierAbort) {
				c.publishOutcome(br, BarrierAbort)
			}
			c.forgetLater(br)
		}
		if c.tooSoon(tx, c.clock.Now()) {
			return ReasonExpiryMargin, false, nil
		}
		res := c.barrierRound(tx)
		switch {
		case res.err != nil:
			return "", true, res.err
		case res.stopped:
			return "", true, nil
		case res.committed:
			continue // the second half: every PUT answered 2xx
		case res.permanent != "":
			c.log.Info("barrier round failed for good: cancelling", logTx(tx.ID, tx.TraceParent, "round", tx.Round.N, "why", res.permanent)...)
			return ReasonParticipant, false, nil
		}
		wait := policy.Delay(retry, nil)
		c.log.Info("barrier round aborted; trying another", logTx(tx.ID, tx.TraceParent, "round", tx.Round.N, "why", res.why, "retry_in", wait.Round(time.Millisecond))...)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return "", true, nil
		}
	}
}

type roundResult struct {
	committed bool
	permanent string // why the round failed for good ("" if it may be retried)
	why       string // why it was aborted
	stopped   bool
	err       error
}

// barrierRound runs one round: fresh keys, the PUTs in parallel, the wait
// for every report, then commit (synced first) or abort.
func (c *Coordinator) barrierRound(tx *Transaction) roundResult {
	n := 1
	if tx.Round != nil {
		n = tx.Round.N + 1
	}
	round := &Round{N: n, Keys: make(map[string]string)}
	var pending []int
	for i := range tx.Participants {
		p := &tx.Participants[i]
		if p.State == ParticipantConfirmed || p.message() {
			continue // a participant that answered 2xx in an earlier round; a message, published after the confirm phase
		}
		p.State = ParticipantPending
		round.Keys[p.URI] = newBarrierKey()
		pending = append(pending, i)
	}
	tx.Round = round
	// Synced before any PUT: a restart, after a crash too, then knows the
	// keys of the round it must abort, and numbers the next one after it.
	if err := c.transition(c.writeCtx(), tx, tx.State, true); err != nil {
		c.log.Warn("cannot record the barrier round", logTx(tx.ID, tx.TraceParent, "round", round.N, "err", err)...)
	}
	br := c.barriers.open(tx.ID, round)
	defer c.forgetLater(br)

	answers := make(chan barrierCall, len(pending))
	callCtx, cancelCalls := context.WithCancel(c.callCtx)
	defer cancelCalls()
	for _, i := range pending {
		p := tx.Participants[i]
		c.wg.Add(1)
		c.pool.Go(func() {
			defer c.wg.Done()
			ctx, cancel := context.WithTimeout(callCtx, c.cfg.BarrierWait+c.cfg.CallTimeout)
			defer cancel()
			start := c.clock.Now()
			ctx, end := c.cfg.Tracer.Start(ctx, tx.TraceParent, "tccd.participant.confirm",
				Attr{"tccd.transaction.id", tx.ID}, Attr{"url.full", p.callURI(OpConfirm)}, Attr{"tccd.barrier.round", strconv.Itoa(round.N)})
			r := c.caller.Call(ctx, Call{Op: OpConfirm, URI: p.callURI(OpConfirm), Barrier: round.Keys[p.URI]})
			end(r.Err)
			if r.Duration == 0 {
				r.Duration = c.clock.Now().Sub(start)
			}
			answers <- barrierCall{idx: i, r: r, at: start}
		})
	}
	record := func(a barrierCall) {
		p := &tx.Participants[a.idx]
		p.Attempts++
		p.LastStatus, p.LastError = a.r.Status, a.r.describe()
		p.LastAttemptAt, p.LastDuration = a.at, a.r.Duration
	}
	deadline := time.NewTimer(c.cfg.BarrierWait)
	defer deadline.Stop()
	left := len(pending)
	var why, permanent string
	decided := false
	for !decided {
		outcome, all, failed, changed := c.barriers.state(br)
		switch {
		case outcome != BarrierPending:
			decided = true
			continue
		case failed != "":
			why, permanent = "a participant reported failure: "+failed, "a participant reported failure: "+failed
			decided = true
			continue
		case all:
			decided = true
			continue
		}
		select {
		case <-changed:
		case a := <-answers:
			left--
			record(a)
			switch v := Classify(OpConfirm, a.r); {
			case v == VerdictDone:
				// Answered before the round decided: it did not wait for
				// the barrier; it is confirmed all the same.
				tx.Participants[a.idx].State = ParticipantConfirmed
				c.barriers.report(round.Keys[tx.Participants[a.idx].URI], BarrierConfirmed, "")
			case v == VerdictGone:
				tx.Participants[a.idx].State = ParticipantCancelled
				why, permanent = "a participant had cancelled (404/410)", "a participant had cancelled (404/410)"
				decided = true
			case v == VerdictPermanent:
				tx.Participants[a.idx].State = ParticipantFailed
				why, permanent = "a participant refused to confirm: "+a.r.describe(), "a participant refused to confirm: "+a.r.describe()
				decided = true
			default:
				why = "a participant answered before reporting: " + a.r.describe()
				decided = true
			}
		case <-deadline.C:
			why = "not every participant reported within the barrier wait"
			decided = true
		case <-c.ctx.Done():
			why = "the coordinator is closing"
			decided = true
		}
	}
	_, all, _, _ := c.barriers.state(br)
	if all && permanent == "" && why == "" && c.ctx.Err() == nil {
		// The commit record, synced before anyone hears "commit": from
		// here the round is never aborted.
		tx.Round.Committed = true
		if err := c.transition(c.writeCtx(), tx, StateConfirming, true); err != nil {
			tx.Round.Committed = false
			why = "cannot record the commit: " + err.Error()
		} else {
			c.barriers.decide(br, BarrierCommit)
			c.publishOutcome(br, BarrierCommit)
			// The PUTs of this round now end with 2xx (or fail, to be
			// asked again with the same key).
			for ; left > 0; left-- {
				a := <-answers
				record(a)
				if Classify(OpConfirm, a.r) == VerdictDone {
					tx.Participants[a.idx].State = ParticipantConfirmed
				}
			}
			c.saveProgress(tx)
			return roundResult{committed: true}
		}
	}
	c.barriers.decide(br, BarrierAbort)
	c.publishOutcome(br, BarrierAbort)
	// The participants roll back and answer their PUTs with an error;
	// wait for them (each call is bounded by its timeout).
	for ; left > 0; left-- {
		a := <-answers
		record(a)
		switch Classify(OpConfirm, a.r) {
		case VerdictDone:
			tx.Participants[a.idx].State = ParticipantConfirmed
		case VerdictGone:
			tx.Participants[a.idx].State = ParticipantCancelled
			permanent = "a participant had cancelled (404/410)"
		}
	}
	c.saveProgress(tx)
	if c.ctx.Err() != nil {
		return roundResult{stopped: true, why: why}
	}
	return roundResult{permanent: permanent, why: why}
}

// barrierFinish is the second half of a committed round: every
// participant not yet confirmed is asked again with its key (it reports,
// and hears "commit" at once) until it answers 2xx. It reports false if
// the coordinator closed first.
func (c *Coordinator) barrierFinish(tx *Transaction) bool {
	br := c.barriers.open(tx.ID, tx.Round)
	defer c.forgetLater(br)
	c.publishOutcome(br, BarrierCommit)
	res := c.runPhaseWith(tx, OpConfirm, true, tx.Round.Keys)
	return res.complete
}

// forgetLater drops a round's keys after a while: a participant that
// reports or subscribes late still learns the outcome.
func (c *Coordinator) forgetLater(br *barrierRound) {
	time.AfterFunc(c.cfg.BarrierWait+c.cfg.CallTimeout, func() { c.barriers.forget(br) })
}
