package shop

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/tccd/tccd/examples/holds"
	"github.com/tccd/tccd/examples/internal/examplecmd"
	"github.com/tccd/tccd/nats"
	"github.com/tccd/tccd/participant"
)

// SubjectOrderPlaced is the default subject of the message the stock
// service publishes when an order's stock reservation confirms.
const SubjectOrderPlaced = "order.placed"

// OrderPlaced is the body of that message (JSON): the stock reservation
// that confirmed and what it took. Shipping, say, subscribes to it.
type OrderPlaced struct {
	// Reservation is the stock reservation's id: the last segment of its
	// participant link (Order.Stock).
	Reservation string       `json:"reservation"`
	Lines       []holds.Line `json:"lines"`
}

// PublishOrderPlaced makes the stock participant cfg (holds.Ledger.Config)
// publish an OrderPlaced message to subject through ob when a reservation
// confirms: its try stores the message with the reservation, in the try's
// transaction, and the kit publishes it once the reservation confirms —
// never if it is cancelled or expires.
func PublishOrderPlaced(cfg participant.Config, ob *participant.Outbox, subject string) participant.Config {
	try := cfg.Try
	cfg.Outbox = ob
	cfg.Try = func(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
		res, err := try(ctx, tx, id, r)
		if err != nil {
			return res, err
		}
		req, ok := res.Body.(holds.Request)
		if !ok {
			return res, fmt.Errorf("stock try answered %T, want holds.Request", res.Body)
		}
		data, err := json.Marshal(OrderPlaced{Reservation: id, Lines: req.Lines})
		if err != nil {
			return res, err
		}
		msg := participant.Message{Subject: subject, Data: data, Headers: map[string][]string{"Content-Type": {"application/json"}}}
		return res, ob.Add(ctx, tx, id, msg)
	}
	return cfg
}

// StockService is the stock service of command shop: the holds
// participant of the warehouse at /reservations, which with --nats also
// publishes order.placed through the kit's outbox.
func StockService() examplecmd.Service {
	f := funds{}
	var natsURL, subject string
	return examplecmd.Service{
		Name: "stock", Listen: "127.0.0.1:9301", DB: "stock.db",
		Flags: func(fs *flag.FlagSet) {
			fs.Var(f, "fund", "create a SKU with a number of units, SKU=N (repeatable; SKUs already there are kept)")
			fs.StringVar(&natsURL, "nats", "", "NATS server with JetStream (e.g. nats://127.0.0.1:4222): publish a message on --order-subject "+
				"when an order's stock reservation confirms, exactly once, through the outbox; without it, no messages are published")
			fs.StringVar(&subject, "order-subject", SubjectOrderPlaced, "subject of the order-placed message (a stream must capture it: the operator creates the streams)")
		},
		Setup: func(ctx context.Context, env *examplecmd.Env) error {
			l := holds.Ledger{DB: env.DB, Dialect: env.Dialect, MaxTTL: env.MaxTTL}
			if err := l.Migrate(ctx); err != nil {
				return err
			}
			for k, n := range f {
				if err := l.Fund(ctx, k, n); err != nil {
					return err
				}
			}
			cfg := l.Config("/reservations")
			if natsURL != "" {
				ob, err := openOutbox(ctx, env, natsURL, subject)
				if err != nil {
					return err
				}
				cfg = PublishOrderPlaced(cfg, ob, subject)
			}
			p, err := env.Participant(ctx, cfg)
			if err != nil {
				return err
			}
			p.Register(env.Mux)
			env.Mux.HandleFunc("GET /balances", l.ServeBalances)
			return nil
		},
	}
}

// openOutbox connects to NATS, refuses a subject no stream captures, and
// makes the outbox whose relay (run with the participant's sweeper)
// publishes through that connection.
func openOutbox(ctx context.Context, env *examplecmd.Env, url, subject string) (*participant.Outbox, error) {
	pub, err := nats.Open(ctx, nats.Config{URL: url, Name: "shop-stock", Logger: env.Log})
	if err != nil {
		return nil, err
	}
	env.OnClose(pub.Close)
	if err := pub.CheckSubject(ctx, subject); err != nil {
		return nil, fmt.Errorf("--order-subject: %w", err)
	}
	ob, err := participant.NewOutbox(ctx, participant.OutboxConfig{DB: env.DB, Dialect: env.Dialect, Publisher: pub, Logger: env.Log})
	if err != nil {
		return nil, err
	}
	env.Log.Info("publishing order messages through the outbox", "subject", subject)
	return ob, nil
}

// funds is --fund KEY=AMOUNT, repeatable.
type funds map[string]int64

func (f funds) String() string { return fmt.Sprint(map[string]int64(f)) }
func (f funds) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	n, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil || k == "" {
		return errors.New("want SKU=N, e.g. apple=100")
	}
	f[k] = n
	return nil
}
