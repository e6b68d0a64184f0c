package tccd

import (
	"context"
	"sync"
	"time"
)

// Leaser decides which coordinator node drives which transaction. The node
// that creates a transaction (and so times it out) or takes a decision
// drives it, under a lease it renews; a node takes over the transactions
// whose lease expired — their owner crashed, paused or lost the store —
// raising their epoch. StaticLeaser is the single-node implementation
// (this node owns everything it stores, forever); postgres.Leaser is the
// cluster's. Which one runs is a wiring choice (cmd/tccd), not a fork in
// the engine.
//
// Contract, for every implementation:
//   - Claim is called on a record this node is about to write as its
//     creator or with a decision: it sets tx.Owner (the node id),
//     tx.LeaseUntil (zero for a lease that never expires) and, when the
//     owner changes, raises tx.Epoch. The write carries them.
//   - Renew extends this node's leases on the given transactions to now
//     plus the TTL and returns the ids it no longer owns (another node
//     took them over). It is called every TTL/3 for everything the node
//     drives or times.
//   - TakeOver claims up to n transactions that are not final (or whose
//     notification is pending) and whose lease expired, each in one
//     atomic step that makes this node the owner, raises the epoch and
//     the version (so that the old owner's next write fails its
//     compare-and-set: fencing), and returns them as stored.
//   - TTL is the lease's length; 0 means leases never expire (Renew and
//     TakeOver are then never called).
//   - Methods are safe for concurrent use.
type Leaser interface {
	Claim(tx *Transaction, now time.Time)
	Renew(ctx context.Context, ids []string) (lost []string, err error)
	TakeOver(ctx context.Context, n int) ([]*Transaction, error)
	TTL() time.Duration
}

// StaticLeaser is the Leaser of a single node: it owns every transaction
// of its store, and its leases never expire.
type StaticLeaser struct {
	// Node names this node (Transaction.Owner).
	Node string
}

var _ Leaser = StaticLeaser{}

// Claim records the node as owner, with no expiry.
func (l StaticLeaser) Claim(tx *Transaction, _ time.Time) {
	if tx.Owner != l.Node {
		tx.Owner = l.Node
		tx.Epoch++
	}
	tx.LeaseUntil = time.Time{}
}

// Renew has nothing to do: nobody takes a static lease over.
func (StaticLeaser) Renew(context.Context, []string) ([]string, error) { return nil, nil }

// TakeOver finds nothing: there is no other node.
func (StaticLeaser) TakeOver(context.Context, int) ([]*Transaction, error) { return nil, nil }

// TTL is 0: the leases never expire.
func (StaticLeaser) TTL() time.Duration { return 0 }

// leaseTable is what this node knows of its leases: the transactions it
// owns and, for expiring leases, until when by its own clock. A node
// paused past its lease finds it expired here and sends nothing more for
// that transaction until a renewal says it still owns it.
type leaseTable struct {
	mu    sync.Mutex
	until map[string]time.Time // zero: never expires
}

func (t *leaseTable) set(id string, until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.until == nil {
		t.until = make(map[string]time.Time)
	}
	t.until[id] = until
}

func (t *leaseTable) drop(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.until, id)
}

// valid reports whether this node holds a live lease on id at now, with a
// margin for the clocks of the nodes and the store.
func (t *leaseTable) valid(id string, now time.Time, margin time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	u, ok := t.until[id]
	return ok && (u.IsZero() || now.Add(margin).Before(u))
}

// lapsed returns those of ids whose lease this node no longer holds at
// now by its own clock (see valid): it has stopped acting on them.
func (t *leaseTable) lapsed(ids []string, now time.Time, margin time.Duration) map[string]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]bool)
	for _, id := range ids {
		if u, ok := t.until[id]; ok && !u.IsZero() && !now.Add(margin).Before(u) {
			out[id] = true
		}
	}
	return out
}

// ids returns the transactions with expiring leases.
func (t *leaseTable) ids() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.until))
	for id, u := range t.until {
		if !u.IsZero() {
			out = append(out, id)
		}
	}
	return out
}

// claim makes this node tx's owner for the write it is about to make, and
// remembers the lease.
func (c *Coordinator) claim(tx *Transaction, now time.Time) {
	c.cfg.Leaser.Claim(tx, now)
}

// held records that a write carrying tx's lease succeeded: this node
// drives (or times) it. With a static lease there is nothing to keep.
func (c *Coordinator) held(tx *Transaction) {
	if c.expiring && tx.Owner == c.cfg.NodeID {
		c.leases.set(tx.ID, tx.LeaseUntil)
	}
}

// released forgets a lease this node no longer needs (the transaction is
// final, its notification delivered).
func (c *Coordinator) released(id string) {
	if c.expiring {
		c.leases.drop(id)
	}
}

// owns reports whether this node may send anything for transaction id:
// it holds a live lease on it (always, with a static lease).
func (c *Coordinator) owns(id string) bool {
	return !c.expiring || c.leases.valid(id, c.clock.Now(), c.leaseMargin())
}

// drives reports whether this node may drive tx, a record it has just
// read: it holds a live lease on it and the record names it the owner.
// The lease table alone is not enough: it learns that another node took
// a decision on the transaction (and so its ownership) only at the next
// renewal, up to a third of the TTL later.
func (c *Coordinator) drives(tx *Transaction) bool {
	return c.owns(tx.ID) && (!c.expiring || tx.Owner == c.cfg.NodeID)
}

// leaseMargin is how long before its lease expires by its own clock a
// node stops acting: room for the clocks of the nodes and the store.
func (c *Coordinator) leaseMargin() time.Duration { return c.cfg.Leaser.TTL() / 5 }

// leaseLoop renews this node's leases every TTL/3 and takes over the
// transactions whose lease expired every TTL/2; with a static lease there
// is nothing to do.
func (c *Coordinator) leaseLoop() {
	ttl := c.cfg.Leaser.TTL()
	if ttl <= 0 {
		return
	}
	renew := time.NewTicker(ttl / 3)
	defer renew.Stop()
	take := time.NewTicker(ttl / 2)
	defer take.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-renew.C:
			c.renewLeases()
		case <-take.C:
			c.takeOver()
		}
	}
}

// renewLeases extends the leases this node holds and forgets the ones it
// lost: their drivers stop before their next call. A lease this node had
// let lapse (it could not renew it in time: it was paused, or the store
// was away) and lost was taken over by another node, which is worth a
// warning; one lost while still live moved with a decision another node
// took (a request there), which is routine. A lapsed lease that is still
// this node's is driven again at once: its drivers stopped when it lapsed.
func (c *Coordinator) renewLeases() {
	ids := c.leases.ids()
	if len(ids) == 0 {
		return
	}
	now := c.clock.Now()
	lapsed := c.leases.lapsed(ids, now, c.leaseMargin())
	lost, err := c.cfg.Leaser.Renew(c.ctx, ids)
	if err != nil {
		if c.ctx.Err() == nil {
			c.log.Warn("cannot renew leases: the transactions this node drives pause until it can", "count", len(ids), "err", err)
		}
		return
	}
	gone := make(map[string]bool, len(lost))
	var takenOver, moved []string
	for _, id := range lost {
		gone[id] = true
		c.leases.drop(id)
		if lapsed[id] {
			takenOver = append(takenOver, id)
		} else {
			moved = append(moved, id)
		}
	}
	until := now.Add(c.cfg.Leaser.TTL())
	var resumed []string
	for _, id := range ids {
		if !gone[id] {
			c.leases.set(id, until)
			if lapsed[id] {
				resumed = append(resumed, id)
			}
		}
	}
	if len(takenOver) > 0 {
		c.log.Warn("lost leases: they ran out before this node could renew them (it was paused, or could not reach the store) and another node took these transactions over; this node stops driving them",
			"count", len(takenOver), "ids", takenOver)
	}
	if len(moved) > 0 {
		c.log.Debug("leases moved to the nodes that decided these transactions", "count", len(moved), "ids", moved)
	}
	if len(resumed) > 0 {
		c.log.Info("renewed leases that had run out: driving these transactions again", "count", len(resumed))
		c.goTracked(func() { c.resume(resumed) })
	}
}

// takeOver claims the transactions whose lease expired and drives them
// (times them, delivers their notification).
func (c *Coordinator) takeOver() {
	txs, err := c.cfg.Leaser.TakeOver(c.ctx, c.cfg.RecoveryDrives)
	if err != nil {
		if c.ctx.Err() == nil {
			c.log.Warn("cannot take over expired leases", "err", err)
		}
		return
	}
	if len(txs) == 0 {
		return
	}
	c.log.Info("took over transactions whose lease expired", "count", len(txs))
	now := c.clock.Now()
	for _, tx := range txs {
		c.held(tx)
		switch {
		case tx.State == StateActive:
			c.armTimer(tx.ID, tx.Deadline.Sub(now))
		case !tx.State.Final():
			c.startDriver(tx, false)
		case tx.Notification.State == NotificationPending:
			c.startDelivery(tx.ID)
		}
	}
}
