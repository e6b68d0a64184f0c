// Command trip runs the trip-booking example: airline participant services
// and the booking process. See package github.com/tccd/tccd/examples/trip
// and docs/EXAMPLES.md.
//
//	trip airline --name swiss --listen 127.0.0.1:9101 --db swiss.db --flight LX318=30
//	trip airline --name easyjet --listen 127.0.0.1:9102 --db easyjet.db --flight U2-5201=24
//	trip book --count 10 --style mixed
//
// The barrier style needs the airlines to know the coordinator:
//
//	trip airline --name swiss … --coordinator http://127.0.0.1:8420
//	trip book --style barrier
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/examples/internal/examplecmd"
	"github.com/tccd/tccd/examples/trip"
)

func main() {
	examplecmd.Main("trip — the trip-booking example: two airlines, one booking process, one coordinator",
		examplecmd.Command{Name: "airline", Summary: "run an airline's participant service", Run: runAirline},
		examplecmd.Command{Name: "book", Summary: "run bookings: a seat on every leg, confirmed together", Run: runBook},
	)
}

// flights is --flight CODE=SEATS, repeatable.
type flights map[string]int

func (f flights) String() string { return fmt.Sprint(map[string]int(f)) }
func (f flights) Set(s string) error {
	code, n, ok := strings.Cut(s, "=")
	seats, err := strconv.Atoi(n)
	if !ok || err != nil {
		return fmt.Errorf("want CODE=SEATS, e.g. LX318=30")
	}
	f[code] = seats
	return nil
}

func runAirline(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name := "swiss"
	fl := flights{}
	return examplecmd.RunService(ctx, examplecmd.Service{
		Name: "airline", Listen: "127.0.0.1:9101", DB: "airline.db",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&name, "name", name, "the airline's name")
			fs.Var(fl, "flight", "a flight and its number of seats, CODE=SEATS (repeatable; seats already there are kept)")
		},
		Setup: func(ctx context.Context, env *examplecmd.Env) error {
			env.Log = env.Log.With("airline", name)
			a := trip.Airline{Name: name, DB: env.DB, Dialect: env.Dialect, MaxTTL: env.MaxTTL}
			if err := a.Migrate(ctx); err != nil {
				return err
			}
			for code, seats := range fl {
				if err := a.AddFlight(ctx, code, seats); err != nil {
					return err
				}
			}
			p, err := env.Participant(ctx, a.Config())
			if err != nil {
				return err
			}
			p.Register(env.Mux)
			env.Mux.HandleFunc("GET /flights/{flight}", a.ServeFlight)
			return nil
		},
	}, args, stdout, stderr)
}

// legs is --leg AIRLINE=URL, repeatable.
type legs []trip.Leg

func (l *legs) String() string { return fmt.Sprint(*l) }
func (l *legs) Set(s string) error {
	leg, err := trip.ParseLeg(s)
	if err == nil {
		*l = append(*l, leg)
	}
	return err
}

func runBook(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("book", flag.ContinueOnError)
	fs.SetOutput(stderr)
	coordinator := fs.String("coordinator", "http://127.0.0.1:8420", "the coordinator's URL")
	var ls legs
	fs.Var(&ls, "leg", "a seat to book, AIRLINE=http://host:port/flights/FLIGHT, in booking order (repeatable; default: swiss LX318 on :9101 and easyjet U2-5201 on :9102)")
	style := fs.String("style", "mixed", "one-shot (Atomikos confirm of the collected links), registered (begin, propagate, confirm), barrier (registered, confirmed in barrier mode: the airlines need --coordinator) or mixed (alternate one-shot and registered)")
	ttl := fs.Duration("ttl", time.Minute, "lifetime asked of every seat reservation")
	timeout := fs.Duration("timeout", time.Minute, "timeout of a registered transaction")
	var batch examplecmd.BatchFlags
	batch.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := batch.Check(); err != nil {
		return err
	}
	if len(ls) == 0 {
		ls = legs{{Airline: "swiss", URL: "http://127.0.0.1:9101/flights/LX318"}, {Airline: "easyjet", URL: "http://127.0.0.1:9102/flights/U2-5201"}}
	}
	styleOf := func(n int) trip.Style {
		switch *style {
		case "mixed":
			if n%2 == 0 {
				return trip.Registered
			}
			return trip.OneShot
		default:
			return trip.Style(*style)
		}
	}
	if s := *style; s != "mixed" && s != string(trip.OneShot) && s != string(trip.Registered) && s != string(trip.Barrier) {
		return fmt.Errorf("%w: --style %q: want one-shot, registered, barrier or mixed", examplecmd.ErrUsage, s)
	}
	c, err := client.New(*coordinator)
	if err != nil {
		return fmt.Errorf("%w: --coordinator: %v", examplecmd.ErrUsage, err)
	}
	b := &trip.Booker{Coordinator: c, HTTP: &http.Client{Timeout: 10 * time.Second}, TTL: *ttl, Timeout: *timeout}
	return examplecmd.RunBatch(ctx, batch, stdout, func(ctx context.Context, n int) *trip.Booking {
		if batch.Vanish {
			bk := b.Reserve(ctx, n, styleOf(n), ls...)
			if bk.Outcome == trip.Held {
				b.Abandon(bk)
			}
			return bk
		}
		return b.Book(ctx, n, styleOf(n), ls...)
	})
}
