package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// NodeFigures are the figures of one cluster size in a run with a
// PostgreSQL store (--store, --nodes).
type NodeFigures struct {
	Nodes int `json:"nodes"`
	Figures
	// Ratio is the throughput over the null coordinator's in the same run.
	Ratio float64 `json:"ratio"`
	// CPUPerTxPerNodeUS is each node's CPU time over all transactions of
	// the phases (their sum is CPUPerTxUS, the cluster's CPU per
	// transaction).
	CPUPerTxPerNodeUS []float64 `json:"cpu_us_per_tx_per_node,omitempty"`
	// PGCommitsPerS is the database's committed PostgreSQL transactions
	// per second during the phases (pg_stat_database.xact_commit: reads
	// count too), PGCommitsPerTx the same per tccd transaction.
	PGCommitsPerS  float64 `json:"pg_commits_per_s"`
	PGCommitsPerTx float64 `json:"pg_commits_per_tx"`
	// PGWritesPerS is the server's transactions that wrote (transaction
	// ids assigned, in every database of the server), PGWritesPerTx the
	// same per tccd transaction.
	PGWritesPerS  float64 `json:"pg_write_tx_per_s"`
	PGWritesPerTx float64 `json:"pg_write_tx_per_tx"`
	// WALSyncsPerS is how often the server synced its write-ahead log
	// (pg_stat_wal.wal_sync; -1 when the server does not report it).
	WALSyncsPerS float64 `json:"wal_syncs_per_s"`
	// PGCPUPerTxUS is the CPU time of the machine's postgres processes
	// per transaction; 0 when the server is not on this machine.
	PGCPUPerTxUS float64 `json:"pg_cpu_us_per_tx,omitempty"`
}

// pgProbe reads the server's counters between phases.
type pgProbe struct {
	conn *pgx.Conn
}

// pgStatsSettle is how long the benchmark lets the load rest before it
// reads the server's statistics: a PostgreSQL backend reports its
// counters at most once a second, and when it goes idle.
const pgStatsSettle = 1200 * time.Millisecond

// pgSample is the server's counters at one moment.
type pgSample struct {
	commits, walSyncs int64 // walSyncs -1: not reported
	xid               int64 // the next transaction id
	cpu               time.Duration
	cpuOK             bool
}

func openPGProbe(ctx context.Context, dsn string) (*pgProbe, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to the store to read its counters: %w", err)
	}
	return &pgProbe{conn: conn}, nil
}

func (p *pgProbe) close() { p.conn.Close(context.Background()) }

func (p *pgProbe) sample(ctx context.Context) (pgSample, error) {
	var s pgSample
	err := p.conn.QueryRow(ctx, `SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
		(SELECT wal_sync FROM pg_stat_wal)`).Scan(&s.commits, &s.walSyncs)
	if err != nil {
		// pg_stat_wal came with PostgreSQL 14.
		s.walSyncs = -1
		if err := p.conn.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&s.commits); err != nil {
			return s, fmt.Errorf("read the store's counters: %w", err)
		}
	}
	if err := p.conn.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&s.xid); err != nil {
		return s, fmt.Errorf("read the store's transaction id: %w", err)
	}
	s.cpu, s.cpuOK = postgresCPU()
	return s, nil
}

// postgresCPU sums the CPU time of the processes named postgres on this
// machine: the server, when it runs here.
func postgresCPU() (time.Duration, bool) {
	dirs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, false
	}
	var total time.Duration
	found := false
	for _, path := range dirs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // ended meanwhile
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || s[open+1:end] != "postgres" {
			continue
		}
		cpu, err := statCPU(s)
		if err != nil {
			continue
		}
		total += cpu
		found = true
	}
	return total, found
}

// statCPU reads user+system time from the text of /proc/<pid>/stat.
func statCPU(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc stat format")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc stat format")
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// runCluster measures 1, 2, … nodes (cfg.Nodes) sharing the PostgreSQL
// database of cfg.Store against the null coordinator, in the same run and
// alternating rounds. It starts as many nodes as the largest size; a size
// of k sends the load to the first k (the others idle).
func runCluster(ctx context.Context, cfg Config, dataDir string, parts []string, procs *[]*proc) error {
	probe, err := openPGProbe(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer probe.close()
	nullProc, err := startProc(ctx, "null coordinator", cfg.Self, []string{"bench-null", "--listen", "127.0.0.1:0"}, listeningLine)
	if err != nil {
		return err
	}
	*procs = append(*procs, nullProc)
	var nodes []*proc
	for i := 0; i < slices.Max(cfg.Nodes); i++ {
		args := append([]string{"serve", "--listen", "127.0.0.1:0", "--store", cfg.Store, "--node-id", fmt.Sprintf("bench-node-%d", i),
			"--log-format", "json", "--log-level", "info"}, cfg.ServeArgs...)
		p, err := startProc(ctx, fmt.Sprintf("tccd node %d", i), cfg.Self, args, tccdListening)
		if err != nil {
			return err
		}
		*procs = append(*procs, p)
		if err := waitReady(ctx, p.url()); err != nil {
			return err
		}
		nodes = append(nodes, p)
	}
	var systems []system
	for _, k := range cfg.Nodes {
		s := system{name: fmt.Sprintf("tccd×%d", k), url: nodes[0].url(), nodes: nodes[:k], pg: probe}
		for _, n := range nodes[:k] {
			s.urls = append(s.urls, n.url())
		}
		systems = append(systems, s)
	}
	systems = append(systems, system{name: "null", url: nullProc.url(), proc: nullProc})

	fsync, err := fsyncRate(dataDir, time.Second)
	if err != nil {
		return fmt.Errorf("fsync probe: %w", err)
	}
	r := &runner{cfg: cfg, client: newHTTPClient(cfg.Concurrency), parts: parts, seq: new(atomic.Int64)}
	aggs, err := r.compare(ctx, systems, cfg.Participants[0])
	if err != nil {
		return err
	}
	base := aggs[len(aggs)-1].figures()
	rep := Report{
		Workload: cfg.Workload, Participants: cfg.Participants[0], Concurrency: cfg.Concurrency,
		Rounds: cfg.Rounds, ParticipantLatencyMS: ms(cfg.ParticipantLatency), FsyncPerS: fsync,
		Store: "postgres", Figures: aggs[0].figures(), Baseline: base,
	}
	if cfg.Duration > 0 {
		rep.PhaseSeconds = cfg.Duration.Seconds()
	}
	rep.Ratio = ratio(rep.TxPerS, base.TxPerS)
	rep.P99Ratio = ratio(rep.P99MS, base.P99MS)
	rep.P50DeltaMS = rep.P50MS - base.P50MS
	for i, k := range cfg.Nodes {
		rep.Nodes = append(rep.Nodes, aggs[i].nodeFigures(k, base))
	}
	if cfg.Chart != "" {
		if err := os.WriteFile(cfg.Chart, latencyChart(rep, []*aggregate{aggs[0], aggs[len(aggs)-1]}), 0o644); err != nil {
			return err
		}
	}
	if cfg.JSON {
		return rep.writeJSON(cfg.Out)
	}
	rep.writeClusterTable(cfg.Out, cfg.Chart)
	return nil
}

func (a *aggregate) nodeFigures(k int, base Figures) NodeFigures {
	f := NodeFigures{Nodes: k, Figures: a.figures(), WALSyncsPerS: -1}
	f.Ratio = ratio(f.TxPerS, base.TxPerS)
	if a.cpuOK && a.tx > 0 {
		for _, c := range a.nodeCPU {
			f.CPUPerTxPerNodeUS = append(f.CPUPerTxPerNodeUS, float64(c.Microseconds())/float64(a.tx))
		}
	}
	if s := a.elapsed.Seconds(); s > 0 && a.pgOK {
		f.PGCommitsPerS = float64(a.pgCommits) / s
		f.PGWritesPerS = float64(a.pgWrites) / s
		if a.tx > 0 {
			f.PGCommitsPerTx = float64(a.pgCommits) / float64(a.tx)
			f.PGWritesPerTx = float64(a.pgWrites) / float64(a.tx)
		}
		if a.walSyncs >= 0 {
			f.WALSyncsPerS = float64(a.walSyncs) / s
		}
		if a.pgCPUOK && a.tx > 0 {
			f.PGCPUPerTxUS = float64(a.pgCPU.Microseconds()) / float64(a.tx)
		}
	}
	return f
}

func (r Report) writeClusterTable(w io.Writer, chart string) {
	fmt.Fprintf(w, "\nworkload %s, %d participants per transaction, %d concurrent initiators, %d rounds; tccd nodes on one PostgreSQL database",
		r.Workload, r.Participants, r.Concurrency, r.Rounds)
	if r.ParticipantLatencyMS > 0 {
		fmt.Fprintf(w, ", participant latency %.1fms", r.ParticipantLatencyMS)
	}
	fmt.Fprintf(w, "\nraw fsync rate of a local temporary directory: %.0f/s\n\n", r.FsyncPerS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\ttx/s\tratio\tp50 ms\tp99 ms\terrors\ttccd CPU µs/tx\tper node\tPG CPU µs/tx\tPG commits/s\tper tx\tPG writes/s\tper tx\tWAL syncs/s\t")
	for _, n := range r.Nodes {
		cpu, per, pgcpu, wal := "n/a", "n/a", "n/a", "n/a"
		if n.CPUPerTxUS > 0 {
			cpu = fmt.Sprintf("%.0f", n.CPUPerTxUS)
			var parts []string
			for _, c := range n.CPUPerTxPerNodeUS {
				parts = append(parts, fmt.Sprintf("%.0f", c))
			}
			per = strings.Join(parts, "+")
		}
		if n.PGCPUPerTxUS > 0 {
			pgcpu = fmt.Sprintf("%.0f", n.PGCPUPerTxUS)
		}
		if n.WALSyncsPerS >= 0 {
			wal = fmt.Sprintf("%.0f", n.WALSyncsPerS)
		}
		fmt.Fprintf(tw, "tccd ×%d\t%.0f\t%.3f\t%.2f\t%.2f\t%d\t%s\t%s\t%s\t%.0f\t%.1f\t%.0f\t%.1f\t%s\t\n", n.Nodes, n.TxPerS, n.Ratio, n.P50MS, n.P99MS, n.Errors,
			cpu, per, pgcpu, n.PGCommitsPerS, n.PGCommitsPerTx, n.PGWritesPerS, n.PGWritesPerTx, wal)
	}
	b := r.Baseline
	fmt.Fprintf(tw, "null coordinator\t%.0f\t1.000\t%.2f\t%.2f\t%d\t%.0f\t\t\t\t\t\t\t\t\n", b.TxPerS, b.P50MS, b.P99MS, b.Errors, b.CPUPerTxUS)
	tw.Flush()
	fmt.Fprintln(w, "\nratio: throughput over the null coordinator's; tccd CPU: all nodes of the size per transaction (and each node's share);")
	fmt.Fprintln(w, "PG: the machine's postgres processes' CPU, the database's commits (reads count), the server's writing transactions, its WAL syncs")
	if chart != "" {
		fmt.Fprintf(w, "\nlatency chart (the first size against the null coordinator): %s\n", chart)
	}
}
