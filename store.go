package tccd

import (
	"context"
	"time"
)

// Store is the coordinator's log. Implementations: pebble.Store (embedded,
// single node) and postgres.Store (a PostgreSQL database, meant to be
// shared by several nodes); the conformance suite in storetest states the
// contract as tests, and every implementation must pass it.
//
// Contract, for every implementation:
//   - Methods are safe for concurrent use.
//   - A write with durable=true returns only after the write is on stable
//     storage (fsync or equivalent). Concurrent durable writes may share one
//     sync (group commit). A write with durable=false may be lost in a crash,
//     but writes of one transaction are never reordered: after a crash the
//     stored record is one that was written, never a mix.
//   - Create fails with an *Error of code EConflict if the id exists.
//   - Update is a compare-and-set: it succeeds only if the stored Version
//     equals tx.Version and the state change is allowed by CanTransition;
//     otherwise it fails with EConflict (or ENotFound if the id is gone) and
//     changes nothing. On success it stores tx with Version+1 and sets
//     tx.Version to the new value.
//   - Get and List return copies the caller may change.
//   - An error that is not an *Error means the store failed (I/O, full
//     disk); the caller must not assume the write happened, nor that it did not.
type Store interface {
	// Create stores a new transaction with Version 1 (tx.Version is set).
	Create(ctx context.Context, tx *Transaction, durable bool) error
	// Get returns the transaction with the given id, or ENotFound.
	Get(ctx context.Context, id string) (*Transaction, error)
	// Update replaces a transaction, compare-and-set on Version (see above).
	Update(ctx context.Context, tx *Transaction, durable bool) error
	// List returns transactions newest first (by CreatedAt, then ID),
	// filtered by state if f.State is set, starting after f.Cursor, at most
	// f.Limit of them, and the cursor of the next page ("" at the end).
	List(ctx context.Context, f Filter) ([]*Transaction, string, error)
	// Unfinished calls fn for every transaction in a state that is not
	// final (active, confirming, cancelling, compensating), and for every
	// transaction whose Notification.State is
	// NotificationPending, in no particular order, until fn returns an
	// error.
	Unfinished(ctx context.Context, fn func(*Transaction) error) error
	// Purge deletes up to limit transactions that reached a final state
	// before the given time and returns how many it deleted. Which go first
	// when there are more than limit is the implementation's choice.
	Purge(ctx context.Context, finishedBefore time.Time, limit int) (int, error)
	// Close releases the store. Writes acknowledged with durable=false may
	// be synced by Close; after Close every method fails.
	Close() error
}

// Filter selects transactions for Store.List.
type Filter struct {
	State  State  // "" for all
	Cursor string // opaque; "" for the first page
	Limit  int    // > 0
}
