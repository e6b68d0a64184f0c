package bench

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// sseReaders are subscribers of the coordinator's event stream (GET
// /api/v1/events) that read every event as fast as they can, so that a
// phase measures the cost of serving them.
type sseReaders struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	events atomic.Int64
	lagged atomic.Int64
	errs   atomic.Int64
}

// startSSE opens n event streams on the coordinator at base.
func startSSE(ctx context.Context, base string, n int) *sseReaders {
	ctx, cancel := context.WithCancel(ctx)
	r := &sseReaders{cancel: cancel}
	for i := 0; i < n; i++ {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.read(ctx, base)
		}()
	}
	return r
}

func (r *sseReaders) read(ctx context.Context, base string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/events", nil)
	if err != nil {
		r.errs.Add(1)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.errs.Add(1)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.errs.Add(1)
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "event: ") {
			continue
		}
		r.events.Add(1)
		if line == "event: lagged" {
			r.lagged.Add(1)
			return
		}
	}
}

// stop closes the streams and waits for the readers.
func (r *sseReaders) stop() {
	r.cancel()
	r.wg.Wait()
}
