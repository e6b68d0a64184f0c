package pebble_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/pebble"
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

// BenchmarkCreate measures the decision write: one transaction with two
// links, synced (durable) or not, from 1 or 64 writers. With 64 writers
// the synced writes share fsyncs (group commit); compare ns/op across the
// sub-benchmarks with benchstat.
func BenchmarkCreate(b *testing.B) {
	for _, durable := range []bool{false, true} {
		for _, writers := range []int{1, 64} {
			b.Run(fmt.Sprintf("durable=%v/writers=%d", durable, writers), func(b *testing.B) {
				s, err := pebble.Open(b.TempDir(), pebble.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				var n atomic.Int64
				b.SetParallelism((writers + 1) / 2) // GOMAXPROCS is 2 here
				if writers == 1 {
					b.SetParallelism(1)
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						tx := benchTx(fmt.Sprintf("b%09d", n.Add(1)))
						if err := s.Create(context.Background(), tx, durable); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkUpdate measures a state transition (compare-and-set), unsynced.
func BenchmarkUpdate(b *testing.B) {
	s, err := pebble.Open(b.TempDir(), pebble.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	tx := benchTx("u")
	if err := s.Create(ctx, tx, false); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tx.Participants[0].Attempts = i
		if err := s.Update(ctx, tx, false); err != nil {
			b.Fatal(err)
		}
	}
}
