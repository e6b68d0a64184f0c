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

	sweepEvery time.Duration
	faults     *Faults
	parts      []*participant.Participant
}

// Participant completes cfg with the service's database, default lifetime,
// sweep period and logger, wraps its Confirm and Cancel with the fault
// switch, and creates the participant. The runner runs its expiry sweeper;
// the caller registers its routes (p.Register(env.Mux), or behind
// middleware).
func (e *Env) Participant(ctx context.Context, cfg participant.Config) (*participant.Participant, error) {
	cfg.DB, cfg.Dialect, cfg.Logger = e.DB, e.Dialect, e.Log
	cfg.DefaultTTL, cfg.SweepEvery = e.TTL, e.sweepEvery
	if cfg.MaxTTL == 0 && e.TTL > participant.DefaultMaxTTL {
		cfg.MaxTTL = e.TTL // a --ttl beyond the kit's cap raises the cap
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
	sweep := fs.Duration("sweep-every", time.Second, "period of the expiry sweeper, which cancels reservations past their expiry")
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
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})).With("service", s.Name)

	db, d, err := exampledb.Open(ctx, *dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	env := &Env{DB: db, Dialect: d, Mux: http.NewServeMux(), Log: log, TTL: *ttl,
		sweepEvery: *sweep, faults: &Faults{}}
	if err := s.Setup(ctx, env); err != nil {
		return fmt.Errorf("set-up: %w", err)
	}
	env.Mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	if *testFaults {
		env.faults.register(env.Mux)
		log.Warn("fault injection is on (--test-faults): POST /admin/faults makes confirms or cancels fail")
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: env.Mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	sweepCtx, stopSweepers := context.WithCancel(context.Background())
	var sweepers sync.WaitGroup
	for _, p := range env.parts {
		sweepers.Go(func() { p.Run(sweepCtx) })
	}
	log.Info("serving", "addr", ln.Addr().String(), "db", exampledb.Redact(*dsn), "dialect", d)
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
