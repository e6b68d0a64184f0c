package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tccd/tccd"
)

// DefaultLeaseTTL is the length of a node's lease on the transactions it
// drives.
const DefaultLeaseTTL = 10 * time.Second

// Leaser is the tccd.Leaser of a cluster of nodes sharing one database:
// row leases in the owner, lease_until and epoch columns. Lease times are
// read on the nodes' clocks, which must agree within the coordinator's
// margin (a fifth of the TTL; NTP does much better).
type Leaser struct {
	store *Store
	node  string
	ttl   time.Duration
	now   func() time.Time
}

var _ tccd.Leaser = (*Leaser)(nil)

// NewLeaser returns the leaser of node over the store's database; ttl 0
// means DefaultLeaseTTL, a nil now the system clock.
func NewLeaser(s *Store, node string, ttl time.Duration, now func() time.Time) *Leaser {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Leaser{store: s, node: node, ttl: ttl, now: now}
}

// TTL is the lease's length.
func (l *Leaser) TTL() time.Duration { return l.ttl }

// Claim makes the node tx's owner until now plus the TTL, raising the
// epoch when the owner changes.
func (l *Leaser) Claim(tx *tccd.Transaction, now time.Time) {
	if tx.Owner != l.node {
		tx.Owner = l.node
		tx.Epoch++
	}
	tx.LeaseUntil = now.Add(l.ttl)
}

// renewSQL extends leases. It locks the rows in the order of their ids,
// as a group commit's batch does (commit.go), so that a renewal and a
// batch never wait for each other in a cycle: a plain UPDATE locks them in
// the order it finds them, which deadlocked with batches (PostgreSQL then
// aborts one of them after its deadlock_timeout).
const renewSQL = `UPDATE tccd_transactions t SET lease_until = $3
	FROM (SELECT id FROM tccd_transactions WHERE id = ANY($1::text[]) AND owner = $2 ORDER BY id FOR UPDATE) mine
	WHERE t.id = mine.id AND t.owner = $2
	RETURNING t.id`

// Renew extends the node's leases on ids (one statement for all) and
// returns those it no longer owns. It changes neither the version nor
// the record: a renewal never conflicts with the owner's own writes.
func (l *Leaser) Renew(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if l.store.isClosed() {
		return nil, errClosed
	}
	rows, err := l.store.pool.Query(ctx, renewSQL, ids, l.node, l.now().Add(l.ttl))
	if err != nil {
		return nil, fmt.Errorf("postgres: renew leases: %w", err)
	}
	kept, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: renew leases: %w", err)
	}
	have := make(map[string]bool, len(kept))
	for _, id := range kept {
		have[id] = true
	}
	var lost []string
	for _, id := range ids {
		if !have[id] {
			lost = append(lost, id)
		}
	}
	return lost, nil
}

// takeOverSQL picks transactions whose lease expired, locking them and
// skipping those another node is taking over at the same moment.
const takeOverSQL = `SELECT id, version, record FROM tccd_transactions
	WHERE (state IN ('active', 'confirming', 'cancelling', 'compensating') OR notification_pending)
		AND lease_until IS NOT NULL AND lease_until < $1
	ORDER BY lease_until LIMIT $2
	FOR UPDATE SKIP LOCKED`

// TakeOver claims up to n transactions whose lease expired: in one
// database transaction it locks them (SKIP LOCKED: two nodes never take
// the same one), makes this node their owner until now plus the TTL,
// raises their epoch and version — so the old owner's next write fails
// its compare-and-set — and returns them as written. The write is synced.
func (l *Leaser) TakeOver(ctx context.Context, n int) ([]*tccd.Transaction, error) {
	if n <= 0 {
		return nil, nil
	}
	if l.store.isClosed() {
		return nil, errClosed
	}
	now := l.now()
	var out []*tccd.Transaction
	err := pgx.BeginTxFunc(ctx, l.store.pool, pgx.TxOptions{}, func(dbtx pgx.Tx) error {
		rows, err := dbtx.Query(ctx, takeOverSQL, now, n)
		if err != nil {
			return err
		}
		type cand struct {
			id  string
			v   int64
			rec []byte
		}
		cands, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cand, error) {
			var c cand
			err := r.Scan(&c.id, &c.v, &c.rec)
			return c, err
		})
		if err != nil {
			return err
		}
		for _, c := range cands {
			tx, err := decode(c.rec, uint64(c.v))
			if err != nil {
				return fmt.Errorf("transaction %s: %w", c.id, err)
			}
			tx.Owner, tx.Epoch, tx.LeaseUntil = l.node, tx.Epoch+1, now.Add(l.ttl)
			rec, err := encode(tx)
			if err != nil {
				return err
			}
			var v int64
			if err := dbtx.QueryRow(ctx, `UPDATE tccd_transactions
				SET owner = $2, epoch = epoch + 1, lease_until = $3, version = version + 1, record = $4
				WHERE id = $1 RETURNING version`, c.id, l.node, tx.LeaseUntil, rec).Scan(&v); err != nil {
				return err
			}
			tx.Version = uint64(v)
			out = append(out, tx)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: take over expired leases: %w", err)
	}
	return out, nil
}
