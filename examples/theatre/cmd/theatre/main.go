// Command theatre runs the seat-reservation example: the seat service,
// the payment service and the box office. See package
// github.com/tccd/tccd/examples/theatre and docs/EXAMPLES.md.
//
//	theatre payment --listen 127.0.0.1:9202 --db payment.db --fund alice=50000 --fund bob=9000
//	theatre seats   --listen 127.0.0.1:9201 --db seats.db --payment http://127.0.0.1:9202/payments --show hamlet=6x10
//	theatre book --count 10 --accounts alice,bob
package main

import (
	"context"
	"encoding/json"
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
	"github.com/tccd/tccd/examples/theatre"
)

func main() {
	examplecmd.Main("theatre — the seat-reservation example: seats held and paid for in one transaction",
		examplecmd.Command{Name: "seats", Summary: "run the seat service (it calls the payment service inside its try)", Run: runSeats},
		examplecmd.Command{Name: "payment", Summary: "run the payment service (authorisations held on accounts)", Run: runPayment},
		examplecmd.Command{Name: "book", Summary: "run bookings: seats and their payment, confirmed together", Run: runBook},
	)
}

func runPayment(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return examplecmd.RunService(ctx, holds.Service("payment", "/payments", "127.0.0.1:9202", "payment.db"), args, stdout, stderr)
}

// shows is --show NAME=ROWSxSEATS, repeatable.
type shows map[string][2]int

func (s shows) String() string { return fmt.Sprint(map[string][2]int(s)) }
func (s shows) Set(v string) error {
	name, size, ok := strings.Cut(v, "=")
	r, c, ok2 := strings.Cut(size, "x")
	rows, err1 := strconv.Atoi(r)
	perRow, err2 := strconv.Atoi(c)
	if !ok || !ok2 || err1 != nil || err2 != nil {
		return fmt.Errorf("want NAME=ROWSxSEATS, e.g. hamlet=6x10")
	}
	s[name] = [2]int{rows, perRow}
	return nil
}

func runSeats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	payment := "http://127.0.0.1:9202/payments"
	price := int64(4500)
	sh := shows{}
	return examplecmd.RunService(ctx, examplecmd.Service{
		Name: "seats", Listen: "127.0.0.1:9201", DB: "seats.db",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&payment, "payment", payment, "the payment service's payments")
			fs.Int64Var(&price, "price", price, "price of a seat in cents (the first two rows cost 2000 more)")
			fs.Var(sh, "show", "a performance and its seats, NAME=ROWSxSEATS (repeatable; seats already there are kept)")
		},
		Setup: func(ctx context.Context, env *examplecmd.Env) error {
			// The propagating client needs the coordinator's URL (the
			// service's --coordinator); the seat service never calls it.
			coordinator := env.Coordinator
			if coordinator == "" {
				coordinator = "http://127.0.0.1:8420"
			}
			c, err := client.New(coordinator)
			if err != nil {
				return err
			}
			t := theatre.Theatre{DB: env.DB, Dialect: env.Dialect, Payment: payment, TTL: env.TTL, MaxTTL: env.MaxTTL,
				PaymentHTTP: c.WrapHTTPClient(&http.Client{Timeout: 5 * time.Second})}
			if err := t.Migrate(ctx); err != nil {
				return err
			}
			for name, size := range sh {
				if err := t.AddPerformance(ctx, name, size[0], size[1], price); err != nil {
					return err
				}
			}
			p, err := env.Participant(ctx, t.Config())
			if err != nil {
				return err
			}
			// The middleware puts the inbound transaction into the try's
			// context, and adds the payment's link to the answer.
			env.Mux.Handle("/performances/", client.Middleware(c)(p))
			env.Mux.HandleFunc("GET /performances/{show}", t.ServeSeats)
			return nil
		},
	}, args, stdout, stderr)
}

func runBook(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("book", flag.ContinueOnError)
	fs.SetOutput(stderr)
	coordinator := fs.String("coordinator", "http://127.0.0.1:8420", "the coordinator's URL")
	show := fs.String("show", "http://127.0.0.1:9201/performances/hamlet", "the performance's URL at the seat service")
	seats := fs.Int("seats", 2, "seats per booking, picked at random among those the seat map shows free")
	accounts := fs.String("accounts", "alice,bob", "comma-separated accounts to charge, picked at random")
	seed := fs.Uint64("seed", 1, "seed of the random choices")
	ttl := fs.Duration("ttl", time.Minute, "lifetime asked of the reservations")
	timeout := fs.Duration("timeout", time.Minute, "the transaction's timeout")
	var batch examplecmd.BatchFlags
	batch.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := batch.Check(); err != nil {
		return err
	}
	c, err := client.New(*coordinator)
	if err != nil {
		return fmt.Errorf("%w: --coordinator: %v", examplecmd.ErrUsage, err)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	bo := &theatre.BoxOffice{Coordinator: c, HTTP: hc, TTL: *ttl, Timeout: *timeout}
	accts := strings.Split(*accounts, ",")
	return examplecmd.RunBatch(ctx, batch, stdout, func(ctx context.Context, n int) *theatre.Booking {
		rng := rand.New(rand.NewPCG(*seed, uint64(n)))
		account := accts[rng.IntN(len(accts))]
		seatMap, err := getSeats(ctx, hc, *show)
		if err != nil {
			return &theatre.Booking{N: n, Account: account, Outcome: outcome.Failed, Reason: "seat map: " + err.Error()}
		}
		picked := theatre.PickSeats(rng, seatMap, *seats)
		if len(picked) < *seats {
			return &theatre.Booking{N: n, Account: account, Outcome: outcome.Refused, Reason: "sold out"}
		}
		if batch.Vanish {
			bk := bo.Reserve(ctx, n, *show, picked, account)
			if bk.Outcome == outcome.Held {
				bo.Abandon(bk)
			}
			return bk
		}
		return bo.Book(ctx, n, *show, picked, account)
	})
}

func getSeats(ctx context.Context, hc *http.Client, show string) ([]theatre.Seat, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, show, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", show, resp.Status)
	}
	var seats []theatre.Seat
	return seats, json.NewDecoder(resp.Body).Decode(&seats)
}
