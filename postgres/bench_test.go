package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/internal/pgtest"
	"github.com/tccd/tccd/postgres"
)

func benchTx(id string) *tccd.Transaction {
	now := time.Now()
	return &tccd.Transaction{
		ID: id, Protocol: tccd.ProtocolAtomikos, State: tccd.StateConfirming, CreatedAt: now, UpdatedAt: now, DecidedAt: now,
		Participants: []tccd.Participant{
			{URI: "http://127.0.0.1:9001/reservations/" + id, Expires: now.Add(time.Minute), State: tccd.ParticipantPending},
			{URI: "http://127.0.0.1:9002/reservations/" + id, Expires: now.Add(time.Minute), State: tccd.ParticipantPending},
		},
	}
}

var benchSeq atomic.Int64

// BenchmarkCreate measures the decision write (a transaction with two
// links) from 1, 16 and 64 concurrent writers, with one commit per write
// (MaxBatch 1) and with group commit (the defaults), durable or not.
// writes/s is the figure to compare: with group commit, concurrent
// durable writes share the flush of PostgreSQL's log and the round trip.
func BenchmarkCreate(b *testing.B) {
	modes := []struct {
		name string
		opts postgres.Options
	}{
		{"single", postgres.Options{MaxBatch: 1, MaxConns: 64}},
		{"grouped", postgres.Options{}},
	}
	for _, durable := range []bool{true, false} {
		for _, mode := range modes {
			for _, writers := range []int{1, 16, 64} {
				b.Run(fmt.Sprintf("durable=%v/commit=%s/writers=%d", durable, mode.name, writers), func(b *testing.B) {
					benchCreate(b, mode.opts, writers, durable)
				})
			}
		}
	}
}

func benchCreate(b *testing.B, opts postgres.Options, writers int, durable bool) {
	s, err := postgres.Open(context.Background(), pgtest.NewDatabase(b), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				tx := benchTx(fmt.Sprintf("b%09d", benchSeq.Add(1)))
				if err := s.Create(context.Background(), tx, durable); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}
