package examplecmd

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sync"
)

// BatchFlags are the flags of an initiator command that runs a batch of
// business operations (bookings, orders).
type BatchFlags struct {
	Count, Concurrency int
	JSON               bool
	// Vanish is for tests and demos: make the tries, then stop without
	// confirming or cancelling, as a crashed initiator would. The
	// reservations are released when they expire.
	Vanish bool
}

// Register adds the flags to fs.
func (b *BatchFlags) Register(fs *flag.FlagSet) {
	fs.IntVar(&b.Count, "count", 1, "how many to run")
	fs.IntVar(&b.Concurrency, "concurrency", 1, "how many at once")
	fs.BoolVar(&b.JSON, "json", false, "print one JSON object per line instead of text")
	fs.BoolVar(&b.Vanish, "vanish-after-try", false, "FOR TESTS AND DEMOS: make the tries, then walk away without confirming or cancelling (expiry cleans up)")
}

// Check reports nonsense values.
func (b *BatchFlags) Check() error {
	if b.Count < 0 || b.Concurrency < 1 {
		return fmt.Errorf("%w: --count must be >= 0 and --concurrency >= 1", ErrUsage)
	}
	return nil
}

// RunBatch runs fn for n = 1 … Count, at most Concurrency at once, and
// prints each result as it comes: its String form, or a JSON line with
// --json.
func RunBatch[T fmt.Stringer](ctx context.Context, b BatchFlags, out io.Writer, fn func(ctx context.Context, n int) T) error {
	var mu sync.Mutex
	var werr error
	print := func(v T) {
		mu.Lock()
		defer mu.Unlock()
		var err error
		if b.JSON {
			err = json.NewEncoder(out).Encode(v)
		} else {
			_, err = fmt.Fprintln(out, v.String())
		}
		if werr == nil {
			werr = err
		}
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(b.Concurrency, max(b.Count, 1)) {
		wg.Go(func() {
			for n := range work {
				print(fn(ctx, n))
			}
		})
	}
	for n := 1; n <= b.Count && ctx.Err() == nil; n++ {
		work <- n
	}
	close(work)
	wg.Wait()
	if werr != nil {
		return werr
	}
	return ctx.Err()
}
