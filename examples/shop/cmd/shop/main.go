// Command shop runs the inventory-and-funds example: the stock service,
// the wallet, and the checkout. See package
// github.com/tccd/tccd/examples/shop and docs/EXAMPLES.md.
//
//	shop stock  --listen 127.0.0.1:9301 --db stock.db  --fund apple=100 --fund pear=50 [--nats nats://127.0.0.1:4222]
//	shop wallet --listen 127.0.0.1:9302 --db wallet.db --fund alice=10000 --fund bob=2000
//	shop checkout --count 10 --accounts alice,bob
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/examples/holds"
	"github.com/tccd/tccd/examples/internal/examplecmd"
	"github.com/tccd/tccd/examples/internal/outcome"
	"github.com/tccd/tccd/examples/shop"
)

func main() {
	examplecmd.Main("shop — the inventory-and-funds example: stock and money held, then confirmed together",
		examplecmd.Command{Name: "stock", Summary: "run the stock service (units per SKU; with --nats it publishes order.placed)", Run: service(shop.StockService())},
		examplecmd.Command{Name: "wallet", Summary: "run the wallet (cents per account)", Run: service(holds.Service("wallet", "/payments", "127.0.0.1:9302", "wallet.db"))},
		examplecmd.Command{Name: "checkout", Summary: "place orders: stock and money held, then confirmed in one call", Run: runCheckout},
	)
}

func service(s examplecmd.Service) func(context.Context, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return examplecmd.RunService(ctx, s, args, stdout, stderr)
	}
}

func runCheckout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("checkout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	coordinator := fs.String("coordinator", "http://127.0.0.1:8420", "the coordinator's URL")
	stock := fs.String("stock", "http://127.0.0.1:9301/reservations", "the stock service's reservations")
	wallet := fs.String("wallet", "http://127.0.0.1:9302/payments", "the wallet's payments")
	accounts := fs.String("accounts", "alice,bob", "comma-separated accounts to charge, picked at random")
	seed := fs.Uint64("seed", 1, "seed of the random orders (order n of a seed is always the same)")
	basket := fs.String("basket", "", "a fixed basket SKU=N,… (e.g. apple=2,pear=1) instead of random ones")
	ttl := fs.Duration("ttl", time.Minute, "lifetime asked of every reservation")
	var batch examplecmd.BatchFlags
	batch.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := batch.Check(); err != nil {
		return err
	}
	accts := strings.Split(*accounts, ",")
	var fixed []holds.Line
	if *basket != "" {
		for _, item := range strings.Split(*basket, ",") {
			sku, n, ok := strings.Cut(item, "=")
			q, err := strconv.ParseInt(n, 10, 64)
			if !ok || err != nil {
				return fmt.Errorf("%w: --basket %q: want SKU=N,…", examplecmd.ErrUsage, *basket)
			}
			fixed = append(fixed, holds.Line{Key: sku, Amount: q})
		}
	}
	c, err := client.New(*coordinator)
	if err != nil {
		return fmt.Errorf("%w: --coordinator: %v", examplecmd.ErrUsage, err)
	}
	co := &shop.Checkout{Coordinator: c, HTTP: &http.Client{Timeout: 10 * time.Second}, Stock: *stock, Wallet: *wallet, TTL: *ttl}
	return examplecmd.RunBatch(ctx, batch, stdout, func(ctx context.Context, n int) *shop.Order {
		account, lines := shop.RandomOrder(rand.New(rand.NewPCG(*seed, uint64(n))), accts)
		if fixed != nil {
			lines = fixed
		}
		if batch.Vanish {
			o := co.Reserve(ctx, n, account, lines)
			if o.Outcome == outcome.Held {
				co.Abandon(o)
			}
			return o
		}
		return co.Place(ctx, n, account, lines)
	})
}
