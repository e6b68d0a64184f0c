// Command testpart runs the test reservation service as its own process.
// It prints "listening <addr>" on stdout once it accepts connections.
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

	"github.com/tccd/tccd/internal/testpart"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	ttl := flag.Duration("ttl", 30*time.Second, "default reservation lifetime")
	latency := flag.Duration("latency", 0, "added to every confirm and cancel")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testpart:", err)
		os.Exit(1)
	}
	svc := testpart.New(*ttl)
	svc.SetLatency(*latency)
	srv := &http.Server{Handler: svc, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("listening %s\n", ln.Addr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
}
