package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
)

// Defaults of the inflight workload.
const (
	DefaultInflightCount      = 10000 // active transactions (phase A)
	DefaultInflightConfirming = 1000  // confirms held in flight at most (phase B)
	// serverConnBytes is what net/http's server keeps per open
	// connection: a 4 KiB bufio.Reader and a 4 KiB bufio.Writer.
	serverConnBytes = 8 << 10
	// callConnBytes is the same for one of tccd's outbound participant
	// connections, whose transport is set to 1 KiB buffers (http/caller.go).
	callConnBytes = 2 << 10
	// TargetHeapPerTxBytes is the performance target for the heap of an
	// in-flight transaction.
	TargetHeapPerTxBytes = 4 << 10
)

// HeapStats is what tccd's debug listener answers on GET /debug/heap,
// after forced collections.
type HeapStats struct {
	HeapAlloc   int64 `json:"heap_alloc"`
	HeapObjects int64 `json:"heap_objects"`
	StackInuse  int64 `json:"stack_inuse"`
	Goroutines  int64 `json:"goroutines"`
}

// InflightPhase is one phase of the inflight workload.
type InflightPhase struct {
	Transactions    int            `json:"transactions"` // in flight while measured
	Errors          int            `json:"errors"`
	ErrorsByKind    map[string]int `json:"errors_by_kind,omitempty"`
	Before          HeapStats      `json:"before"`
	After           HeapStats      `json:"after"`
	HeapPerTxBytes  float64        `json:"heap_per_tx_bytes"`
	ObjectsPerTx    float64        `json:"heap_objects_per_tx"`
	StackPerTxBytes float64        `json:"stack_per_tx_bytes"`
	GoroutinesPerTx float64        `json:"goroutines_per_tx"`
	SetupSeconds    float64        `json:"setup_seconds"` // to get them all in flight
}

// InflightReport is the result of the inflight workload. It is memory, not
// throughput: there is no null-coordinator baseline.
type InflightReport struct {
	Workload     string `json:"workload"`
	Participants int    `json:"participants"`
	Concurrency  int    `json:"concurrency"` // initiators beginning the active transactions
	Note         string `json:"note"`
	// The headline figures, per transaction in flight.
	HeapPerActiveTxBytes      float64 `json:"heap_per_active_tx_bytes"`
	StackPerActiveTxBytes     float64 `json:"stack_per_active_tx_bytes"`
	GoroutinesPerActiveTx     float64 `json:"goroutines_per_active_tx"`
	HeapPerConfirmingTxBytes  float64 `json:"heap_per_confirming_tx_bytes"`
	StackPerConfirmingTxBytes float64 `json:"stack_per_confirming_tx_bytes"`
	GoroutinesPerConfirmingTx float64 `json:"goroutines_per_confirming_tx"`
	// ConnBuffersPerConfirmingTxBytes is the nominal share of the
	// confirming figure that is net/http's connection buffers: 8 KiB for
	// the inbound request's connection and 8 KiB for each outbound call's.
	ConnBuffersPerConfirmingTxBytes int           `json:"conn_buffers_per_confirming_tx_bytes"`
	TargetHeapPerTxBytes            int           `json:"target_heap_per_tx_bytes"`
	Active                          InflightPhase `json:"active"`
	Confirming                      InflightPhase `json:"confirming"`
}

const inflightNote = "memory, not throughput: no null-coordinator baseline is measured"

// runInflight is the inflight workload: tccd's Go heap per transaction in
// flight, active (begun, links enlisted, not decided) and confirming (a
// one-shot confirm waiting for participants that hold their answer).
func runInflight(ctx context.Context, cfg Config, dataDir string, parts []string) (*InflightReport, error) {
	k := cfg.Participants[0]
	n := cfg.Count
	m := cfg.Confirming
	if m == 0 {
		m = min(n, DefaultInflightConfirming)
	}
	m, err := fitConfirming(m, cfg.Concurrency, k, cfg.Err)
	if err != nil {
		return nil, err
	}
	debugAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, fmt.Errorf("debug listener: %w", err)
	}
	// The held calls must outlive the measurement: a call timeout or a
	// confirm wait running out would end some of them first. Neither
	// changes what a transaction in flight holds in memory.
	args := []string{"serve", "--listen", "127.0.0.1:0", "--data", dataDir, "--log-format", "json", "--log-level", "info",
		"--call-timeout", "2m", "--confirm-wait", "50s"}
	args = append(args, cfg.ServeArgs...)
	args = append(args, "--debug-listen", debugAddr)
	p, err := startProc(ctx, "tccd", cfg.Self, args, tccdListening)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if err := waitReady(ctx, p.url()); err != nil {
		return nil, err
	}
	heapURL := "http://" + debugAddr + "/debug/heap"
	rep := &InflightReport{
		Workload: WorkloadInflight, Participants: k, Concurrency: cfg.Concurrency, Note: inflightNote,
		ConnBuffersPerConfirmingTxBytes: serverConnBytes + k*callConnBytes, TargetHeapPerTxBytes: TargetHeapPerTxBytes,
	}

	// Phase A: n active transactions.
	client := newHTTPClient(cfg.Concurrency)
	defer client.CloseIdleConnections()
	l := &load{client: client, target: p.url(), participants: parts, k: k}
	// Warm-up, left active and so part of the baseline: the connections of
	// the initiators, the server's and the store's first allocations.
	warm := max(100, 2*cfg.Concurrency)
	if _, errs := l.beginActive(ctx, cfg.Concurrency, warm, "warm"); sum(errs) > 0 {
		return nil, fmt.Errorf("warm-up: %d of %d transactions failed: %v", sum(errs), warm, errs)
	}
	if rep.Active.Before, err = heapStats(ctx, heapURL); err != nil {
		return nil, err
	}
	start := time.Now()
	ok, errs := l.beginActive(ctx, cfg.Concurrency, n, "active")
	rep.Active.SetupSeconds = time.Since(start).Seconds()
	rep.Active.Transactions, rep.Active.Errors, rep.Active.ErrorsByKind = ok, sum(errs), errs
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if ok == 0 {
		return nil, fmt.Errorf("no active transaction could be begun: %v", errs)
	}
	if rep.Active.After, err = heapStats(ctx, heapURL); err != nil {
		return nil, err
	}
	rep.Active.perTx()
	fmt.Fprintf(cfg.Err, "active: %d transactions with %d links in %.1fs (%d errors): %.0f B of heap, %.0f B of stack, %.2f goroutines each\n",
		ok, k, rep.Active.SetupSeconds, rep.Active.Errors, rep.Active.HeapPerTxBytes, rep.Active.StackPerTxBytes, rep.Active.GoroutinesPerTx)

	// Phase B: m one-shot confirms held in flight by the participants.
	if rep.Confirming.Before, err = heapStats(ctx, heapURL); err != nil {
		return nil, err
	}
	if err := holdConfirms(ctx, cfg, p.url(), heapURL, parts, k, m, &rep.Confirming); err != nil {
		return nil, err
	}
	rep.Confirming.perTx()
	fmt.Fprintf(cfg.Err, "confirming: %d one-shot confirms held in flight after %.1fs: %.0f B of heap, %.0f B of stack, %.2f goroutines each; %d errors once released\n",
		m, rep.Confirming.SetupSeconds, rep.Confirming.HeapPerTxBytes, rep.Confirming.StackPerTxBytes, rep.Confirming.GoroutinesPerTx, rep.Confirming.Errors)

	rep.HeapPerActiveTxBytes, rep.StackPerActiveTxBytes, rep.GoroutinesPerActiveTx = rep.Active.HeapPerTxBytes, rep.Active.StackPerTxBytes, rep.Active.GoroutinesPerTx
	rep.HeapPerConfirmingTxBytes, rep.StackPerConfirmingTxBytes, rep.GoroutinesPerConfirmingTx = rep.Confirming.HeapPerTxBytes, rep.Confirming.StackPerTxBytes, rep.Confirming.GoroutinesPerTx
	return rep, nil
}

// perTx divides the growth between Before and After by the transactions.
func (ph *InflightPhase) perTx() {
	n := float64(ph.Transactions)
	if n == 0 {
		return
	}
	ph.HeapPerTxBytes = math.Round(float64(ph.After.HeapAlloc-ph.Before.HeapAlloc) / n)
	ph.ObjectsPerTx = math.Round(float64(ph.After.HeapObjects-ph.Before.HeapObjects)/n*10) / 10
	ph.StackPerTxBytes = math.Round(float64(ph.After.StackInuse-ph.Before.StackInuse) / n)
	ph.GoroutinesPerTx = math.Round(float64(ph.After.Goroutines-ph.Before.Goroutines)/n*100) / 100
}

// beginActive begins count native transactions with l.k links each, on
// conc initiators, and leaves them active (10-minute timeout). It returns
// how many it began with all their links, and the errors by kind.
func (l *load) beginActive(ctx context.Context, conc, count int, tag string) (int, map[string]int) {
	var next, good atomic.Int64
	var mu sync.Mutex
	errs := map[string]int{}
	expires := time.Now().Add(30 * time.Minute).UTC().Format(time.RFC3339)
	var wg sync.WaitGroup
	for w := 0; w < min(conc, count); w++ {
		wg.Go(func() {
			var buf bytes.Buffer
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(count) {
					return
				}
				if err := l.active(ctx, &buf, tag+"-"+strconv.FormatInt(i, 10), expires); err != nil {
					if ctx.Err() != nil {
						return
					}
					mu.Lock()
					errs[errorKind(err)]++
					mu.Unlock()
					continue
				}
				good.Add(1)
			}
		})
	}
	wg.Wait()
	return int(good.Load()), errs
}

// active begins one transaction and enlists l.k links.
func (l *load) active(ctx context.Context, buf *bytes.Buffer, name, expires string) error {
	body, err := l.do(ctx, http.MethodPost, "/api/v1/transactions", "application/json", []byte(`{"timeout":"10m"}`), http.StatusCreated, "begin")
	if err != nil {
		return err
	}
	id := idFrom(body)
	if id == "" {
		return errors.New("begin: no id in the answer")
	}
	for i := 0; i < l.k; i++ {
		buf.Reset()
		linkJSON(buf, l.participants[i%len(l.participants)]+"/r/"+name+"-"+strconv.Itoa(i), expires)
		if _, err := l.do(ctx, http.MethodPost, "/api/v1/transactions/"+id+"/participants", "application/json", buf.Bytes(), http.StatusCreated, "enlist"); err != nil {
			return err
		}
	}
	return nil
}

// holdConfirms sends m concurrent one-shot confirms of k links whose
// participants hold every call, waits until the participants hold all k×m
// calls (every confirm is then decided and waiting on its participants,
// every inbound request waiting for its outcome), measures, and releases
// them. ph.Before must be measured already.
func holdConfirms(ctx context.Context, cfg Config, target, heapURL string, parts []string, k, m int, ph *InflightPhase) error {
	client := newHTTPClient(m)
	defer client.CloseIdleConnections()
	l := &load{client: client, target: target}
	ctl := newHTTPClient(len(parts))
	defer ctl.CloseIdleConnections()
	expires := time.Now().Add(10 * time.Minute).UTC().Format(time.RFC3339)
	var mu sync.Mutex
	errs := map[string]int{}
	var returned atomic.Int64 // confirms answered, or failed
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < m; i++ {
		wg.Go(func() {
			defer returned.Add(1)
			var buf bytes.Buffer
			uris := make([]string, k)
			for j := range uris {
				uris[j] = parts[j%len(parts)] + "/hold/c" + strconv.Itoa(i) + "-" + strconv.Itoa(j)
			}
			linkBody(&buf, uris, expires)
			if _, err := l.do(ctx, http.MethodPut, "/coordinator/confirm", "application/tcc+json", buf.Bytes(), http.StatusNoContent, "confirm"); err != nil {
				mu.Lock()
				errs[errorKind(err)]++
				mu.Unlock()
			}
		})
	}
	// Whatever happens next, the held calls are let go and the confirms
	// waited for.
	released := false
	release := func() {
		if released {
			return
		}
		released = true
		for _, p := range parts {
			if resp, err := ctl.Post(p+"/release", "", nil); err == nil {
				resp.Body.Close()
			}
		}
	}
	defer func() {
		release()
		wg.Wait()
	}()

	want := int64(k * m)
	deadline := time.Now().Add(45 * time.Second) // within tccd's confirm wait
	for {
		held, err := heldCalls(ctx, ctl, parts)
		if err != nil {
			return err
		}
		if held == want {
			break
		}
		if r := returned.Load(); r > 0 {
			mu.Lock()
			kinds := fmt.Sprint(errs)
			mu.Unlock()
			return fmt.Errorf("confirming: %d of %d confirms answered before their participants were released (errors %s)", r, m, kinds)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("confirming: participants hold %d of %d calls after 45s", held, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	ph.SetupSeconds = time.Since(start).Seconds()
	var err error
	if ph.After, err = heapStats(ctx, heapURL); err != nil {
		return err
	}
	ph.Transactions = m
	release()
	wg.Wait()
	ph.Errors, ph.ErrorsByKind = sum(errs), errs
	return ctx.Err()
}

// heldCalls sums the calls the participants hold.
func heldCalls(ctx context.Context, c *http.Client, parts []string) (int64, error) {
	var total int64
	for _, p := range parts {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p+"/held", nil)
		if err != nil {
			return 0, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, fmt.Errorf("participant %s: %w", p, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("participant %s: %w", p, err)
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("participant %s: held calls: %w", p, err)
		}
		total += v
	}
	return total, nil
}

// heapStats asks tccd's debug listener for its heap after forced
// collections.
func heapStats(ctx context.Context, url string) (HeapStats, error) {
	var hs HeapStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return hs, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return hs, fmt.Errorf("heap figures: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return hs, fmt.Errorf("heap figures: %s answered HTTP %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&hs); err != nil {
		return hs, fmt.Errorf("heap figures: %w", err)
	}
	return hs, nil
}

// fitConfirming returns how many confirms can be held at once within the
// open-file limit: this process needs one descriptor per confirm and per
// initiator, tccd one per confirm and k per confirm for its calls. Go
// raises its soft limit to the hard limit at start, in every process; this
// raises it here too in case something lowered it, and lowers m (saying
// so) if the hard limit is too low.
func fitConfirming(m, conc, k int, errw io.Writer) (int, error) {
	const spare = 256 // listeners, the store's files, the idle connections of phase A
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("open-file limit: %w", err)
	}
	need := uint64((1+k)*m + conc + spare)
	if lim.Cur < need && lim.Cur < lim.Max {
		lim.Cur = min(need, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raise the open-file limit to %d: %w", lim.Cur, err)
		}
	}
	if lim.Cur >= need {
		return m, nil
	}
	fit := (int(lim.Cur) - conc - spare) / (1 + k)
	if fit < 1 {
		return 0, fmt.Errorf("the open-file limit (%d) is too low for the confirming phase; raise ulimit -n", lim.Cur)
	}
	fmt.Fprintf(errw, "open-file limit %d: holding %d confirms instead of %d\n", lim.Cur, fit, m)
	return fit, nil
}

// freeLoopbackAddr returns a loopback address with a port free right now.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

func (r *InflightReport) writeTable(w io.Writer) {
	fmt.Fprintf(w, "\nworkload inflight: tccd's Go heap per transaction in flight, %d participants per transaction\n", r.Participants)
	fmt.Fprintf(w, "(live heap after forced collections, before and after; %s)\n\n", r.Note)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\ttransactions\theap B/tx\theap objects/tx\tstack B/tx\tgoroutines/tx\theap MiB before\theap MiB after\terrors\t")
	row := func(name string, ph InflightPhase) {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.1f\t%.0f\t%.2f\t%.1f\t%.1f\t%d\t\n", name, ph.Transactions, ph.HeapPerTxBytes, ph.ObjectsPerTx,
			ph.StackPerTxBytes, ph.GoroutinesPerTx, float64(ph.Before.HeapAlloc)/(1<<20), float64(ph.After.HeapAlloc)/(1<<20), ph.Errors)
	}
	row("active", r.Active)
	row("confirming", r.Confirming)
	tw.Flush()
	fmt.Fprintf(w, "\nactive: begun and %d links enlisted, not decided (%d initiators, 10-minute timeout).\n", r.Participants, r.Concurrency)
	fmt.Fprintf(w, "confirming: one-shot confirms decided and waiting for participants that hold their answer. This figure\n"+
		"includes the HTTP connection buffers of the %d inbound requests and the %d outbound calls: net/http keeps\n"+
		"8 KiB per inbound connection and tccd's transport 2 KiB per outbound one, %d B per transaction here.\n",
		r.Confirming.Transactions, r.Participants*r.Confirming.Transactions, r.ConnBuffersPerConfirmingTxBytes)
	fmt.Fprintf(w, "target: at most %d B of heap per in-flight transaction.\n", r.TargetHeapPerTxBytes)
	for _, ph := range []InflightPhase{r.Active, r.Confirming} {
		if ph.Errors > 0 {
			kinds := make([]string, 0, len(ph.ErrorsByKind))
			for k, v := range ph.ErrorsByKind {
				kinds = append(kinds, fmt.Sprintf("%s=%d", k, v))
			}
			sort.Strings(kinds)
			fmt.Fprintf(w, "errors: %s\n", strings.Join(kinds, " "))
		}
	}
}
