package tccd_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/pebble"
)

// instantCaller answers every call at once with 204: the benchmark below
// measures the engine and its log, not HTTP.
type instantCaller struct{}

func (instantCaller) Call(context.Context, tccd.Call) tccd.CallResult {
	return tccd.CallResult{Status: 204, Duration: time.Microsecond}
}

// BenchmarkConfirmLinks measures the engine's work for a one-shot confirm
// of two links: decide (synced, group commit across the parallel
// goroutines), drive the participants, record the outcome. Compare with
// BenchmarkCreate in pebble/ to see what the engine adds to the log.
func BenchmarkConfirmLinks(b *testing.B) {
	for _, par := range []int{1, 64} {
		b.Run(fmt.Sprintf("parallel=%d", par), func(b *testing.B) {
			dir, err := os.MkdirTemp("", "tccd-bench")
			if err != nil {
				b.Fatal(err)
			}
			defer os.RemoveAll(dir)
			store, err := pebble.Open(dir, pebble.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			coord := tccd.NewCoordinator(tccd.Config{}, store, instantCaller{}, nil, nil)
			if err := coord.Open(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer coord.Close()
			var n atomic.Int64
			exp := time.Now().Add(time.Hour)
			b.SetParallelism(max(1, par/2))
			b.ReportAllocs()
			cpu0 := processCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := strconv.FormatInt(n.Add(1), 10)
					links := []tccd.Link{
						{URI: "http://127.0.0.1:9001/r/" + id, Expires: exp},
						{URI: "http://127.0.0.1:9002/r/" + id, Expires: exp},
					}
					tx, err := coord.ConfirmLinks(context.Background(), links, atomikos(links))
					if err != nil || tx.State != tccd.StateConfirmed {
						b.Errorf("ConfirmLinks = %v, %v", tx, err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// processCPU is the CPU time (user + system) the process has used so far:
// on a machine whose cores are all busy, CPU per operation, not wall time,
// is what bounds throughput.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
