// Package theatre is the seat-reservation example (seed 001): the seats of
// a performance are AVAILABLE, RESERVED or SOLD (participant.StateItem),
// and the try also obtains a payment authorisation from the payment
// service (a holds participant: the amount is held on the customer's
// account), so that the confirm cannot fail for lack of funds.
//
// It shows a registered transaction travelling along a chain of calls,
// as Oracle MicroTx does it. The box office (the initiator) begins a
// transaction and tries at the seat service through the client's
// propagating transport. The seat service (A) wraps its handler with
// client.Middleware and, inside its try, calls the payment service (B)
// through its own wrapped client: the payment's participant link comes
// back to A, which appends it to its own answer as a Link header, and so
// reaches the box office's transport, which enlists both reservations.
// The coordinator then confirms the seats and the payment together,
// though the box office never talked to the payment service.
//
// Command theatre (./cmd/theatre) runs the seat service (`theatre seats`),
// the payment service (`theatre payment`) and the box office
// (`theatre book`).
package theatre

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/examples/holds"
	"github.com/tccd/tccd/examples/internal/exampledb"
	"github.com/tccd/tccd/examples/internal/reserve"
	"github.com/tccd/tccd/participant"
)

// Theatre is the seat service.
//
//	POST   /performances/{show}/bookings[?ttl=90s] {"seats":["B7","B8"],"account":"alice"}
//	           try: hold the seats and authorise their price → 201 + links (the seats' and the payment's);
//	           409 a seat is taken; 402 the payment was refused; 400 without a transaction
//	PUT    /performances/{show}/bookings/{id}   confirm: the seats are sold
//	DELETE /performances/{show}/bookings/{id}   cancel: the seats are free again
//	GET    /performances/{show}                 the seat map
type Theatre struct {
	DB      *sql.DB
	Dialect participant.Dialect
	// Payment is the URL of the payment service's collection, e.g.
	// http://127.0.0.1:9202/payments.
	Payment string
	// PaymentHTTP calls the payment service. It must pass the transaction
	// on: an *http.Client from (*client.Client).WrapHTTPClient.
	PaymentHTTP *http.Client
	// TTL is the lifetime of a booking whose try asks for none; the
	// payment authorisation is asked for the same lifetime.
	TTL time.Duration
	// MaxTTL is the longest lifetime a try may ask for with ?ttl= (more is
	// answered 400) and the kit's cap; zero means participant.DefaultMaxTTL.
	MaxTTL time.Duration
}

// Seat states, as participant.StateItem's defaults name them.
const (
	Available = "AVAILABLE"
	Reserved  = "RESERVED"
	Sold      = "SOLD"
)

var schema = []string{
	`CREATE TABLE IF NOT EXISTS seats (
	id          VARCHAR(64)  NOT NULL PRIMARY KEY,
	show_       VARCHAR(32)  NOT NULL,
	seat        VARCHAR(8)   NOT NULL,
	pos         INTEGER      NOT NULL,
	price       BIGINT       NOT NULL,
	state       VARCHAR(16)  NOT NULL,
	reservation VARCHAR(128)
)`,
	`CREATE INDEX IF NOT EXISTS seats_show_idx ON seats (show_, pos)`,
	`CREATE INDEX IF NOT EXISTS seats_reservation_idx ON seats (reservation)`,
}

func (t Theatre) items() participant.StateItem {
	return participant.StateItem{Dialect: t.Dialect, Table: "seats",
		IDColumn: "id", StateColumn: "state", ReservationColumn: "reservation"}
}

// Migrate creates the seats table and the kit's bookkeeping table if they
// do not exist.
func (t Theatre) Migrate(ctx context.Context) error {
	if err := exampledb.Exec(ctx, t.DB, t.Dialect, schema...); err != nil {
		return err
	}
	return participant.Migrate(ctx, t.DB, t.Dialect, participant.DefaultTable)
}

// AddPerformance creates the seats of show unless they exist: rows A, B, …
// of perRow seats each (A1, A2, …). The first two rows cost price+2000
// cents, the others price.
func (t Theatre) AddPerformance(ctx context.Context, show string, rows, perRow int, price int64) error {
	if show == "" || len(show) > 32 || rows < 1 || rows > 26 || perRow < 1 || perRow > 50 || price < 1 {
		return fmt.Errorf("performance %q: want a name, 1 to 26 rows, 1 to 50 seats a row and a positive price", show)
	}
	tx, err := t.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ins := t.Dialect.Rebind(`INSERT INTO seats (id, show_, seat, pos, price, state) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`)
	for r := range rows {
		for s := range perRow {
			seat := fmt.Sprintf("%c%d", 'A'+r, s+1)
			p := price
			if r < 2 {
				p += 2000
			}
			if _, err := tx.ExecContext(ctx, ins, show+"/"+seat, show, seat, r*perRow+s, p, Available); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// Request is the body of a try.
type Request struct {
	Seats   []string `json:"seats"`
	Account string   `json:"account"`
}

// Tickets is what a try reports (the answer's "data").
type Tickets struct {
	Show    string   `json:"show"`
	Seats   []string `json:"seats"`
	Account string   `json:"account"`
	Amount  int64    `json:"amount"`
	// Payment is the payment authorisation's participant link; it is also
	// in the answer's Link header, for the initiator to enlist.
	Payment string `json:"payment"`
}

// Config is the seat service's participant configuration. Serve it behind
// client.Middleware, so that the try's context carries the transaction.
func (t Theatre) Config() participant.Config {
	items := t.items()
	return participant.Config{
		DB: t.DB, Dialect: t.Dialect, MaxTTL: t.MaxTTL, Path: "/performances/{show}/bookings",
		Try: func(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
			// Without a transaction the payment's link could not travel
			// back to the initiator, and a sold seat could go unpaid.
			if _, ok := client.FromContext(ctx); !ok {
				return participant.Reservation{}, participant.Reject(http.StatusBadRequest,
					"a booking must carry a transaction (Tcc-Transaction-Id): its payment authorisation is reported in a Link header for the initiator to enlist")
			}
			ttl, err := reserve.TTLParam(r, t.MaxTTL)
			if err != nil {
				return participant.Reservation{}, err
			}
			if ttl == 0 {
				ttl = t.TTL
			}
			var req Request
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				return participant.Reservation{}, participant.Rejectf(http.StatusBadRequest, "body: %v", err)
			}
			// Seats are reserved in one order (sorted), so that two tries
			// never wait for each other's seats in opposite orders.
			seats := slices.Compact(slices.Sorted(slices.Values(req.Seats)))
			if len(seats) == 0 || len(seats) > 8 || req.Account == "" {
				return participant.Reservation{}, participant.Reject(http.StatusBadRequest, "want 1 to 8 seats and an account")
			}
			show := r.PathValue("show")
			ids := make([]any, len(seats))
			for i, s := range seats {
				ids[i] = show + "/" + s
			}
			if err := items.Reserve(ctx, tx, id, ids...); err != nil {
				return participant.Reservation{}, err
			}
			var amount int64
			if err := tx.QueryRowContext(ctx, t.Dialect.Rebind(`SELECT SUM(price) FROM seats WHERE reservation = ?`), id).Scan(&amount); err != nil {
				return participant.Reservation{}, err
			}
			// The payment authorisation, under the same transaction. If this
			// try fails after it, the authorisation's link still reaches the
			// initiator (the middleware adds it to any answer), which
			// cancels; if its answer is lost, it expires.
			pay, err := reserve.Post(ctx, t.PaymentHTTP, reserve.WithTTL(t.Payment, ttl),
				holds.Request{Lines: []holds.Line{{Key: req.Account, Amount: amount}}})
			var refused *reserve.Refused
			switch {
			case errors.As(err, &refused) && refused.Status < 500:
				return participant.Reservation{}, participant.Rejectf(http.StatusPaymentRequired, "payment refused: %s", refused.Detail)
			case err != nil:
				return participant.Reservation{}, participant.Rejectf(http.StatusServiceUnavailable, "payment service unavailable: %v", err)
			}
			return participant.Reservation{TTL: ttl, Body: Tickets{Show: show, Seats: seats, Account: req.Account, Amount: amount, Payment: pay.Link.URI}}, nil
		},
		Confirm: items.Confirm,
		Cancel:  items.Cancel,
	}
}

// Seat is one seat of a performance.
type Seat struct {
	Seat        string `json:"seat"`
	Price       int64  `json:"price"`
	State       string `json:"state"`
	Reservation string `json:"reservation,omitempty"`
}

// Seats reads show's seats, in order.
func (t Theatre) Seats(ctx context.Context, show string) ([]Seat, error) {
	rows, err := t.DB.QueryContext(ctx, t.Dialect.Rebind(`SELECT seat, price, state, reservation FROM seats WHERE show_ = ? ORDER BY pos`), show)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Seat
	for rows.Next() {
		var s Seat
		var res sql.NullString
		if err := rows.Scan(&s.Seat, &s.Price, &s.State, &res); err != nil {
			return nil, err
		}
		s.Reservation = res.String
		out = append(out, s)
	}
	return out, rows.Err()
}

// ServeSeats is GET /performances/{show}: the seat map.
func (t Theatre) ServeSeats(w http.ResponseWriter, r *http.Request) {
	seats, err := t.Seats(r.Context(), r.PathValue("show"))
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if len(seats) == 0 {
		http.Error(w, "no such performance", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(seats)
}
