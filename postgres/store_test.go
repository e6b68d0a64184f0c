package postgres_test

import (
	"context"
	"testing"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/internal/pgtest"
	"github.com/tccd/tccd/postgres"
	"github.com/tccd/tccd/storetest"
)

// TestConformance runs the store suite, each subtest on a database of its
// own (see pgtest).
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dsn := pgtest.NewDatabase(t)
		return func() (tccd.Store, error) { return postgres.Open(context.Background(), dsn, postgres.Options{}) }
	})
}

// TestConformanceWithoutGroupCommit runs the suite with one commit per
// write: the two paths must keep the same contract.
func TestConformanceWithoutGroupCommit(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dsn := pgtest.NewDatabase(t)
		return func() (tccd.Store, error) {
			return postgres.Open(context.Background(), dsn, postgres.Options{MaxBatch: 1})
		}
	})
}
