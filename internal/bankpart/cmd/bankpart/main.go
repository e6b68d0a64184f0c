// Command bankpart runs one bank of the fault campaign (see package
// bankpart). It prints "listening <addr>" once it accepts connections.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	_ "modernc.org/sqlite"

	"github.com/tccd/tccd/internal/bankpart"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	db := flag.String("db", "bank.db", "SQLite file of the bank")
	accounts := flag.Int("accounts", 20, "accounts created in a new bank")
	initial := flag.Int64("initial", 1000, "initial balance of each account")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *db, *accounts, *initial); err != nil {
		fmt.Fprintln(os.Stderr, "bankpart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, listen, db string, accounts int, initial int64) error {
	svc, err := bankpart.Open(ctx, db, accounts, initial)
	if err != nil {
		return err
	}
	defer svc.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: svc, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	sweep, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { svc.Run(sweep); close(done) }()
	fmt.Printf("listening %s\n", ln.Addr())
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	err = srv.Shutdown(sctx)
	cancel()
	<-done
	return err
}
