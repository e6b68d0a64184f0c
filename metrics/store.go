package metrics

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/tccd/tccd"
)

// Store is a tccd.Store that times the writes of the one it wraps; its
// other methods are the wrapped store's.
type Store struct {
	tccd.Store
	m *Metrics
}

var _ tccd.Store = (*Store)(nil)

// Store returns next with its writes timed: give it to the coordinator.
// Keep next for what needs the concrete store (a cluster's leases).
func (m *Metrics) Store(next tccd.Store) *Store { return &Store{Store: next, m: m} }

// Create creates tx in the wrapped store and times the write.
func (s *Store) Create(ctx context.Context, tx *tccd.Transaction, durable bool) error {
	start := time.Now()
	err := s.Store.Create(ctx, tx, durable)
	s.observe(start, durable, err)
	return err
}

// Update updates tx in the wrapped store and times the write.
func (s *Store) Update(ctx context.Context, tx *tccd.Transaction, durable bool) error {
	start := time.Now()
	err := s.Store.Update(ctx, tx, durable)
	s.observe(start, durable, err)
	return err
}

// observe records a write. A refusal of the store's contract (an
// *tccd.Error: a compare-and-set conflict, a missing record) is a normal
// answer; any other error is a failure of the store.
func (s *Store) observe(start time.Time, durable bool, err error) {
	synced := strconv.FormatBool(durable)
	s.m.storeTime.WithLabelValues(synced).Observe(time.Since(start).Seconds())
	var e *tccd.Error
	if err != nil && !errors.As(err, &e) {
		s.m.storeFails.WithLabelValues(synced).Inc()
	}
}
