package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tccd/tccd"
)

// Config is what `tccd bench` is told.
type Config struct {
	// Self is the tccd binary: the benchmark starts `Self serve`,
	// `Self bench-participant` and `Self bench-null`.
	Self string
	// Coordinator, when set, is the URL of a running coordinator to
	// measure instead of starting one (CPU and memory are then not known).
	Coordinator string
	Workload    string
	// Participants lists the links per transaction to measure; the first
	// is the headline, all of them make the cost curve.
	Participants []int
	// ParticipantProcs is how many participant processes share the links.
	ParticipantProcs   int
	Concurrency        int
	Duration           time.Duration // per measured phase
	Count              int           // transactions per measured phase, instead of Duration
	Warmup             time.Duration
	Rounds             int // phases per system, alternating tccd and the baseline
	ParticipantLatency time.Duration
	CancelRatio        float64
	// Fill is, for the recovery workload, how many unfinished
	// transactions the data directory holds at the start.
	Fill int
	// FillFinished is how many finished transactions the started
	// coordinator's data directory holds before the load (retention).
	FillFinished int
	// Confirming is, for the inflight workload, how many one-shot
	// confirms are held in flight at once (0: min(Count, 1000)); Count
	// is how many active transactions are begun (0: 10,000).
	Confirming int
	// NoLogBaseline leaves out the null+log baseline (see NewNullCoordinator).
	NoLogBaseline bool
	// SSE is how many event-stream subscribers read every event of the
	// coordinator during its phases (its cost is in tccd's figures).
	SSE     int
	DataDir string // "" for a temporary directory
	// Store, when set, is a PostgreSQL URL: the started coordinators use
	// it (a scratch database: the benchmark's transactions stay there),
	// and Nodes lists the cluster sizes to measure (default 1).
	Store     string
	Nodes     []int
	ServeArgs []string
	JSON      bool
	Chart     string // SVG file for the latency chart; "" for none
	Out, Err  io.Writer
	ErrIsTTY  bool
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.Workload == "" {
		c.Workload = WorkloadOneShot
	}
	if len(c.Participants) == 0 {
		c.Participants = []int{2}
	}
	if c.ParticipantProcs == 0 {
		c.ParticipantProcs = 2
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	if c.Workload == WorkloadInflight && c.Count == 0 {
		c.Count = DefaultInflightCount
	}
	if c.Duration == 0 && c.Count == 0 {
		c.Duration = 5 * time.Second
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.CancelRatio == 0 {
		c.CancelRatio = 0.5
	}
	if len(c.Nodes) == 0 {
		c.Nodes = []int{1}
	}
}

// Validate reports settings that make no sense.
func (c *Config) Validate() error {
	var errs []error
	if !slices.Contains(Workloads, c.Workload) {
		errs = append(errs, fmt.Errorf("workload must be one of %v, not %q", Workloads, c.Workload))
	}
	for _, k := range c.Participants {
		if k < 1 || k > 100 {
			errs = append(errs, fmt.Errorf("participants must be from 1 to 100, not %d", k))
		}
	}
	if c.ParticipantProcs < 1 || c.ParticipantProcs > 16 {
		errs = append(errs, fmt.Errorf("participant-procs must be from 1 to 16"))
	}
	if c.Concurrency < 1 || c.Concurrency > 4096 {
		errs = append(errs, fmt.Errorf("concurrency must be from 1 to 4096"))
	}
	if c.Rounds < 1 {
		errs = append(errs, fmt.Errorf("rounds must be at least 1"))
	}
	if c.CancelRatio < 0 || c.CancelRatio > 1 {
		errs = append(errs, fmt.Errorf("cancel-ratio must be from 0 to 1"))
	}
	if c.Workload == WorkloadRecovery && (c.Fill < 1 || c.Coordinator != "") {
		errs = append(errs, fmt.Errorf("the recovery workload needs --fill > 0 and a coordinator it starts itself"))
	}
	if c.Workload == WorkloadBarrier && c.FillFinished > 0 {
		errs = append(errs, fmt.Errorf("the barrier workload starts its participants after the coordinator (they report to it), so it cannot take --fill-finished"))
	}
	if c.Workload == WorkloadInflight && (c.Coordinator != "" || c.Confirming > c.Count) {
		errs = append(errs, fmt.Errorf("the inflight workload needs a coordinator it starts itself (it reads the heap on its debug listener), and no more confirms held than --count"))
	}
	for _, n := range c.Nodes {
		if n < 1 || n > 16 {
			errs = append(errs, fmt.Errorf("nodes must be from 1 to 16, not %d", n))
		}
	}
	if c.Store == "" && (len(c.Nodes) != 1 || c.Nodes[0] != 1) {
		errs = append(errs, fmt.Errorf("several nodes need a shared store: --store postgres://…"))
	}
	if c.Store != "" && (c.Coordinator != "" || (c.Workload != WorkloadOneShot && c.Workload != WorkloadRegistered && c.Workload != WorkloadCancelMix) || c.FillFinished > 0 || c.SSE > 0) {
		errs = append(errs, fmt.Errorf("with --store the benchmark starts the nodes itself and runs the oneshot, registered or cancel-mix workload (no --fill-finished, no --sse)"))
	}
	if c.Duration < 0 || c.Count < 0 || c.Confirming < 0 || c.Warmup < 0 || c.ParticipantLatency < 0 || c.Fill < 0 || c.FillFinished < 0 {
		errs = append(errs, fmt.Errorf("durations and counts must not be negative"))
	}
	return errors.Join(errs...)
}

// system is one coordinator under measurement.
type system struct {
	name string
	url  string
	proc *proc // nil when not started by us
	// workload, when set, is the workload run against this system instead
	// of Config.Workload (the barrier workload's one-shot baseline).
	workload string
	// A cluster: the load is spread over urls, the CPU read from every
	// node, and the database's counters from pg.
	urls  []string
	nodes []*proc
	pg    *pgProbe
}

// procs are the processes whose CPU the system's figures count.
func (s system) procs() []*proc {
	if len(s.nodes) > 0 {
		return s.nodes
	}
	if s.proc != nil {
		return []*proc{s.proc}
	}
	return nil
}

// Run starts the processes, measures, and prints the report.
func Run(ctx context.Context, cfg Config) error {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	dataDir := cfg.DataDir
	if dataDir == "" {
		d, err := os.MkdirTemp("", "tccd-bench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dataDir = d
	}

	// The barrier workload's participants report to the coordinator: it
	// starts first, and they are told its URL.
	barrier := cfg.Workload == WorkloadBarrier
	coord := system{name: "tccd", url: cfg.Coordinator}
	startTccd := func() error {
		if coord.url != "" {
			return nil
		}
		args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data", dataDir, "--log-format", "json", "--log-level", "info"}, cfg.ServeArgs...)
		p, err := startProc(ctx, "tccd", cfg.Self, args, tccdListening)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		coord.url, coord.proc = p.url(), p
		return nil
	}
	partArgs := []string{"bench-participant", "--listen", "127.0.0.1:0", "--latency", cfg.ParticipantLatency.String()}
	if barrier {
		if err := startTccd(); err != nil {
			return err
		}
		partArgs = append(partArgs, "--coordinator", coord.url)
	}
	var partURLs []string
	nparts := min(cfg.ParticipantProcs, slices.Max(cfg.Participants))
	for i := 0; i < nparts; i++ {
		p, err := startProc(ctx, "participant", cfg.Self, partArgs, listeningLine)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		partURLs = append(partURLs, p.url())
	}
	if cfg.Store != "" {
		return runCluster(ctx, cfg, dataDir, partURLs, &procs)
	}
	if cfg.Workload == WorkloadRecovery {
		rep, err := runRecovery(ctx, cfg, dataDir, partURLs)
		if err != nil {
			return err
		}
		if cfg.JSON {
			return writeJSON(cfg.Out, rep)
		}
		fmt.Fprintf(cfg.Out, "\nrecovery of %d unfinished transactions (%d participants each): ready after %.0f ms, all settled after %.0f ms, peak RSS %.1f MiB\n",
			rep.Unfinished, rep.Participants, rep.ReadyMS, rep.SettledMS, float64(rep.PeakRSSBytes)/(1<<20))
		return nil
	}
	if cfg.Workload == WorkloadInflight {
		rep, err := runInflight(ctx, cfg, dataDir, partURLs)
		if err != nil {
			return err
		}
		if cfg.JSON {
			return writeJSON(cfg.Out, rep)
		}
		rep.writeTable(cfg.Out)
		return nil
	}
	if cfg.FillFinished > 0 && cfg.Coordinator == "" {
		fmt.Fprintf(cfg.Err, "writing %d finished transactions into %s\n", cfg.FillFinished, dataDir)
		if err := fill(ctx, dataDir, cfg.FillFinished, tccd.StateConfirmed, partURLs, cfg.Participants[0]); err != nil {
			return fmt.Errorf("fill: %w", err)
		}
	}
	if err := startTccd(); err != nil {
		return err
	}
	if err := waitReady(ctx, coord.url); err != nil {
		return err
	}
	var systems []system
	if barrier {
		// The baseline is the one-shot workload on the same coordinator,
		// its phases alternating with the barrier's.
		oneShot := coord
		oneShot.name, oneShot.workload = "tccd one-shot", WorkloadOneShot
		systems = []system{coord, oneShot}
	} else {
		nullProc, err := startProc(ctx, "null coordinator", cfg.Self, []string{"bench-null", "--listen", "127.0.0.1:0"}, listeningLine)
		if err != nil {
			return err
		}
		procs = append(procs, nullProc)
		systems = []system{coord, {name: "null", url: nullProc.url(), proc: nullProc}}
		if !cfg.NoLogBaseline {
			logDir, err := os.MkdirTemp(dataDir, "null-log")
			if err != nil {
				return err
			}
			p, err := startProc(ctx, "null+log coordinator", cfg.Self, []string{"bench-null", "--listen", "127.0.0.1:0", "--log", logDir}, listeningLine)
			if err != nil {
				return err
			}
			procs = append(procs, p)
			systems = append(systems, system{name: "null+log", url: p.url(), proc: p})
		}
	}

	fsync, err := fsyncRate(dataDir, time.Second)
	if err != nil {
		return fmt.Errorf("fsync probe: %w", err)
	}
	r := &runner{cfg: cfg, client: newHTTPClient(cfg.Concurrency), parts: partURLs, seq: new(atomic.Int64)}
	rep := Report{
		BaselineName: baselineName(systems[1]),
		Workload:     cfg.Workload, Participants: cfg.Participants[0], Concurrency: cfg.Concurrency,
		Rounds: cfg.Rounds, ParticipantLatencyMS: ms(cfg.ParticipantLatency), FsyncPerS: fsync,
		Coordinator: cfg.Coordinator,
	}
	if cfg.Duration > 0 {
		rep.PhaseSeconds = cfg.Duration.Seconds()
	}
	var head []*aggregate
	for i, k := range cfg.Participants {
		aggs, err := r.compare(ctx, systems, k)
		if err != nil {
			return err
		}
		t, b := aggs[0], aggs[1]
		if i == 0 {
			head = aggs
			rep.Figures, rep.Baseline = t.figures(), b.figures()
			rep.Ratio = ratio(rep.TxPerS, rep.Baseline.TxPerS)
			rep.P99Ratio = ratio(rep.P99MS, rep.Baseline.P99MS)
			rep.P50DeltaMS = rep.P50MS - rep.Baseline.P50MS
			if len(aggs) > 2 {
				lf := aggs[2].figures()
				rep.LogBaseline = &lf
				rep.LogBaselineRatio = ratio(lf.TxPerS, rep.Baseline.TxPerS)
				rep.RatioToLog = ratio(rep.TxPerS, lf.TxPerS)
			}
		}
		if len(cfg.Participants) > 1 {
			tf, bf := t.figures(), b.figures()
			rep.Curve = append(rep.Curve, CurvePoint{
				Participants: k, TxPerS: tf.TxPerS, BaselineTxPerS: bf.TxPerS, Ratio: ratio(tf.TxPerS, bf.TxPerS),
				P50MS: tf.P50MS, BaselineP50MS: bf.P50MS, CPUPerTxUS: tf.CPUPerTxUS,
			})
		}
	}
	if cfg.Chart != "" {
		if err := os.WriteFile(cfg.Chart, latencyChart(rep, head), 0o644); err != nil {
			return err
		}
	}
	if cfg.JSON {
		return rep.writeJSON(cfg.Out)
	}
	rep.writeTable(cfg.Out, cfg.Chart)
	return nil
}

type runner struct {
	cfg    Config
	client *http.Client
	parts  []string
	seq    *atomic.Int64
}

// aggregate sums the rounds of one system.
type aggregate struct {
	// sseEvents counts the events the stream subscribers read, sseLagged
	// the subscribers dropped (or refused).
	sseEvents, sseLagged int64
	rates                []float64
	lat                  []time.Duration
	errors               map[string]int
	tx                   int
	cpu                  time.Duration
	cpuOK                bool
	rss                  int64
	// A cluster's: each node's CPU, the phases' time, the database's
	// counters over them.
	nodeCPU             []time.Duration
	elapsed             time.Duration
	pgCommits, walSyncs int64
	pgWrites            int64
	pgCPU               time.Duration
	pgOK, pgCPUOK       bool
}

// compare runs the rounds for k links per transaction, alternating the
// systems (and rotating which goes first) so that drift on a shared
// machine hits all alike. It returns one aggregate per system, in order.
func (r *runner) compare(ctx context.Context, systems []system, k int) ([]*aggregate, error) {
	aggs := make([]*aggregate, len(systems))
	for i := range aggs {
		aggs[i] = &aggregate{errors: map[string]int{}, cpuOK: true}
	}
	for round := 0; round < r.cfg.Rounds; round++ {
		for j := range systems {
			i := (j + round) % len(systems)
			if err := r.phase(ctx, systems[i], k, round, aggs[i]); err != nil {
				return nil, err
			}
		}
	}
	for _, a := range aggs {
		slices.Sort(a.lat)
	}
	return aggs, nil
}

func (r *runner) phase(ctx context.Context, s system, k, round int, a *aggregate) error {
	workload := r.cfg.Workload
	if s.workload != "" {
		workload = s.workload
	}
	l := &load{client: r.client, target: s.url, targets: s.urls, participants: r.parts, workload: workload, k: k, cancelRatio: r.cfg.CancelRatio, seq: r.seq}
	if r.cfg.Warmup > 0 {
		wctx, cancel := context.WithTimeout(ctx, r.cfg.Warmup)
		l.run(wctx, r.cfg.Concurrency, 0, nil)
		cancel()
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	procs := s.procs()
	cpu0 := make([]time.Duration, len(procs))
	var cpuErr error
	for i, p := range procs {
		p.resetPeak()
		var err error
		if cpu0[i], err = p.cpu(); err != nil {
			cpuErr = err
		}
	}
	var pg0 pgSample
	var pgErr error
	if s.pg != nil {
		time.Sleep(pgStatsSettle) // the warm-up's counters reach the server's statistics
		pg0, pgErr = s.pg.sample(ctx)
	}
	var sse *sseReaders
	if s.name == "tccd" && r.cfg.SSE > 0 {
		sse = startSSE(ctx, s.url, r.cfg.SSE)
	}
	pctx, cancel := ctx, context.CancelFunc(func() {})
	if r.cfg.Duration > 0 {
		pctx, cancel = context.WithTimeout(ctx, r.cfg.Duration)
	}
	label := fmt.Sprintf("%s k=%d round %d/%d", s.name, k, round+1, r.cfg.Rounds)
	start := time.Now()
	p := l.run(pctx, r.cfg.Concurrency, r.cfg.Count, func(done, errs int64) {
		r.progress(label, done, errs, time.Since(start))
	})
	cancel()
	if sse != nil {
		sse.stop()
		a.sseEvents += sse.events.Load()
		a.sseLagged += sse.lagged.Load() + sse.errs.Load()
	}
	if r.cfg.ErrIsTTY {
		fmt.Fprint(r.cfg.Err, "\r\033[K")
	}
	fmt.Fprintf(r.cfg.Err, "%s: %d tx in %.1fs, %.0f tx/s, p50 %.2fms, p99 %.2fms, %d errors\n",
		label, p.tx, p.elapsed.Seconds(), float64(p.tx)/p.elapsed.Seconds(), ms(percentile(p.lat, .5)), ms(percentile(p.lat, .99)), sum(p.errors))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if s.pg != nil && pgErr == nil {
		time.Sleep(pgStatsSettle) // the phase's counters reach the server's statistics
		if pg1, err := s.pg.sample(ctx); err == nil {
			a.pgOK = true
			a.pgCommits += pg1.commits - pg0.commits
			a.pgWrites += pg1.xid - pg0.xid - 1 // the probe's own id
			if pg0.walSyncs >= 0 && a.walSyncs >= 0 {
				a.walSyncs += pg1.walSyncs - pg0.walSyncs
			} else {
				a.walSyncs = -1
			}
			a.pgCPUOK = pg0.cpuOK && pg1.cpuOK
			a.pgCPU += pg1.cpu - pg0.cpu
		}
	}
	a.elapsed += p.elapsed
	a.rates = append(a.rates, float64(p.tx)/p.elapsed.Seconds())
	a.lat = append(a.lat, p.lat...)
	a.tx += p.tx
	for k, v := range p.errors {
		a.errors[k] += v
	}
	if len(procs) == 0 || cpuErr != nil {
		a.cpuOK = false
		return nil
	}
	if a.nodeCPU == nil {
		a.nodeCPU = make([]time.Duration, len(procs))
	}
	for i, p := range procs {
		cpu1, err := p.cpu()
		if err != nil {
			a.cpuOK = false
			return nil
		}
		a.cpu += cpu1 - cpu0[i]
		a.nodeCPU[i] += cpu1 - cpu0[i]
		if rss, err := p.peakRSS(); err == nil && rss > a.rss {
			a.rss = rss
		}
	}
	return nil
}

func (r *runner) progress(label string, done, errs int64, el time.Duration) {
	line := fmt.Sprintf("%s: %5.1fs %8d tx %8.0f tx/s %d errors", label, el.Seconds(), done, float64(done)/el.Seconds(), errs)
	if r.cfg.ErrIsTTY {
		fmt.Fprint(r.cfg.Err, "\r\033[K"+line)
		return
	}
	fmt.Fprintln(r.cfg.Err, line)
}

func (a *aggregate) figures() Figures {
	f := Figures{
		Transactions: a.tx, TxPerS: median(a.rates),
		P50MS: ms(percentile(a.lat, .50)), P90MS: ms(percentile(a.lat, .90)),
		P99MS: ms(percentile(a.lat, .99)), MaxMS: ms(percentile(a.lat, 1)),
		Errors: sum(a.errors), ErrorsByKind: a.errors,
		SSEEvents: a.sseEvents, SSELagged: a.sseLagged,
	}
	if a.cpuOK && a.tx > 0 {
		f.CPUPerTxUS = float64(a.cpu.Microseconds()) / float64(a.tx)
		f.PeakRSSBytes = a.rss
	}
	return f
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(strconv.FormatFloat(a/b, 'f', 3, 64), 64)
	return v
}

// baselineName is how the report names the baseline system.
func baselineName(s system) string {
	if s.name == "null" {
		return "null coordinator"
	}
	return s.name
}
