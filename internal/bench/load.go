package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Workloads.
const (
	WorkloadOneShot    = "oneshot"    // PUT /coordinator/confirm with K links
	WorkloadRegistered = "registered" // begin, K enlists, confirm
	WorkloadCancelMix  = "cancel-mix" // one-shot, a share of them cancelled
	WorkloadRecovery   = "recovery"   // restart on a data dir holding --fill unfinished transactions
	WorkloadInflight   = "inflight"   // heap per transaction in flight, active and confirming
	// WorkloadBarrier creates and confirms K links in one request, in
	// barrier mode (forsrc's POST /tcc/api/v1/tcc/): each participant
	// reports to the coordinator and waits for the round's outcome before
	// it answers. It is compared with the one-shot workload on the same
	// coordinator, phase by phase, not with the null coordinator.
	WorkloadBarrier = "barrier"
)

// Workloads lists the workload names.
var Workloads = []string{WorkloadOneShot, WorkloadRegistered, WorkloadCancelMix, WorkloadRecovery, WorkloadInflight, WorkloadBarrier}

// load is one measured phase against one system.
type load struct {
	client *http.Client
	target string // base URL of the coordinator (tccd or null)
	// targets, when set, are the base URLs of a cluster's nodes: worker
	// w sends everything to targets[w % len(targets)], as clients behind
	// a load balancer that keeps their connections.
	targets      []string
	participants []string // base URLs of participant processes
	workload     string
	k            int     // links per transaction
	cancelRatio  float64 // for cancel-mix
	seq          *atomic.Int64
}

// sample is what one worker measured.
type sample struct {
	lat    []time.Duration
	errors map[string]int
}

// phase is the outcome of running a load for a while.
type phase struct {
	tx      int
	elapsed time.Duration
	lat     []time.Duration // sorted
	errors  map[string]int
}

// run drives the load with conc workers until ctx ends or count
// transactions are done (count 0: no limit). progress is called with the
// running total about every tick.
func (l *load) run(ctx context.Context, conc, count int, progress func(done int64, errs int64)) phase {
	var done, errs atomic.Int64
	samples := make([]sample, conc)
	var wg sync.WaitGroup
	start := time.Now()
	stopTick := make(chan struct{})
	if progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					progress(done.Load(), errs.Load())
				case <-stopTick:
					return
				}
			}
		}()
	}
	for w := 0; w < conc; w++ {
		wg.Add(1)
		wl := *l
		if len(l.targets) > 0 {
			wl.target = l.targets[w%len(l.targets)]
		}
		go func(s *sample, l *load) {
			defer wg.Done()
			s.errors = map[string]int{}
			var buf bytes.Buffer
			uris := make([]string, l.k)
			for ctx.Err() == nil {
				if count > 0 && done.Load() >= int64(count) {
					return
				}
				n := l.seq.Add(1)
				for i := range uris {
					uris[i] = l.participants[i%len(l.participants)] + "/r/" + strconv.FormatInt(n, 10) + "-" + strconv.Itoa(i)
				}
				cancel := l.workload == WorkloadCancelMix && float64(n%100) < l.cancelRatio*100
				t0 := time.Now()
				err := l.transaction(ctx, &buf, uris, cancel)
				if ctx.Err() != nil && err != nil {
					return // cut off by the end of the phase: not counted
				}
				if err != nil {
					s.errors[errorKind(err)]++
					errs.Add(1)
				} else {
					s.lat = append(s.lat, time.Since(t0))
				}
				done.Add(1)
			}
		}(&samples[w], &wl)
	}
	wg.Wait()
	close(stopTick)
	p := phase{elapsed: time.Since(start), errors: map[string]int{}}
	for _, s := range samples {
		p.lat = append(p.lat, s.lat...)
		for k, v := range s.errors {
			p.errors[k] += v
		}
	}
	slices.Sort(p.lat)
	p.tx = len(p.lat)
	return p
}

// statusError is an unexpected HTTP status.
type statusError struct {
	op     string
	status int
}

func (e *statusError) Error() string { return fmt.Sprintf("%s: HTTP %d", e.op, e.status) }

func errorKind(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s_http_%d", se.op, se.status)
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection_reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "transport"
}

// transaction runs one transaction of the workload.
func (l *load) transaction(ctx context.Context, buf *bytes.Buffer, uris []string, cancel bool) error {
	expires := time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	if l.workload == WorkloadBarrier {
		buf.Reset()
		forsrcBody(buf, uris, expires)
		_, err := l.do(ctx, http.MethodPost, "/tcc/api/v1/tcc/", "application/json", buf.Bytes(), http.StatusOK, "confirm")
		return err
	}
	if l.workload != WorkloadRegistered {
		buf.Reset()
		linkBody(buf, uris, expires)
		path, want := "/coordinator/confirm", http.StatusNoContent
		if cancel {
			path = "/coordinator/cancel"
		}
		_, err := l.do(ctx, http.MethodPut, path, "application/tcc+json", buf.Bytes(), want, "confirm")
		return err
	}
	body, err := l.do(ctx, http.MethodPost, "/api/v1/transactions", "application/json", []byte(`{"timeout":"1m"}`), http.StatusCreated, "begin")
	if err != nil {
		return err
	}
	id := idFrom(body)
	if id == "" {
		return errors.New("begin: no id in the answer")
	}
	base := "/api/v1/transactions/" + id
	for _, u := range uris {
		buf.Reset()
		linkJSON(buf, u, expires)
		if _, err := l.do(ctx, http.MethodPost, base+"/participants", "application/json", buf.Bytes(), http.StatusCreated, "enlist"); err != nil {
			return err
		}
	}
	end := "/confirm"
	if cancel {
		end = "/cancel"
	}
	_, err = l.do(ctx, http.MethodPut, base+end, "", nil, http.StatusOK, "confirm")
	return err
}

func (l *load) do(ctx context.Context, method, path, ctype string, body []byte, want int, op string) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, l.target+path, rd)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, &statusError{op: op, status: resp.StatusCode}
	}
	return out, nil
}

// percentile returns the q-quantile (0..1) of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}
