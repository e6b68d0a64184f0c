// Command testpart runs the test reservation service (package testpart)
// as its own process. It prints "listening <addr>" on stdout once it
// accepts connections.
//
// With --coordinator it takes part in barrier-mode transactions: a
// confirm carrying Tcc-Barrier is reported to that coordinator (with the
// bearer token of --coordinator-token, or of $TESTPART_COORDINATOR_TOKEN)
// and committed only when every participant of the round has confirmed.
//
// Its reservations live in a SQLite file: --db names it (a restart on the
// same file keeps every reservation and answers its old URIs); without
// --db it is a new file in a temporary directory, removed at a clean exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/participant"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	db := flag.String("db", "", "SQLite file of the reservations (default: a new file in a temporary directory, removed at exit)")
	ttl := flag.Duration("ttl", testpart.DefaultTTL, "lifetime of a reservation whose try asks for none")
	maxTTL := flag.Duration("max-ttl", participant.DefaultMaxTTL, "longest lifetime a try may ask for with ?ttl= (more is answered 400)")
	baseURL := flag.String("base-url", "", "start of the reservation URIs (default http://<listen address>)")
	latency := flag.Duration("latency", 0, "added to every confirm and cancel")
	sweep := flag.Duration("sweep-every", testpart.DefaultSweepEvery, "period of the expiry sweeper")
	coordinator := flag.String("coordinator", "", "the coordinator's URL, for barrier-mode confirms (default: none; such a confirm is refused with 500)")
	token := flag.String("coordinator-token", os.Getenv("TESTPART_COORDINATOR_TOKEN"), "bearer token of the barrier reports (default $TESTPART_COORDINATOR_TOKEN)")
	barrierWait := flag.Duration("barrier-wait", participant.DefaultBarrierWait, "how long a barrier-mode confirm waits for its round's outcome")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := testpart.Config{DB: *db, TTL: *ttl, MaxTTL: *maxTTL, BaseURL: *baseURL, Latency: *latency, SweepEvery: *sweep,
		Coordinator: *coordinator, CoordinatorToken: *token, BarrierWait: *barrierWait,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if err := run(ctx, *listen, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "testpart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, listen string, cfg testpart.Config) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	if cfg.BaseURL == "" {
		if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsUnspecified() {
			cfg.BaseURL = "http://" + ln.Addr().String()
		}
	}
	svc, err := testpart.Open(ctx, cfg)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: svc, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Printf("listening %s\n", ln.Addr())
	select {
	case <-ctx.Done():
	case err = <-served: // Serve failed: it returns only then before Shutdown
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(err, srv.Shutdown(sctx), svc.Close())
}
