package tccd

import (
	"slices"
	"sync"
	"time"
)

// EventType says what an Event reports.
type EventType string

// Event types.
const (
	// EventState: a transaction was created or changed state.
	EventState EventType = "state"
	// EventAttempt: a call to a participant was answered (or failed) and
	// its result written.
	EventAttempt EventType = "attempt"
	// EventLagged: the subscriber fell behind and is dropped; this is the
	// last event it receives. Like EventGap it has no Seq: it stands for
	// no event of the stream, so a subscriber resumes after the last event
	// it did receive and gets the ones it missed.
	EventLagged EventType = "lagged"
	// EventGap: events the subscriber asked to resume from are no longer
	// kept (or belong to an earlier run of the coordinator): some were
	// missed. It comes first, before what is kept.
	EventGap EventType = "gap"
)

// EventTypes lists every event type.
var EventTypes = []EventType{EventState, EventAttempt, EventLagged, EventGap}

// Event is one change the coordinator made, published once it is written.
type Event struct {
	// Seq numbers the events of this coordinator process's stream, from 1,
	// one by one; Time is when the event was published.
	Seq  uint64
	Time time.Time
	Type EventType
	// Transaction is the id of the transaction (state and attempt events).
	Transaction string
	// Owner is the principal that created the transaction (its
	// CreatedBy): a client subscriber sees only its own. Not shown.
	Owner string

	// State events: the new state, the one before ("" for a new
	// record), and the transaction's reason.
	State    State
	Previous State
	Reason   Reason

	// Attempt events: the participant URI, the phase (confirm, cancel or
	// compensate; the PUT that asks a participant in doubt for its outcome
	// is a confirm), the attempt number, the answer's status (0 if none
	// came), the error, when the next attempt is due (zero if none), and
	// the participant's state after it.
	Participant      string
	Phase            Op
	Attempt          int
	Status           int
	Error            string
	NextRetry        time.Time
	ParticipantState ParticipantState

	// Elapsed is, for the state event of a decision, the time from the
	// request (or timer) that took it to the decision being written; for
	// a final state, the time since the decision; for an attempt event,
	// how long the call took.
	Elapsed time.Duration
}

// Events is where the coordinator publishes its changes, and where
// observers (the event stream of the API, webhooks, metrics, dashboards)
// subscribe. Broker is the in-process implementation; a clustered store
// may bring one that carries events between nodes.
//
// Contract:
//   - Publish never blocks the engine on a subscriber; it sets ev.Seq and
//     ev.Time. It is safe for concurrent use.
//   - The coordinator publishes an event only after the change it reports
//     is written, and the events of one transaction in the order of its
//     writes; subscribers receive them in that order.
//   - Each subscriber has a bounded buffer. One that falls behind receives
//     an EventLagged event (Seq 0) as its last and its channel is closed;
//     subscribing again after the Seq of the last event it received
//     gives every event it missed that is still kept.
//   - Subscribe returns the kept events after a given Seq (or a first
//     EventGap event when some of those are no longer kept) and then every
//     new event, with no duplicate and no hole between the two. After 0
//     means only new events; FromOldest every event kept.
type Events interface {
	Publish(ev Event)
	Subscribe(f EventFilter, after uint64) (*Subscription, error)
}

// EventFilter selects the events a subscriber receives. Zero fields
// select everything; EventLagged and EventGap are always delivered.
type EventFilter struct {
	Transaction string
	Types       []EventType
	States      []State // for state events
	// Owner, when OnlyOwner is set, limits the events to transactions
	// created by that principal.
	Owner     string
	OnlyOwner bool
}

func (f *EventFilter) match(ev *Event) bool {
	if ev.Type == EventLagged || ev.Type == EventGap {
		return true
	}
	if f.Transaction != "" && ev.Transaction != f.Transaction {
		return false
	}
	if f.OnlyOwner && ev.Owner != f.Owner {
		return false
	}
	if len(f.Types) > 0 && !slices.Contains(f.Types, ev.Type) {
		return false
	}
	if len(f.States) > 0 && (ev.Type != EventState || !slices.Contains(f.States, ev.State)) {
		return false
	}
	return true
}

// Subscription is one subscriber's view of the stream: Replay holds the
// kept events after the Seq it asked for (oldest first), C the events
// published since. C is closed after an EventLagged event, or by Close.
type Subscription struct {
	Replay []Event
	C      <-chan Event

	b      *Broker
	c      chan Event
	filter EventFilter
	closed bool // guarded by b.mu
}

// Close ends the subscription; C is closed.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.drop(s)
}

// FromOldest, as the after of Events.Subscribe, asks for every event
// still kept, from the first of this process's stream: preceded by an
// EventGap when the oldest are no longer kept. A view that shows a
// transaction's history (the dashboard's timeline) subscribes so.
const FromOldest = ^uint64(0)

// Defaults of Broker.
const (
	DefaultEventRing   = 10000
	DefaultEventBuffer = 1024
)

// Broker is the in-process Events: a ring of the last events, for
// subscribers that resume, and a fan-out to subscribers with bounded
// buffers.
type Broker struct {
	mu     sync.Mutex
	next   uint64  // Seq of the next event
	ring   []Event // the last len(ring) events, oldest at start
	start  int     // index of the oldest event in ring, once full
	full   bool
	buffer int
	subs   map[*Subscription]struct{}
	clock  Clock
}

var _ Events = (*Broker)(nil)

// NewBroker returns a Broker that keeps the last ring events (0:
// DefaultEventRing) and gives each subscriber a buffer of buffer events
// (0: DefaultEventBuffer). A nil clock is the system clock.
func NewBroker(ring, buffer int, clock Clock) *Broker {
	if ring <= 0 {
		ring = DefaultEventRing
	}
	if buffer <= 0 {
		buffer = DefaultEventBuffer
	}
	if clock == nil {
		clock = SystemClock{}
	}
	return &Broker{next: 1, ring: make([]Event, 0, ring), buffer: buffer, subs: make(map[*Subscription]struct{}), clock: clock}
}

// Publish records ev in the ring and hands it to every subscriber whose
// filter it matches; a subscriber without room left gets EventLagged and
// is dropped.
func (b *Broker) Publish(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ev.Seq, ev.Time = b.next, b.clock.Now()
	b.next++
	if !b.full {
		b.ring = append(b.ring, ev)
		b.full = len(b.ring) == cap(b.ring)
	} else {
		b.ring[b.start] = ev
		b.start = (b.start + 1) % len(b.ring)
	}
	for s := range b.subs {
		if !s.filter.match(&ev) {
			continue
		}
		if len(s.c) < b.buffer {
			s.c <- ev
			continue
		}
		// The buffer holds one more slot, for this. It carries no Seq
		// (so no SSE id: line): ev is not delivered, and a subscriber
		// that resumed after ev's Seq would never see it. Without one,
		// the resume point stays the last event this subscriber did
		// receive — what EventSource and the client SDK resume from —
		// and resuming replays ev and what followed from the ring (or
		// starts with a gap if the ring has moved on). A Seq of the last
		// delivered event would do the same, but would number two
		// events alike; no Seq is what EventGap does too.
		s.c <- Event{Time: ev.Time, Type: EventLagged}
		b.drop(s)
	}
}

// drop removes s and closes its channel; with b.mu held.
func (b *Broker) drop(s *Subscription) {
	if s.closed {
		return
	}
	s.closed = true
	delete(b.subs, s)
	close(s.c)
}

// Subscribe returns a subscription to the events matching f published
// after Seq after (0: only new ones; FromOldest: every event kept). If
// events after it are no longer kept — the ring has moved on, or after is
// from an earlier run — Replay starts with an EventGap.
func (b *Broker) Subscribe(f EventFilter, after uint64) (*Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &Subscription{b: b, c: make(chan Event, b.buffer+1), filter: f}
	s.C = s.c
	if after > 0 {
		oldest := b.next - uint64(len(b.ring)) // Seq of ring's first event
		gap := Event{Seq: 0, Time: b.clock.Now(), Type: EventGap}
		switch {
		case after == FromOldest:
			if oldest > 1 { // the ring has dropped the first events
				s.Replay = append(s.Replay, gap)
			}
			after = 0
		case after+1 < oldest || after >= b.next:
			s.Replay = append(s.Replay, gap)
			if after >= b.next {
				after = 0 // from an earlier run: everything kept is new to it
			}
		}
		for i := range b.ring {
			ev := &b.ring[(b.start+i)%len(b.ring)]
			if ev.Seq > after && f.match(ev) {
				s.Replay = append(s.Replay, *ev)
			}
		}
	}
	b.subs[s] = struct{}{}
	return s, nil
}

// Subscribers returns how many subscriptions are open.
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// keyedMutex serialises work on one key (a transaction id) without
// serialising different keys: the coordinator holds it across a write of
// a transaction and the publication of its events, so that the events of
// one transaction are published in the order of its writes.
type keyedMutex struct {
	shards [64]struct {
		mu sync.Mutex
		m  map[string]*keyedEntry
	}
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) shard(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return int(h % uint32(len(k.shards)))
}

// lock locks key and returns what unlocks it.
func (k *keyedMutex) lock(key string) (unlock func()) {
	sh := &k.shards[k.shard(key)]
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[string]*keyedEntry)
	}
	e := sh.m[key]
	if e == nil {
		e = &keyedEntry{}
		sh.m[key] = e
	}
	e.refs++
	sh.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		sh.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(sh.m, key)
		}
		sh.mu.Unlock()
	}
}
