// Package examplecmd is the plumbing shared by the examples' commands: a
// subcommand dispatcher, the runner of a participant service (flags, the
// database, the HTTP server, the expiry sweepers, a clean stop on SIGINT or
// SIGTERM, and the fault switch for tests), and the runner of a batch of
// initiator operations. The business logic lives in the example packages.
package examplecmd

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/tccd/tccd/examples/internal/exampledb"
	"github.com/tccd/tccd/participant"
)

// Service describes a participant service: its name, its defaults, its
// own flags and its set-up.
type Service struct {
	// Name is the subcommand and the logger's service name.
	Name string
	// Listen and DB are the defaults of --listen and --db.
	Listen, DB string
	// Flags registers the service's own flags, if it has some.
	Flags func(fs *flag.FlagSet)
	// Setup creates the service's tables and participants (with
	// Env.Participant) and registers its routes on Env.Mux.
	Setup func(ctx context.Context, env *Env) error
}

// Env is what a service's Setup works with.
type Env struct {
	DB      *sql.DB
	Dialect participant.Dialect
	// Mux serves the service. The runner adds GET /healthz and, with
	// --test-faults, /admin/faults.
	Mux *http.ServeMux
	Log *slog.Logger
	// TTL is --ttl: the lifetime of a reservation whose try asks for none.
	TTL time.Duration
	// MaxTTL is --max-ttl: the longest lifetime a try may ask for (with
	// ?ttl=, see reserve.TTLParam) and the kit's cap (Config.MaxTTL).
	MaxTTL time.Duration
	// BaseURL is --base-url, by default http://<the address served>: the
	// start of the reservation URIs (Config.BaseURL). Empty when the
	// service listens on every interface and no --base-url is given: the
	// kit then builds URIs from the Host header, and says so.
	BaseURL string
	// Retention is --retention: how long settled bookkeeping rows are kept
	// after their expiry (Config.Retention; zero keeps them).
	Retention time.Duration
	// Coordinator is --coordinator, the coordinator's URL that
	// barrier-mode confirms report to (Config.Coordinator), and
	// CoordinatorToken --coordinator-token, their bearer token.
	Coordinator, CoordinatorToken string

	sweepEvery time.Duration
	faults     *Faults
	parts      []*participant.Participant
	closers    []func() error
}

// OnClose registers fn to run when the service stops, after its
// participants' sweepers (and outbox relays) have stopped: the place to
// close what Setup opened for them, such as a broker connection.
func (e *Env) OnClose(fn func() error) { e.closers = append(e.closers, fn) }

// close runs the OnClose functions, the last registered first.
func (e *Env) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		if err := e.closers[i](); err != nil {
			e.Log.Warn("close", "err", err)
		}
	}
}

// Participant completes cfg with the service's database, lifetimes, base
// URL, retention, sweep period and logger, wraps its Confirm and Cancel
// with the fault switch, and creates the participant. The runner runs its
// expiry sweeper (and with it the cleanup of old bookkeeping rows); the
// caller registers its routes (p.Register(env.Mux), or behind middleware).
func (e *Env) Participant(ctx context.Context, cfg participant.Config) (*participant.Participant, error) {
	cfg.DB, cfg.Dialect, cfg.Logger = e.DB, e.Dialect, e.Log
	cfg.DefaultTTL, cfg.MaxTTL, cfg.SweepEvery, cfg.Retention = e.TTL, e.MaxTTL, e.sweepEvery, e.Retention
	if cfg.BaseURL == "" {
		cfg.BaseURL = e.BaseURL
	}
	if cfg.Coordinator == "" {
		cfg.Coordinator, cfg.CoordinatorToken = e.Coordinator, e.CoordinatorToken
	}
	cfg.Confirm = e.faults.Wrap("confirm", cfg.Confirm)
	cfg.Cancel = e.faults.Wrap("cancel", cfg.Cancel)
	p, err := participant.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	e.parts = append(e.parts, p)
	return p, nil
}

// RunService is the body of a participant service's subcommand: it parses
// args, opens the database, runs Setup, serves, prints
// "listening <host:port>" on stdout once it accepts connections, and runs
// until ctx ends (SIGINT or SIGTERM), then stops cleanly.
func RunService(ctx context.Context, s Service, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(s.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", s.Listen, "address to serve on (host:port; port 0 picks one)")
	dsn := fs.String("db", s.DB, "database: a SQLite file, or a postgres:// URL (optionally with search_path=<schema>)")
	ttl := fs.Duration("ttl", 5*time.Minute, "lifetime of a reservation whose try asks for none (a try may ask with ?ttl=)")
	maxTTL := fs.Duration("max-ttl", participant.DefaultMaxTTL, "longest lifetime a try may ask for with ?ttl= (more is answered 400)")
	retention := fs.Duration("retention", DefaultRetention, fmt.Sprintf("how long settled bookkeeping rows are kept after their expiry before the cleanup deletes them (at least %v; 0 keeps them)", participant.MinRetention))
	baseURL := fs.String("base-url", "", "start of the reservation URIs handed to the coordinator (default http://<listen address>)")
	sweep := fs.Duration("sweep-every", time.Second, "period of the expiry sweeper, which cancels reservations past their expiry")
	coordinator := fs.String("coordinator", "", "the coordinator's URL, for barrier-mode transactions: their confirms report to it and commit only when every participant confirmed (default: none; such confirms are refused)")
	coordinatorToken := fs.String("coordinator-token", os.Getenv("TCCD_COORDINATOR_TOKEN"), "bearer token of the barrier reports, when the coordinator requires one (default $TCCD_COORDINATOR_TOKEN)")
	testFaults := fs.Bool("test-faults", false, "FOR TESTS AND DEMOS: serve POST /admin/faults, which makes the next confirm or cancel fail")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if s.Flags != nil {
		s.Flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", ErrUsage, err)
	}
	if *ttl <= 0 || *ttl > *maxTTL {
		return fmt.Errorf("%w: --ttl %v: want a positive lifetime no longer than --max-ttl (%v)", ErrUsage, *ttl, *maxTTL)
	}
	if *retention != 0 && *retention < participant.MinRetention {
		return fmt.Errorf("%w: --retention %v: want 0 (keep every row) or at least %v", ErrUsage, *retention, participant.MinRetention)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})).With("service", s.Name)

	db, d, err := exampledb.Open(ctx, *dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	// Listen first: the address is the default base of the reservation
	// URIs, which Setup's participants need.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	if *baseURL == "" {
		*baseURL = defaultBaseURL(ln.Addr())
	}
	env := &Env{DB: db, Dialect: d, Mux: http.NewServeMux(), Log: log, TTL: *ttl, MaxTTL: *maxTTL,
		BaseURL: *baseURL, Retention: *retention, Coordinator: *coordinator, CoordinatorToken: *coordinatorToken,
		sweepEvery: *sweep, faults: &Faults{}}
	defer env.close()
	if err := s.Setup(ctx, env); err != nil {
		return fmt.Errorf("set-up: %w", err)
	}
	env.Mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	if *testFaults {
		env.faults.register(env.Mux)
		log.Warn("fault injection is on (--test-faults): POST /admin/faults makes confirms or cancels fail")
	}

	srv := &http.Server{Handler: env.Mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	sweepCtx, stopSweepers := context.WithCancel(context.Background())
	var sweepers sync.WaitGroup
	for _, p := range env.parts {
		sweepers.Go(func() { p.Run(sweepCtx) })
	}
	log.Info("serving", "addr", ln.Addr().String(), "base_url", env.BaseURL, "db", exampledb.Redact(*dsn), "dialect", d,
		"ttl", env.TTL, "max_ttl", env.MaxTTL, "retention", env.Retention, "coordinator", env.Coordinator)
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())

	select {
	case <-ctx.Done():
		err = nil
	case err = <-served:
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = errors.Join(err, srv.Shutdown(shutdownCtx))
	stopSweepers()
	sweepers.Wait()
	log.Info("stopped")
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// DefaultRetention is the default of --retention: a week, well above
// participant.MinRetention, so that what went wrong can still be read in
// the bookkeeping table for a while.
const DefaultRetention = 7 * 24 * time.Hour

// defaultBaseURL is http://<addr>, or "" when addr is every interface's
// (0.0.0.0, ::), which is no address a coordinator can call.
func defaultBaseURL(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		return ""
	}
	return "http://" + addr.String()
}
