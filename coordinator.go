package tccd

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
)

// Coordinator is the TCC engine: it records decisions in a Store and drives
// participants to the decided outcome through a Caller. Lifecycle:
// NewCoordinator → Open (recovery) → … → Close.
type Coordinator struct {
	cfg    Config
	store  Store
	caller Caller
	clock  Clock
	log    *slog.Logger
	rtt    *rttTable
	links  LinkChecker

	// ctx is cancelled when Close starts: no new attempt, retry or wait
	// begins after that. callCtx is cancelled when the shutdown grace has
	// passed: in-flight participant calls are abandoned.
	ctx        context.Context
	cancel     context.CancelFunc
	callCtx    context.Context
	callCancel context.CancelFunc

	wg      sync.WaitGroup // every goroutine and call in progress
	mu      sync.Mutex
	closed  bool
	drivers map[string]*driver
	timers  map[string]*time.Timer
	// delivering holds the transactions whose notification is being
	// delivered.
	delivering map[string]bool
	ready      atomic.Bool
	pool       *workers // runs drivers and participant call loops
	warns      warnLimiter
	events     Events
	barriers   barrierHub
	// leases are this node's (with an expiring Leaser: expiring is set).
	leases   leaseTable
	expiring bool
	// order is held across a write of a transaction and the publication
	// of its events: the events of one transaction go out in the order
	// of its writes.
	order keyedMutex
}

// driver is the one goroutine settling a decided transaction.
type driver struct {
	done  chan struct{}
	final *Transaction // set before done is closed
	err   error
}

// NewCoordinator returns a coordinator over store and caller. A nil clock
// means the system clock; a nil logger discards.
func NewCoordinator(cfg Config, store Store, caller Caller, clock Clock, log *slog.Logger) *Coordinator {
	if clock == nil {
		clock = SystemClock{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	links := cfg.Links
	if links == nil {
		links = (*Allowlist)(nil)
	}
	events := cfg.Events
	if events == nil {
		events = NewBroker(0, 0, clock)
	}
	ctx, cancel := context.WithCancel(context.Background())
	callCtx, callCancel := context.WithCancel(context.Background())
	cfg = cfg.WithDefaults()
	if cfg.Leaser == nil {
		cfg.Leaser = StaticLeaser{Node: cfg.NodeID}
	}
	if cfg.Tracer == nil {
		cfg.Tracer = NopTracer{}
	}
	return &Coordinator{
		events: events, expiring: cfg.Leaser.TTL() > 0,
		cfg: cfg, store: store, caller: caller, clock: clock, log: log,
		rtt: newRTTTable(), links: links, ctx: ctx, cancel: cancel, callCtx: callCtx, callCancel: callCancel,
		drivers: make(map[string]*driver), timers: make(map[string]*time.Timer), delivering: make(map[string]bool),
		pool: newWorkers(10 * time.Second),
	}
}

// Config returns the effective configuration (defaults applied).
func (c *Coordinator) Config() Config { return c.cfg }

// Events returns where the coordinator publishes its changes.
func (c *Coordinator) Events() Events { return c.events }

// Ready reports whether recovery has finished and the coordinator serves.
func (c *Coordinator) Ready() bool { return c.ready.Load() }

// Open runs recovery: every confirming transaction resumes confirming,
// every cancelling one resumes cancelling, every active one past its
// timeout is cancelled, and the others get their timers back. It returns
// once all of them are scheduled (not settled), and starts the purge loop.
func (c *Coordinator) Open(ctx context.Context) error {
	if err := c.cfg.Validate(); err != nil {
		return err
	}
	var resume, notify []string
	active := 0
	now := c.clock.Now()
	err := c.store.Unfinished(ctx, func(tx *Transaction) error {
		if c.expiring {
			if tx.Owner != c.cfg.NodeID {
				return nil // another node's; taken over if its lease expires
			}
			c.held(tx) // a renewal says whether this node still owns it
		}
		switch {
		case tx.State == StateActive:
			active++
			c.armTimer(tx.ID, tx.Deadline.Sub(now))
		case !tx.State.Final():
			resume = append(resume, tx.ID)
		case tx.Notification.State == NotificationPending:
			notify = append(notify, tx.ID)
		}
		return nil
	})
	if err != nil {
		return storeError(err)
	}
	// Counted, not len(c.timers): the timers of overdue transactions are
	// already firing and changing the map.
	c.log.Info("recovery scheduled", "resume", len(resume), "active", active, "notifications", len(notify))
	c.goTracked(func() { c.resume(resume) })
	for _, id := range notify {
		c.startDelivery(id)
	}
	c.goTracked(c.purgeLoop)
	c.goTracked(c.redriveLoop)
	c.goTracked(c.leaseLoop)
	c.ready.Store(true)
	return nil
}

// redriveLoop periodically drives decided transactions that no driver is
// settling: a driver stops early when the store refuses a write (a full
// disk, say), leaving its transaction decided but unfinished; this picks
// it up once the store accepts writes again, without waiting for a restart.
// It also cancels active transactions past their timeout with no timer
// armed: their timeout fired while the store refused the cancel.
func (c *Coordinator) redriveLoop() {
	t := time.NewTicker(c.cfg.RedriveInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		var ids, expired []string
		now := c.clock.Now()
		err := c.store.Unfinished(c.ctx, func(tx *Transaction) error {
			if !c.owns(tx.ID) || (c.expiring && tx.Owner != c.cfg.NodeID) {
				return nil // another node drives it
			}
			if tx.State.Final() && tx.Notification.State == NotificationPending {
				c.startDelivery(tx.ID) // a no-op when one runs
				return nil
			}
			if tx.State == StateActive {
				// Its timeout passed but no timer is armed: the cancel
				// could not be recorded (the store refused the write).
				c.mu.Lock()
				armed := c.timers[tx.ID] != nil
				c.mu.Unlock()
				if !armed && !tx.Deadline.After(now) {
					expired = append(expired, tx.ID)
				}
				return nil
			}
			if tx.State.Final() {
				return nil
			}
			c.mu.Lock()
			running := c.drivers[tx.ID] != nil
			c.mu.Unlock()
			if !running {
				ids = append(ids, tx.ID)
			}
			return nil
		})
		if err != nil {
			if c.ctx.Err() == nil {
				c.log.Warn("redrive: cannot scan unfinished transactions", "err", err)
			}
			continue
		}
		if len(expired) > 0 {
			c.log.Info("cancelling timed-out transactions whose cancel was not recorded", "count", len(expired))
			for _, id := range expired {
				c.expire(id)
			}
		}
		if len(ids) > 0 {
			c.log.Info("redriving decided transactions", "count", len(ids))
			c.resume(ids)
		}
	}
}

// resume drives recovered transactions, at most RecoveryDrives at once.
// An active one keeps its timer; a final one gets its pending
// notification delivered.
func (c *Coordinator) resume(ids []string) {
	slots := make(chan struct{}, c.cfg.RecoveryDrives)
	for _, id := range ids {
		select {
		case slots <- struct{}{}:
		case <-c.ctx.Done():
			return
		}
		tx, err := c.store.Get(c.ctx, id)
		if err != nil {
			<-slots
			if ErrorCode(err) != ENotFound {
				c.log.Error("recovery: cannot load transaction", "id", id, "err", err)
			}
			continue
		}
		if tx.State == StateActive || tx.State.Final() {
			<-slots
			if tx.State.Final() && tx.Notification.State == NotificationPending && c.drives(tx) {
				c.startDelivery(id)
			}
			continue
		}
		d := c.startDriver(tx, false)
		if d == nil {
			<-slots
			continue
		}
		c.goTracked(func() {
			select {
			case <-d.done:
			case <-c.ctx.Done():
			}
			<-slots
		})
	}
}

// Close stops the coordinator: timers stop, no retry starts, in-flight
// participant calls get up to ShutdownGrace to finish, then every goroutine
// has ended. Unsettled transactions are resumed by the next Open. Close
// does not close the store.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for id, t := range c.timers {
		t.Stop()
		delete(c.timers, id)
	}
	c.mu.Unlock()
	c.ready.Store(false)
	c.cancel()
	hard := time.AfterFunc(c.cfg.ShutdownGrace, c.callCancel)
	c.wg.Wait()
	hard.Stop()
	c.callCancel()
	c.pool.Close()
	return nil
}

// enter registers a request in progress; it fails once Close has begun.
func (c *Coordinator) enter() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return Errorf(EUnavailable, "the coordinator is shutting down")
	}
	c.wg.Add(1)
	return nil
}

// goTracked runs fn in a goroutine that Close waits for; not after Close.
func (c *Coordinator) goTracked(fn func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
	return true
}

// BeginRequest describes a new registered transaction.
type BeginRequest struct {
	Timeout      time.Duration // 0: the configured default
	Name         string
	Labels       map[string]string
	Participants []Link
	// Notify is a URL told of the outcome (see Notifier); "" for none.
	Notify string
	// Barrier makes the confirm run in barrier rounds (see barrier.go).
	Barrier bool
	// Protocol is the API the transaction was created through; "" is
	// ProtocolNative.
	Protocol Protocol
}

// Begin creates an active transaction. Begin is not synced: if the
// coordinator crashes before the decision, the transaction is cancelled
// by presumption (its participants expire). Every decision, to confirm or
// to cancel, is synced before any participant hears of it.
func (c *Coordinator) Begin(ctx context.Context, req BeginRequest) (*Transaction, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.wg.Done()
	timeout := req.Timeout
	if timeout == 0 {
		timeout = c.cfg.DefaultTimeout
	}
	if timeout <= 0 || timeout > c.cfg.MaxTimeout {
		return nil, FieldError("timeout", "timeout must be positive and at most %v", c.cfg.MaxTimeout)
	}
	links, err := canonicalLinks(req.Participants)
	if err != nil {
		return nil, err
	}
	notify, err := c.checkNotify(req.Notify)
	if err != nil {
		return nil, err
	}
	now := c.clock.Now()
	tx := &Transaction{
		ID: ulid.Make().String(), Protocol: ProtocolNative, Name: req.Name, Labels: req.Labels,
		State: StateActive, Timeout: timeout, Deadline: now.Add(timeout),
		CreatedAt: now, UpdatedAt: now, CreatedBy: principalName(ctx),
		Notify: notify, Barrier: req.Barrier, TraceParent: c.cfg.Tracer.TraceParent(ctx),
	}
	if req.Protocol != "" {
		tx.Protocol = req.Protocol
	}
	if err := c.addLinks(tx, links, now, true); err != nil {
		return nil, err
	}
	c.claim(tx, now)
	if err := c.create(ctx, tx, false); err != nil {
		return nil, err
	}
	c.held(tx)
	c.armTimer(tx.ID, timeout)
	return tx, nil
}

// create stores a new record, born in a state of the transition table's
// initial row (CanCreate); the write is synced when durable is set.
func (c *Coordinator) create(ctx context.Context, tx *Transaction, durable bool) error {
	if !CanCreate(tx.State) {
		return Errorf(EInternal, "a transaction cannot be created %s", tx.State)
	}
	if tx.State.Decided() && tx.DecidedAt.IsZero() {
		tx.DecidedAt = tx.CreatedAt
	}
	unlock := c.order.lock(tx.ID)
	defer unlock()
	if err := c.store.Create(ctx, tx, durable); err != nil {
		return storeError(err)
	}
	c.publishState(ctx, tx, StateNone)
	return nil
}

// publishState publishes a state event for tx, which just moved from prev.
func (c *Coordinator) publishState(ctx context.Context, tx *Transaction, prev State) {
	c.events.Publish(Event{Type: EventState, Transaction: tx.ID, Owner: tx.CreatedBy, State: tx.State, Previous: prev, Reason: tx.Reason,
		Elapsed: elapsed(ctx, tx, prev, c.clock.Now())})
}

// decisionStartKey carries, in a request's context, when the request
// began: the state event of the decision it takes says how long it took.
type decisionStartKey struct{}

// decisionSpan starts the span of a request that may take a decision, and
// notes when it began.
func (c *Coordinator) decisionSpan(ctx context.Context, id, what string) (context.Context, func(error)) {
	ctx = context.WithValue(ctx, decisionStartKey{}, c.clock.Now())
	attrs := []Attr{{"tccd.decision", what}}
	if id != "" {
		attrs = append(attrs, Attr{"tccd.transaction.id", id})
	}
	return c.cfg.Tracer.Start(ctx, "", "tccd.decide", attrs...)
}

// elapsed is how long an event's change took: a decision since its
// request began (when ctx tells), a final state since the decision.
func elapsed(ctx context.Context, tx *Transaction, prev State, now time.Time) time.Duration {
	switch {
	case tx.State.Final() && !tx.DecidedAt.IsZero():
		return now.Sub(tx.DecidedAt)
	case tx.State.Decided() && !prev.Decided():
		if start, ok := ctx.Value(decisionStartKey{}).(time.Time); ok {
			return now.Sub(start)
		}
	}
	return 0
}

// errUnchanged, returned by the function given to update, leaves the
// record as it is.
var errUnchanged = errors.New("unchanged")

// update is the coordinator's one read–check–compare-and-set loop for a
// request or a timer: it loads transaction id (as the principal of ctx
// may see it), lets fn change a copy and name the state to move to, and
// writes the copy through transition (which checks the transition table
// and sets the times). When another write came first, it reads again and
// asks fn again. If fn returns errUnchanged, update returns the
// transaction as read and changed=false; any other error of fn is
// returned as it is.
func (c *Coordinator) update(ctx context.Context, id string, durable bool, fn func(tx *Transaction) (State, error)) (tx *Transaction, changed bool, err error) {
	for {
		cur, err := c.load(ctx, id)
		if err != nil {
			return nil, false, err
		}
		next := cur.Clone()
		to, err := fn(next)
		if errors.Is(err, errUnchanged) {
			return cur, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if !CanTransition(cur.State, to) {
			return nil, false, conflict(cur, "cannot move a %s transaction to %s", cur.State, to)
		}
		if err := c.transition(ctx, next, to, durable); err != nil {
			if ErrorCode(err) == EConflict {
				continue // another write came first: look again
			}
			return nil, false, err
		}
		return next, true, nil
	}
}

// Enlist adds a participant link to an active transaction, durably.
// Enlisting a URI already enlisted changes nothing and reports
// added=false.
func (c *Coordinator) Enlist(ctx context.Context, id string, link Link) (tx *Transaction, added bool, err error) {
	if err := c.enter(); err != nil {
		return nil, false, err
	}
	defer c.wg.Done()
	links, err := canonicalLinks([]Link{link})
	if err != nil {
		return nil, false, err
	}
	// Synced: a confirm decided after this answer must include the link,
	// also after a crash of the machine.
	return c.update(ctx, id, true, func(tx *Transaction) (State, error) {
		if tx.Participant(links[0].URI) >= 0 {
			return "", errUnchanged
		}
		if tx.State != StateActive {
			return "", conflict(tx, "cannot enlist: the transaction is %s", tx.State)
		}
		return StateActive, c.addLinks(tx, links, c.clock.Now(), true)
	})
}

// Get returns a transaction. A client principal in ctx gets ENotFound
// for a transaction it did not create, as if there were none.
func (c *Coordinator) Get(ctx context.Context, id string) (*Transaction, error) {
	return c.load(ctx, id)
}

// load reads a transaction for a request: ENotFound, too, when the
// principal of ctx may not see it.
func (c *Coordinator) load(ctx context.Context, id string) (*Transaction, error) {
	tx, err := c.store.Get(ctx, id)
	if err != nil {
		return nil, storeError(err)
	}
	if !mayAccess(ctx, tx) {
		return nil, notFound(id)
	}
	return tx, nil
}

// List returns transactions newest first; see Store.List. It does not
// filter by principal: the API offers it to admins only.
func (c *Coordinator) List(ctx context.Context, f Filter) ([]*Transaction, string, error) {
	txs, next, err := c.store.List(ctx, f)
	return txs, next, storeError(err)
}

// Confirm decides to confirm an active transaction, after adding the given
// links, and waits up to ConfirmWait for the outcome. It returns the
// transaction and nil when it confirmed or is still confirming; ETimedOut
// (with the transaction) when it was cancelled instead; EHeuristic when the
// participants did not all confirm; EConflict when the transaction had
// been cancelled by request, or new links come after the decision.
func (c *Coordinator) Confirm(ctx context.Context, id string, links []Link) (*Transaction, error) {
	return c.confirm(ctx, id, links, true)
}

// ConfirmAsync is Confirm without the wait: it returns once the decision
// is written (synced), with the transaction as it stands; the driver goes
// on. Errors as for Confirm, for what is known at once.
func (c *Coordinator) ConfirmAsync(ctx context.Context, id string, links []Link) (*Transaction, error) {
	return c.confirm(ctx, id, links, false)
}

func (c *Coordinator) confirm(ctx context.Context, id string, links []Link, wait bool) (tx *Transaction, err error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.wg.Done()
	ctx, end := c.decisionSpan(ctx, id, "confirm")
	defer func() { end(err) }()
	links, err = canonicalLinks(links)
	if err != nil {
		return nil, err
	}
	var decided bool
	tx, decided, err = c.update(ctx, id, true, func(tx *Transaction) (State, error) {
		if tx.State != StateActive {
			for _, l := range links {
				if tx.Participant(l.URI) < 0 {
					return "", conflict(tx, "cannot add participants: the transaction is %s", tx.State)
				}
			}
			if (tx.State == StateCancelling || tx.State == StateCancelled) && tx.Reason == ReasonRequested {
				return "", conflict(tx, "the transaction was cancelled")
			}
			return "", errUnchanged
		}
		now := c.clock.Now()
		if err := c.addLinks(tx, links, now, false); err != nil {
			return "", err
		}
		tx.Reason = ReasonRequested
		if c.tooSoon(tx, now) {
			tx.Reason = ReasonExpiryMargin
			c.claim(tx, now)
			return StateCancelling, nil
		}
		tx.decideConfirm()
		c.claim(tx, now)
		return StateConfirming, nil
	})
	if err != nil {
		return nil, err
	}
	if decided {
		c.held(tx)
		c.stopTimer(id)
	}
	if !wait {
		c.startIfUnsettled(tx, decided)
		return c.confirmOutcome(ctx, tx, false, false)
	}
	return c.confirmOutcome(ctx, tx, decided, true)
}

// startIfUnsettled makes sure a driver settles tx if it is decided and
// not final, without waiting for it.
func (c *Coordinator) startIfUnsettled(tx *Transaction, fresh bool) {
	if tx.State.Decided() && !tx.State.Final() {
		c.startDriver(tx, fresh)
	}
}

// confirmOutcome joins (or starts) the driver of a decided transaction and
// turns its state into the answer to a confirm request.
func (c *Coordinator) confirmOutcome(ctx context.Context, tx *Transaction, fresh, wait bool) (*Transaction, error) {
	if wait && !tx.State.Final() {
		tx = c.await(ctx, tx, fresh)
	}
	switch tx.State {
	case StateConfirmed, StateConfirming, StateCompensating:
		return tx, nil
	case StateCompensated:
		return nil, &Error{Code: ECompensated, Message: "the confirm did not reach every participant: the ones that confirmed were undone, the rest cancelled", Tx: tx}
	case StateHeuristic:
		return nil, heuristic(tx)
	case StateCancelling:
		if !CancelCertain(tx) {
			// A participant may have confirmed (in doubt, or it refused
			// the cancel): the outcome is not known yet.
			return tx, nil
		}
	}
	return nil, &Error{Code: ETimedOut, Message: "the transaction has timed out and was cancelled", Tx: tx}
}

// CancelCertain reports whether a transaction decided to cancel will end
// cancelled whatever the participants still answer: it is cancelled, or
// it is cancelling and no participant may have confirmed — none is in
// doubt or confirmed, and none refused a cancel. A participant that is
// merely not reached yet cancels itself at its link's expiry.
func CancelCertain(tx *Transaction) bool {
	switch tx.State {
	case StateCancelled:
		return true
	case StateCancelling:
		for _, p := range tx.Participants {
			switch p.State {
			case ParticipantInDoubt, ParticipantConfirmed, ParticipantCancelRefused:
				return false
			case ParticipantPending:
				if (CallResult{Status: p.LastStatus}).Refusal() {
					return false
				}
			}
		}
		return true
	}
	return false
}

// heuristic is the error that reports a heuristic outcome.
func heuristic(tx *Transaction) *Error {
	msg := "partial confirmation: some participants did not confirm"
	switch tx.Reason {
	case ReasonInDoubt:
		msg = "the outcome of some participants is unknown: they gave no definite answer within the in-doubt window"
	case ReasonParticipant:
		msg = "some participants refused to cancel"
	}
	return &Error{Code: EHeuristic, Message: msg, Tx: tx}
}

// Cancel decides to cancel an active transaction and waits up to
// ConfirmWait for the participants. Cancelling a cancelled transaction
// returns it; a confirming, confirmed or heuristic one is EConflict.
func (c *Coordinator) Cancel(ctx context.Context, id string) (*Transaction, error) {
	return c.cancelTx(ctx, id, true)
}

// CancelAsync is Cancel without the wait: it returns once the decision is
// written (synced); the driver goes on.
func (c *Coordinator) CancelAsync(ctx context.Context, id string) (*Transaction, error) {
	return c.cancelTx(ctx, id, false)
}

func (c *Coordinator) cancelTx(ctx context.Context, id string, wait bool) (tx *Transaction, err error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.wg.Done()
	ctx, end := c.decisionSpan(ctx, id, "cancel")
	defer func() { end(err) }()
	tx, decided, err := c.update(ctx, id, true, func(tx *Transaction) (State, error) {
		if tx.State != StateActive {
			return "", errUnchanged
		}
		tx.Reason = ReasonRequested
		c.claim(tx, c.clock.Now())
		return StateCancelling, nil
	})
	if err != nil {
		return nil, err
	}
	if decided {
		c.held(tx)
		c.stopTimer(id)
	}
	switch {
	case tx.State == StateCancelling && wait:
		tx = c.await(ctx, tx, decided)
	case tx.State == StateCancelling:
		c.startIfUnsettled(tx, decided)
	case tx.State == StateCancelled:
	case tx.State == StateHeuristic:
		return nil, heuristic(tx)
	default:
		return nil, conflict(tx, "cannot cancel: the transaction is %s", tx.State)
	}
	if tx.State == StateHeuristic {
		return nil, heuristic(tx)
	}
	return tx, nil
}

// ConfirmLinks confirms a set of links in one request: a transaction
// created already decided, named by opt.Key, so that the request repeated
// (or made concurrently) joins or reports the same transaction. This is
// how protocols whose requests carry no transaction id — Atomikos TCC for
// REST, where the link set is the identity — stay idempotent; the key is
// theirs to derive (see http.AtomikosKey). Errors as for Confirm; an
// expired link or one too close to expiry cancels them all (ETimedOut).
func (c *Coordinator) ConfirmLinks(ctx context.Context, links []Link, opt OneShotOptions) (*Transaction, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.wg.Done()
	tx, created, err := c.oneShot(ctx, links, opt, func(tx *Transaction, now time.Time) {
		tx.State, tx.Reason = StateConfirming, ReasonRequested
		if c.tooSoon(tx, now) {
			tx.State, tx.Reason = StateCancelling, ReasonExpiryMargin
			return
		}
		tx.decideConfirm()
	})
	if err != nil {
		return nil, err
	}
	return c.confirmOutcome(ctx, tx, created, true)
}

// CancelLinks cancels a set of links in one request, named by opt.Key as
// for ConfirmLinks: it decides to cancel a new set, or reports the
// transaction the key already names. It never undoes a confirm: a
// transaction already confirming, confirmed or heuristic is returned as
// it is (the caller answers that it was not cancelled).
func (c *Coordinator) CancelLinks(ctx context.Context, links []Link, opt OneShotOptions) (*Transaction, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.wg.Done()
	tx, created, err := c.oneShot(ctx, links, opt, func(tx *Transaction, _ time.Time) {
		tx.State, tx.Reason = StateCancelling, ReasonRequested
	})
	if err != nil {
		return nil, err
	}
	if tx.State == StateCancelling {
		tx = c.await(ctx, tx, created)
	}
	return tx, nil
}

// oneShot creates the record of a one-shot request, decided by decide
// and synced, or — the same request repeated, or concurrent — returns the
// record its key already names (created=false). Optimistic: a new key is
// the common case, so it creates first and reads only when the key is
// known already.
func (c *Coordinator) oneShot(ctx context.Context, links []Link, opt OneShotOptions, decide func(tx *Transaction, now time.Time)) (tx *Transaction, created bool, err error) {
	ctx, end := c.decisionSpan(ctx, "", "one-shot")
	defer func() { end(err) }()
	links, err = canonicalLinks(links)
	if err != nil {
		return nil, false, err
	}
	notify, err := c.checkNotify(opt.Notify)
	if err != nil {
		return nil, false, err
	}
	if err := c.checkOneShot(links, opt); err != nil {
		return nil, false, err
	}
	id := opt.Key
	for {
		now := c.clock.Now()
		tx := &Transaction{ID: id, Protocol: opt.Protocol, CreatedAt: now, UpdatedAt: now, CreatedBy: principalName(ctx), Notify: notify,
			TraceParent: c.cfg.Tracer.TraceParent(ctx)}
		// Expired links are accepted here: they make a confirm time out.
		if err := c.addLinks(tx, links, now, false); err != nil {
			return nil, false, err
		}
		decide(tx, now)
		c.claim(tx, now)
		err := c.create(ctx, tx, true)
		if err == nil {
			c.held(tx)
			return tx, true, nil
		}
		if ErrorCode(err) != EConflict {
			return nil, false, err
		}
		tx, err = c.store.Get(ctx, id)
		if err == nil {
			if !mayAccess(ctx, tx) {
				return nil, false, othersKey()
			}
			return tx, false, nil
		}
		if ErrorCode(err) != ENotFound {
			return nil, false, storeError(err)
		}
		// Purged between the two calls: try again.
	}
}

// OneShotOptions name and describe the transaction of a one-shot request.
type OneShotOptions struct {
	// Key names the transaction (it is its id): the same key is the same
	// transaction. Required: 1 to 128 characters of A–Z, a–z, 0–9 and
	// "._~-".
	Key string
	// Protocol is recorded as the transaction's protocol.
	Protocol Protocol
	// Notify is a URL told of the outcome (see Notifier), for a new
	// transaction; "" for none.
	Notify string
}

// checkOneShot checks a one-shot request's links and options.
func (c *Coordinator) checkOneShot(links []Link, opt OneShotOptions) error {
	if len(links) == 0 {
		return FieldError("participants", "a one-shot request needs at least one link")
	}
	if len(links) > c.cfg.MaxLinks {
		return Errorf(EInvalid, "too many participant links: %d, at most %d", len(links), c.cfg.MaxLinks)
	}
	if !validKey(opt.Key) {
		return Errorf(EInvalid, "a one-shot transaction needs a key of 1 to 128 characters A-Z a-z 0-9 . _ ~ -, not %q", opt.Key)
	}
	if opt.Protocol == "" {
		return Errorf(EInvalid, "a one-shot transaction needs a protocol")
	}
	return nil
}

// validKey reports whether k may name a one-shot transaction.
func validKey(k string) bool {
	if k == "" || len(k) > 128 {
		return false
	}
	for i := 0; i < len(k); i++ {
		b := k[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("._~-", b) >= 0) {
			return false
		}
	}
	return true
}

// canonicalLinks returns links with their URIs in canonical form (see
// CanonicalURI), validating them; the input is not changed.
func canonicalLinks(links []Link) ([]Link, error) {
	out := make([]Link, len(links))
	for i, l := range links {
		u, err := CanonicalURI(l.URI)
		if err != nil {
			return nil, err
		}
		l.URI = u
		for _, extra := range []struct {
			field string
			uri   *string
		}{{"confirm_uri", &l.ConfirmURI}, {"cancel_uri", &l.CancelURI}, {"compensate", &l.CompensateURI}} {
			if *extra.uri == "" {
				continue
			}
			if *extra.uri, err = CanonicalURI(*extra.uri); err != nil {
				return nil, &Error{Code: EInvalid, Field: extra.field, Message: extra.field + ": " + ErrorMessage(err)}
			}
		}
		switch l.Style {
		case "", StyleTCC:
			l.Style = "" // the default, stored as nothing
		case StyleCompensate:
		default:
			return nil, FieldError("style", "style must be %q or %q, not %q", StyleTCC, StyleCompensate, l.Style)
		}
		out[i] = l
	}
	return out, nil
}

// othersKey is the answer to a one-shot request whose key names another
// client's transaction. The key is derived from what the caller sent, so
// there is nothing to hide by saying so; and "not found" would mean
// "cancelled" in the Atomikos protocol, which would be a lie.
func othersKey() *Error {
	return Errorf(EForbidden, "the transaction this request names belongs to another client")
}

// addLinks appends links, whose URIs are canonical, to tx as pending
// participants; links already enlisted are skipped. With requireFuture an
// expired link is an error. On error tx may have been changed.
func (c *Coordinator) addLinks(tx *Transaction, links []Link, now time.Time, requireFuture bool) error {
	seen := make(map[string]bool, len(links))
	for _, l := range links {
		for _, u := range []string{l.URI, l.ConfirmURI, l.CancelURI, l.CompensateURI} {
			if u == "" {
				continue
			}
			if err := c.links.CheckLink(u); err != nil {
				return err
			}
		}
		if l.Expires.IsZero() {
			return FieldError("expires", "each participant link must have an 'expires'")
		}
		if !ExpiresInRange(l.Expires) {
			return FieldError("expires", "expires %s is out of range (1970 to 2262)", l.Expires.UTC().Format(time.RFC3339))
		}
		if seen[l.URI] {
			return FieldError("uri", "duplicate participant link %s", l.URI)
		}
		seen[l.URI] = true
		if tx.Participant(l.URI) >= 0 {
			continue
		}
		if requireFuture && !l.Expires.After(now) {
			return FieldError("expires", "participant link %s expired at %s", l.URI, l.Expires.UTC().Format(time.RFC3339Nano))
		}
		tx.Participants = append(tx.Participants, Participant{
			URI: l.URI, Expires: l.Expires, State: ParticipantPending,
			ConfirmURI: l.ConfirmURI, CancelURI: l.CancelURI, Style: l.Style, CompensateURI: l.CompensateURI,
		})
	}
	if len(tx.Participants) > c.cfg.MaxLinks {
		return Errorf(EInvalid, "too many participant links: %d, at most %d", len(tx.Participants), c.cfg.MaxLinks)
	}
	return nil
}

// Margin returns the expiry safety margin for a participant host.
func (c *Coordinator) Margin(host string) time.Duration {
	m := time.Duration(c.cfg.MarginRTTs * float64(c.rtt.get(host)))
	if m < c.cfg.MarginFloor {
		m = c.cfg.MarginFloor
	}
	return m
}

// tooSoon reports whether a pending link of tx expires within its margin.
func (c *Coordinator) tooSoon(tx *Transaction, now time.Time) bool {
	for _, p := range tx.Participants {
		if p.State == ParticipantPending && !p.message() && p.Expires.Sub(now) < c.Margin(HostOf(p.URI)) {
			return true
		}
	}
	return false
}

// transition moves tx (in place) to state `to` with a compare-and-set
// write; the new state is synced when durable is set.
func (c *Coordinator) transition(ctx context.Context, tx *Transaction, to State, durable bool) error {
	return c.transitionWith(ctx, tx, to, durable, nil)
}

// transitionWith is transition that also publishes attempt events of
// calls whose results the write records, before the state event.
func (c *Coordinator) transitionWith(ctx context.Context, tx *Transaction, to State, durable bool, attempts []Event) error {
	if !CanTransition(tx.State, to) {
		return conflict(tx, "cannot move a %s transaction to %s", tx.State, to)
	}
	prev := tx.State
	now := c.clock.Now()
	tx.State, tx.UpdatedAt = to, now
	if prev == StateActive && to != StateActive {
		tx.DecidedAt = now
	}
	if to.Final() && !prev.Final() {
		// A resolved heuristic keeps the time it finished: retention
		// counts from there, and the store's finished index stays right.
		tx.FinishedAt = now
	}
	notification := tx.Notification
	c.notifyOnFinal(tx, prev, to, now)
	unlock := c.order.lock(tx.ID)
	defer unlock()
	if err := c.store.Update(ctx, tx, durable); err != nil {
		tx.State, tx.Notification = prev, notification
		return storeError(err)
	}
	if tx.Notification.State == NotificationPending && tx.Notification != notification {
		defer c.startDelivery(tx.ID)
	}
	for i := range attempts {
		c.events.Publish(attempts[i])
	}
	if to != prev {
		c.publishState(ctx, tx, prev)
	}
	return nil
}

// await starts or joins the driver of a decided transaction and waits up
// to ConfirmWait for its end. It returns the final transaction, or tx as
// it was if the wait ran out or the coordinator is closing. fresh says tx
// was just written by the caller (see startDriver).
func (c *Coordinator) await(ctx context.Context, tx *Transaction, fresh bool) *Transaction {
	if !c.drives(tx) {
		return c.pollOutcome(ctx, tx)
	}
	d := c.startDriver(tx, fresh)
	if d == nil {
		return tx
	}
	t := time.NewTimer(c.cfg.ConfirmWait)
	defer t.Stop()
	// Not c.ctx: at shutdown the driver records what arrives within the
	// grace and ends, and the request is answered with that.
	select {
	case <-d.done:
		if d.final != nil {
			return d.final
		}
	case <-t.C:
	case <-ctx.Done():
	}
	if cur, err := c.store.Get(context.WithoutCancel(ctx), tx.ID); err == nil {
		return cur
	}
	return tx
}

// pollOutcome waits up to ConfirmWait for a transaction another node
// drives to reach a final state, reading the store, and returns it as last
// read.
func (c *Coordinator) pollOutcome(ctx context.Context, tx *Transaction) *Transaction {
	deadline := time.NewTimer(c.cfg.ConfirmWait)
	defer deadline.Stop()
	wait := 20 * time.Millisecond
	for !tx.State.Final() {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-deadline.C:
			t.Stop()
			return tx
		case <-ctx.Done():
			t.Stop()
			return tx
		case <-c.ctx.Done():
			t.Stop()
			return tx
		}
		if cur, err := c.store.Get(context.WithoutCancel(ctx), tx.ID); err == nil {
			tx = cur
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
	return tx
}

// armTimer cancels an active transaction when its timeout passes.
func (c *Coordinator) armTimer(id string, after time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if old := c.timers[id]; old != nil {
		old.Stop()
	}
	c.timers[id] = time.AfterFunc(max(after, 0), func() {
		c.mu.Lock()
		delete(c.timers, id)
		c.mu.Unlock()
		c.goTracked(func() { c.expire(id) })
	})
}

func (c *Coordinator) stopTimer(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.timers[id]; t != nil {
		t.Stop()
		delete(c.timers, id)
	}
}

// expire cancels a transaction whose timeout passed while it was active.
func (c *Coordinator) expire(id string) {
	tx, decided, err := c.update(c.ctx, id, true, func(tx *Transaction) (State, error) {
		if tx.State != StateActive || tx.Deadline.After(c.clock.Now()) {
			return "", errUnchanged
		}
		tx.Reason = ReasonTimeout
		c.claim(tx, c.clock.Now())
		return StateCancelling, nil
	})
	switch {
	case err != nil:
		if ErrorCode(err) != ENotFound && c.ctx.Err() == nil {
			c.log.Error("timeout: cannot record the cancel; the re-drive loop tries again", "id", id, "err", err)
		}
	case decided:
		c.log.Info("transaction timed out", logTx(id, tx.TraceParent)...)
		c.held(tx)
		c.startDriver(tx, true)
	case tx.State == StateActive:
		c.armTimer(id, tx.Deadline.Sub(c.clock.Now())) // fired early
	}
}

// purgeLoop deletes finished transactions older than the retention.
func (c *Coordinator) purgeLoop() {
	t := time.NewTicker(c.cfg.PurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		_, _ = c.purge(c.ctx)
	}
}

// Purge deletes the finished transactions past the retention now, and
// returns how many it deleted. The purge loop does the same every
// PurgeInterval; the API offers Purge to admins. On a store failure it
// returns what it deleted so far and an EUnavailable error.
func (c *Coordinator) Purge(ctx context.Context) (int, error) {
	if err := c.enter(); err != nil {
		return 0, err
	}
	defer c.wg.Done()
	return c.purge(ctx)
}

func (c *Coordinator) purge(ctx context.Context) (int, error) {
	const batch = 1000
	total := 0
	cutoff := c.clock.Now().Add(-c.cfg.Retention)
	var err error
	for ctx.Err() == nil {
		var n int
		n, err = c.store.Purge(ctx, cutoff, batch)
		total += n
		if err != nil {
			c.log.Error("purge failed", "err", err)
			break
		}
		if n < batch {
			break
		}
	}
	if total > 0 {
		c.log.Info("purged finished transactions", "count", total)
	}
	return total, storeError(err)
}

// MaxNoteLength bounds the note of a resolution.
const MaxNoteLength = 1024

// Resolve records an operator's resolution of a heuristic transaction:
// the operator settled the participants out of band and says how the
// transaction ended, StateConfirmed or StateCancelled. Nothing is sent to
// the participants, whose records stay as the coordinator saw them; the
// transaction gets reason ReasonResolved, ResolvedBy (the principal of
// ctx) and the note. The write is synced. Resolving again to the same
// state returns the transaction unchanged; a transaction that is not
// heuristic is EConflict.
func (c *Coordinator) Resolve(ctx context.Context, id string, to State, note string) (*Transaction, error) {
	if to != StateConfirmed && to != StateCancelled {
		return nil, FieldError("state", "state must be %s or %s, not %q", StateConfirmed, StateCancelled, to)
	}
	if len(note) > MaxNoteLength {
		return nil, FieldError("note", "note is longer than %d bytes", MaxNoteLength)
	}
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.wg.Done()
	tx, changed, err := c.update(ctx, id, true, func(tx *Transaction) (State, error) {
		if tx.State == to && tx.Reason == ReasonResolved {
			return "", errUnchanged
		}
		if tx.State != StateHeuristic {
			return "", conflict(tx, "only a heuristic transaction can be resolved; this one is %s", tx.State)
		}
		tx.Reason, tx.ResolvedBy, tx.ResolutionNote = ReasonResolved, principalName(ctx), note
		return to, nil
	})
	if err != nil {
		return nil, err
	}
	if changed {
		c.log.Info("heuristic transaction resolved", logTx(id, tx.TraceParent, "state", to, "by", tx.ResolvedBy)...)
	}
	return tx, nil
}

func conflict(tx *Transaction, format string, args ...any) *Error {
	e := Errorf(EConflict, format, args...)
	e.Tx = tx
	return e
}

// storeError passes domain errors through and wraps store failures.
func storeError(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: EUnavailable, Message: "the request was cancelled", Err: err}
	}
	return &Error{Code: EUnavailable, Message: "the transaction log is not available", Err: err}
}
