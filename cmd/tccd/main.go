// Command tccd is the TCC transaction coordinator daemon and its CLI.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/metrics"
	"github.com/tccd/tccd/nats"
	"github.com/tccd/tccd/otel"
	"github.com/tccd/tccd/postgres"
	"github.com/tccd/tccd/ui"
)

// Version is set at build time with -ldflags "-X main.Version=…".
var Version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "tccd:", err)
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) || errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

var errUsage = errors.New("usage")

const usage = `tccd — a Try-Confirm/Cancel transaction coordinator

Usage:
  tccd demo                 see it work: a coordinator, two airlines, a few dozen bookings (start here)
  tccd serve [flags]        run the coordinator
  tccd tx list|show|confirm|cancel|resolve|watch
                            look at and act on the transactions of a running coordinator
  tccd purge                run a running coordinator's retention purge now
  tccd check-participant --try URL
                            test a participant service against the TCC participant contract
  tccd bench [flags]        measure tccd against a null coordinator
  tccd migrate [--store postgres://…]
                            apply the PostgreSQL store's schema migrations and exit
  tccd token --name NAME [--role client|admin]
                            make a bearer token and its line for the tokens file
  tccd version              print the version, the commit and the Go version

Run 'tccd <command> -h' for a command's flags.
`

// run dispatches a subcommand; it returns when the command is done (for
// serve: when ctx is cancelled and shutdown finished).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) (err error) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsageShown
	}
	defer func() { err = commandResult(args[0], err) }()
	switch args[0] {
	case "serve":
		if err := checkServeFlags(args[1:], stdout); err != nil {
			return err
		}
		m := NewMain(stdout, stderr, getenv)
		if err := m.ParseFlags(args[1:]); err != nil {
			return err
		}
		if m.CheckConfig {
			fmt.Fprintln(stdout, "configuration is valid")
			kv := m.sec.summary()
			for i := 0; i < len(kv); i += 2 {
				fmt.Fprintf(stdout, "%s: %v\n", kv[i], kv[i+1])
			}
			return nil
		}
		if err := m.Run(ctx); err != nil {
			m.Close()
			return err
		}
		<-ctx.Done()
		m.Log.Info("shutting down")
		return m.Close()
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "bench-participant", "bench-null":
		return runBenchServer(ctx, args[0], args[1:], stdout, stderr)
	case "token":
		return runToken(args[1:], stdout, stderr)
	case "migrate":
		return runMigrate(ctx, args[1:], stdout, stderr, getenv)
	case "tx":
		return runTx(ctx, args[1:], stdout, stderr, getenv)
	case "purge":
		return runPurge(ctx, args[1:], stdout, stderr, getenv)
	case "check-participant":
		return runCheckParticipant(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		return runVersion(args[1:], stdout)
	case "help", "-h", "-help", "--help":
		if len(args) > 1 { // tccd help CMD is tccd CMD -h
			return run(ctx, []string{args[1], "-h"}, stdout, stderr, getenv)
		}
		fmt.Fprint(stdout, usage)
		return nil
	default:
		return &usageError{what: "commands", err: fmt.Errorf("unknown command %q", args[0])}
	}
}

// Main is `tccd serve`: it wires the store, the coordinator, the caller
// and the HTTP server together. ParseFlags → Run → Close.
type Main struct {
	Config      Config
	ConfigPath  string
	CheckConfig bool
	Log         *slog.Logger

	stdout, stderr io.Writer
	getenv         func(string) string

	sec    *security // loaded by ParseFlags
	store  tccd.Store
	caller *tccdhttp.Caller
	coord  *tccd.Coordinator
	stomp  *tccdhttp.BarrierSTOMP
	nats   *nats.Publisher
	server *tccdhttp.Server
	debug  *http.Server

	metrics    *metrics.Metrics
	metricsSrv *http.Server // on metrics-listen; nil when the API serves /metrics
	tracer     *otel.Tracer // nil when tracing is off
}

// NewMain returns a Main with the default configuration.
func NewMain(stdout, stderr io.Writer, getenv func(string) string) *Main {
	return &Main{Config: DefaultConfig(), stdout: stdout, stderr: stderr, getenv: getenv}
}

// ParseFlags reads the configuration: defaults, then the config file
// (--config or TCCD_CONFIG), then the environment, then the flags. It
// validates the result.
func (m *Main) ParseFlags(args []string) error {
	// First pass: find --config, and reject unknown flags early.
	scratch := DefaultConfig()
	fs := m.flagSet(&scratch)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	path := m.ConfigPath
	if path == "" {
		path = m.getenv("TCCD_CONFIG")
	}
	m.Config = DefaultConfig()
	// Every problem is reported in one run: the file's and the
	// environment's, then what does not validate or load.
	loadErr := m.Config.Load(path, m.getenv)
	// Second pass: flags override the file and the environment.
	if err := m.flagSet(&m.Config).Parse(args); err != nil {
		return err
	}
	m.ConfigPath = path
	errs := []error{loadErr, m.Config.Validate()}
	sec, err := m.Config.loadSecurity()
	errs = append(errs, err)
	if _, err := m.tracingOn(); err != nil {
		errs = append(errs, err)
	}
	if m.CheckConfig {
		errs = append(errs, m.Config.checkEnvironment())
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m.sec = sec
	return nil
}

func (m *Main) flagSet(c *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("tccd serve", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	c.register(fs)
	fs.StringVar(&m.ConfigPath, "config", m.ConfigPath, "TOML config file whose keys are the flag names (env TCCD_CONFIG)")
	fs.BoolVar(&m.CheckConfig, "check-config", false, "validate the configuration and exit")
	return fs
}

// Run opens the store, starts serving, and recovers unfinished
// transactions. It returns once /readyz answers 200.
func (m *Main) Run(ctx context.Context) error {
	if err := m.initLogger(); err != nil {
		return err
	}
	if m.sec == nil { // Config set directly, not by ParseFlags
		sec, err := m.Config.loadSecurity()
		if err != nil {
			return err
		}
		m.sec = sec
	}
	// The address first: a start that cannot serve creates nothing.
	ln, err := net.Listen("tcp", m.Config.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := m.initStore(ctx); err != nil {
		ln.Close()
		return fmt.Errorf("store: %w", err)
	}
	if err := m.initMessages(ctx); err != nil {
		ln.Close()
		return fmt.Errorf("messages: %w", err)
	}
	if err := m.initTracing(ctx); err != nil {
		ln.Close()
		return err
	}
	if err := m.initCoordinator(); err != nil {
		ln.Close()
		return err
	}
	if err := m.initServer(ln); err != nil {
		ln.Close()
		return err
	}
	if err := m.serveMetrics(); err != nil {
		return fmt.Errorf("metrics server: %w", err)
	}
	if err := m.initDebug(); err != nil {
		return fmt.Errorf("debug server: %w", err)
	}
	start := time.Now()
	if err := m.coord.Open(ctx); err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	m.Log.Info("ready", "recovery", time.Since(start).Round(time.Millisecond))
	return nil
}

func (m *Main) initLogger() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(m.Config.LogLevel)); err != nil {
		return err
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(m.stderr, opts)
	if m.Config.LogFormat == "json" {
		h = slog.NewJSONHandler(m.stderr, opts)
	}
	if on, _ := m.tracingOn(); on {
		// Lines logged with a request's context name its trace.
		h = otel.LogHandler(h)
	}
	m.Log = slog.New(h)
	return nil
}

func (m *Main) initStore(ctx context.Context) error {
	s, err := openStore(ctx, m.Config, m.Log)
	if err != nil {
		return err
	}
	m.store = s
	return nil
}

func (m *Main) initCoordinator() error {
	tracer := m.tracerOrNil()
	m.caller = tccdhttp.NewCallerWith(tccdhttp.CallerConfig{TLS: m.sec.participantTLS, Allow: m.sec.allow, WebhookSecret: m.sec.webhookSecret, Tracer: tracer})
	cfg := m.Config.Coordinator
	cfg.Links = m.sec.allow
	cfg.Tracer = tracer
	cfg.Events = tccd.NewBroker(m.Config.EventRing, 0, nil)
	pg, cluster := m.store.(*postgres.Store)
	if cluster {
		// A cluster: nodes share the database and hold row leases.
		if cfg.NodeID == DefaultConfig().Coordinator.NodeID {
			cfg.NodeID = defaultNodeID()
		}
		cfg.Leaser = postgres.NewLeaser(pg, cfg.NodeID, m.Config.LeaseTTL, nil)
		m.Log.Info("cluster node", "node", cfg.NodeID, "lease_ttl", m.Config.LeaseTTL)
	}
	if m.sec.webhookSecret != nil {
		cfg.Notifier = m.caller
	}
	if m.nats != nil {
		cfg.Messages = nats.NewCoordinator(m.nats)
	}
	// forsrc's STOMP endpoint tells barrier participants their outcome.
	stomp, err := tccdhttp.NewBarrierSTOMP(m.sec.tokens, m.Log)
	if err != nil {
		return fmt.Errorf("stomp: %w", err)
	}
	m.stomp, cfg.Barriers = stomp, stomp
	store, caller, err := m.withMetrics(&cfg, m.store, m.caller, cluster)
	if err != nil {
		return err
	}
	m.coord = tccd.NewCoordinator(cfg, store, caller, nil, m.Log)
	stomp.Attach(m.coord)
	return nil
}

func (m *Main) initServer(ln net.Listener) error {
	cfg := m.Config.Server
	cfg.Tokens, cfg.TLS, cfg.STOMP = m.sec.tokens, m.sec.serverTLS, m.stomp
	if m.Config.MetricsListen == "" {
		cfg.Metrics = m.metrics.Handler(m.Log)
	}
	if m.tracer != nil {
		cfg.Middleware = func(h http.Handler) http.Handler { return m.tracer.Middleware(h, skipTrace) }
	}
	if m.Config.UI {
		h, err := ui.New()
		if err != nil {
			return fmt.Errorf("ui: %w", err)
		}
		cfg.UI = h
	}
	m.server = tccdhttp.NewServer(m.coord, cfg, m.Log)
	m.server.Serve(ln)
	m.Log.Info("listening", append([]any{"addr", m.server.Addr(), "data", m.Config.Data, "version", Version, "ui", m.Config.UI}, m.sec.summary()...)...)
	if m.sec.tokens == nil && !isLoopback(ln.Addr()) {
		m.Log.Warn("authentication is off and the API listens beyond loopback: anyone who reaches it can use it; set auth-tokens-file (see docs/SECURITY.md)")
	}
	return nil
}

// isLoopback reports whether a listener's address is on loopback only.
func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// initDebug serves pprof, and the heap figures of /debug/heap, on its own
// listener when --debug-listen is set; never on the API's.
func (m *Main) initDebug() error {
	if m.Config.DebugListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", m.Config.DebugListen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// /debug/heap is for the benchmark (`tccd bench --workload inflight`):
	// the live Go heap, its objects, the goroutine stacks and the goroutine
	// count, read after forced collections. Each request costs two full GCs
	// (the first moves sync.Pool contents to their victim caches, the second
	// frees them): a measurement tool, not a metric to poll.
	mux.HandleFunc("GET /debug/heap", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			HeapAlloc   uint64 `json:"heap_alloc"`
			HeapObjects uint64 `json:"heap_objects"`
			StackInuse  uint64 `json:"stack_inuse"`
			Goroutines  int    `json:"goroutines"`
		}{ms.HeapAlloc, ms.HeapObjects, ms.StackInuse, runtime.NumGoroutine()})
	})
	m.debug = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go m.debug.Serve(ln)
	m.Log.Info("debug server listening", "addr", ln.Addr().String())
	return nil
}

// Addr returns the address the API listens on, once Run has started it.
func (m *Main) Addr() string { return m.server.Addr() }

// Close shuts down gracefully: the listener closes, in-flight participant
// calls get shutdown-grace to finish, requests in progress are answered,
// and the store is closed cleanly. What is unfinished resumes at the next start.
func (m *Main) Close() error {
	var errs []error
	grace := m.Config.Coordinator.ShutdownGrace
	srvDone := make(chan error, 1)
	if m.server != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), grace+time.Second)
			defer cancel()
			srvDone <- m.server.Shutdown(ctx)
		}()
	} else {
		srvDone <- nil
	}
	if m.coord != nil {
		errs = append(errs, m.coord.Close())
	}
	if m.stomp != nil {
		// After the coordinator: its last outcomes went out.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		errs = append(errs, m.stomp.Close(ctx))
		cancel()
	}
	errs = append(errs, <-srvDone)
	if m.debug != nil {
		m.debug.Close()
	}
	if m.metricsSrv != nil {
		m.metricsSrv.Close()
	}
	if m.tracer != nil {
		// After the coordinator and the server: their last spans ended.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.tracer.Shutdown(ctx); err != nil {
			m.Log.Warn("tracing: spans not exported at shutdown", "err", err)
		}
		cancel()
		m.tracer = nil
	}
	if m.caller != nil {
		m.caller.Close()
	}
	if m.nats != nil {
		// After the coordinator: its last publishes were acknowledged.
		errs = append(errs, m.nats.Close())
	}
	if m.store != nil {
		errs = append(errs, m.store.Close())
		m.store = nil
	}
	if m.Log != nil {
		m.Log.Info("stopped")
	}
	return errors.Join(errs...)
}

// defaultNodeID names a cluster node that was given no node-id: the host
// name and a random suffix, so that two nodes never share one.
func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "tccd"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%x", host, b)
}
