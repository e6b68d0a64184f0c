package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	pdb "github.com/cockroachdb/pebble/v2"

	"github.com/tccd/tccd/internal/bench"
	"github.com/tccd/tccd/postgres"
)

// runBench is `tccd bench`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg bench.Config
	var parts, serveArgs, nodes string
	fs := flag.NewFlagSet("tccd bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Coordinator, "coordinator", "", "URL of a running coordinator to measure (default: start one)")
	fs.StringVar(&cfg.Workload, "workload", bench.WorkloadOneShot, "one of "+strings.Join(bench.Workloads, ", "))
	fs.StringVar(&parts, "participants", "2", "links per transaction; a list (1,2,4,8,16) also draws the cost curve")
	fs.IntVar(&cfg.ParticipantProcs, "participant-procs", 2, "participant processes sharing the links")
	fs.IntVar(&cfg.Concurrency, "concurrency", 64, "concurrent initiators")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of each measured phase")
	fs.IntVar(&cfg.Count, "count", 0, "transactions per measured phase, instead of --duration")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "unmeasured load before each phase")
	fs.IntVar(&cfg.Rounds, "rounds", 3, "phases per system, alternating tccd and the null coordinator")
	fs.DurationVar(&cfg.ParticipantLatency, "participant-latency", 0, "latency each participant adds to confirm and cancel")
	fs.Float64Var(&cfg.CancelRatio, "cancel-ratio", 0.5, "share of cancels in the cancel-mix workload")
	fs.IntVar(&cfg.Fill, "fill", 0, "recovery workload: unfinished transactions in the data directory at the start")
	fs.IntVar(&cfg.FillFinished, "fill-finished", 0, "finished transactions written into the started coordinator's data directory before the load")
	fs.IntVar(&cfg.Confirming, "confirming", 0, "inflight workload: one-shot confirms held in flight at once (0: min(--count, 1000))")
	fs.IntVar(&cfg.SSE, "sse", 0, "event-stream subscribers reading every event of tccd during its phases (the cost of serving them)")
	fs.BoolVar(&cfg.NoLogBaseline, "no-log-baseline", false, "leave out the null+log baseline (the null coordinator writing its decisions to a Pebble log)")
	fs.StringVar(&cfg.DataDir, "data", "", "data directory of the started coordinator (default: a temporary one)")
	fs.StringVar(&cfg.Store, "store", "", "a PostgreSQL URL, postgres://…: the started coordinators share this database (a scratch one: the benchmark's transactions stay in it)")
	fs.StringVar(&nodes, "nodes", "1", "with --store: cluster sizes to measure against the same baseline, e.g. 1,2,3")
	fs.StringVar(&serveArgs, "serve-args", "", "extra flags for the started coordinator, space-separated")
	fs.BoolVar(&cfg.JSON, "json", false, "print one JSON object on stdout instead of the table")
	fs.StringVar(&cfg.Chart, "chart", "bench-latency.svg", "SVG file for the latency chart (\"\" for none)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if cfg.Count > 0 {
		cfg.Duration = 0
	}
	for _, p := range strings.Split(parts, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("--participants: %q is not a number", p)
		}
		cfg.Participants = append(cfg.Participants, k)
	}
	for _, n := range strings.Split(nodes, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil {
			return fmt.Errorf("--nodes: %q is not a number", n)
		}
		cfg.Nodes = append(cfg.Nodes, k)
	}
	if cfg.Store != "" && !postgres.IsDSN(cfg.Store) {
		return errors.New("--store must be a PostgreSQL URL, postgres://… or postgresql://…")
	}
	if serveArgs != "" {
		cfg.ServeArgs = strings.Fields(serveArgs)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Self, cfg.Out, cfg.Err = self, stdout, stderr
	if f, ok := stderr.(*os.File); ok {
		st, err := f.Stat()
		cfg.ErrIsTTY = err == nil && st.Mode()&os.ModeCharDevice != 0
	}
	return bench.Run(ctx, cfg)
}

// runBenchServer is the hidden `tccd bench-participant` and `tccd bench-null`.
func runBenchServer(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tccd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	latency := fs.Duration("latency", 0, "(bench-participant) latency added to confirm and cancel")
	logDir := fs.String("log", "", "(bench-null) directory of a Pebble log: decisions synced, outcomes not (the null+log baseline)")
	coordinator := fs.String("coordinator", "", "(bench-participant) the coordinator's URL, to which barrier-mode confirms report")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if name == "bench-null" {
		if *logDir == "" {
			return bench.Serve(ctx, *listen, bench.NewNullCoordinator(nil), stdout)
		}
		db, err := pdb.Open(*logDir, &pdb.Options{})
		if err != nil {
			return fmt.Errorf("open log: %w", err)
		}
		defer db.Close()
		return bench.Serve(ctx, *listen, bench.NewNullCoordinator(db), stdout)
	}
	return bench.Serve(ctx, *listen, bench.NewParticipant(*latency, *coordinator), stdout)
}
