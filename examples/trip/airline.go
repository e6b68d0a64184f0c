// Package trip is the trip-booking example: a
// booking process books a seat with "swiss" and one with "easyjet", and
// asks the coordinator to confirm both, or neither.
//
// Each airline is a participant service with its own database: a table of
// seats per flight that move AVAILABLE → RESERVED on try, SOLD on confirm,
// and back to AVAILABLE on cancel or expiry (participant.StateItem).
// The booking process (Booker) shows both ways to use the coordinator:
// one-shot, in the style of the Atomikos protocol (try at each airline,
// collect the links, client.Confirm them in one call), and registered
// (client.Begin, then tries through the client's propagating transport,
// which enlists each reservation, then tx.Confirm).
//
// In the barrier style the airlines run with the coordinator's URL
// (participant.Config.Coordinator, `trip airline --coordinator`): a
// confirm is applied, reported, and committed only when both airlines have
// reported theirs. On SQLite an airline then serves one confirm at a time
// (the database's write lock is held until the outcome): book one at a
// time, or use PostgreSQL.
//
// Command trip (./cmd/trip) runs an airline (`trip airline`) and the
// booking process (`trip book`); `tccd demo` runs this example in-process.
package trip

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/examples/internal/exampledb"
	"github.com/tccd/tccd/examples/internal/reserve"
	"github.com/tccd/tccd/participant"
)

// Airline is one airline's participant service. Its database holds the
// seats of its flights and the kit's bookkeeping table.
//
//	POST   /flights/{flight}/bookings[?ttl=90s]  try: hold the next free seat → 201 + participant link
//	                                             and {"data":{"airline","flight","seat"}}; 409 when full;
//	                                             200 with the same link and data for a repeated try of
//	                                             the same transaction; 400 for a ttl above MaxTTL
//	PUT    /flights/{flight}/bookings/{id}       confirm: the seat is sold
//	DELETE /flights/{flight}/bookings/{id}       cancel: the seat is free again
//	GET    /flights/{flight}                     the seat counts and the seat map
//
// A booking is found only under the flight it was made on: a confirm,
// cancel or GET of /flights/NOPE/bookings/{id} answers 404.
type Airline struct {
	Name    string
	DB      *sql.DB
	Dialect participant.Dialect
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

// schema is the airline's own table. A seat's id is "<flight>/<seat>";
// pos is the order seats are handed out in.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS seats (
	id          VARCHAR(64)  NOT NULL PRIMARY KEY,
	flight      VARCHAR(32)  NOT NULL,
	seat        VARCHAR(8)   NOT NULL,
	pos         INTEGER      NOT NULL,
	state       VARCHAR(16)  NOT NULL,
	reservation VARCHAR(128)
)`,
	`CREATE INDEX IF NOT EXISTS seats_free_idx ON seats (flight, state, pos)`,
	`CREATE INDEX IF NOT EXISTS seats_reservation_idx ON seats (reservation)`,
}

// items is the StateItem helper over the seats table.
func (a Airline) items() participant.StateItem {
	return participant.StateItem{Dialect: a.Dialect, Table: "seats",
		IDColumn: "id", StateColumn: "state", ReservationColumn: "reservation"}
}

// Migrate creates the seats table and the kit's bookkeeping table if they
// do not exist.
func (a Airline) Migrate(ctx context.Context) error {
	if err := exampledb.Exec(ctx, a.DB, a.Dialect, schema...); err != nil {
		return err
	}
	return participant.Migrate(ctx, a.DB, a.Dialect, participant.DefaultTable)
}

var flightCode = regexp.MustCompile(`^[A-Za-z0-9-]{1,16}$`)

// AddFlight creates the seats of flight (1A, 1B, … 1F, 2A, …) unless they
// exist: seats already there keep their state.
func (a Airline) AddFlight(ctx context.Context, flight string, seats int) error {
	if !flightCode.MatchString(flight) || seats < 1 || seats > 1000 {
		return fmt.Errorf("flight %q with %d seats: want a code of letters, digits and dashes, and 1 to 1000 seats", flight, seats)
	}
	tx, err := a.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ins := a.Dialect.Rebind(`INSERT INTO seats (id, flight, seat, pos, state) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`)
	for i := range seats {
		seat := fmt.Sprintf("%d%c", i/6+1, "ABCDEF"[i%6])
		if _, err := tx.ExecContext(ctx, ins, flight+"/"+seat, flight, seat, i, Available); err != nil {
			return fmt.Errorf("add seat %s of %s: %w", seat, flight, err)
		}
	}
	return tx.Commit()
}

// Hold is what a try reports about the seat it holds (the answer's "data").
type Hold struct {
	Airline string `json:"airline"`
	Flight  string `json:"flight"`
	Seat    string `json:"seat"`
}

// Config is the airline's participant configuration: the try holds the
// next free seat of the flight; confirm and cancel are StateItem's. The
// caller adds the database, lifetimes and logger (participant.Config's
// other fields) and creates it with participant.New.
func (a Airline) Config() participant.Config {
	items := a.items()
	return participant.Config{
		DB: a.DB, Dialect: a.Dialect, MaxTTL: a.MaxTTL,
		Path: "/flights/{flight}/bookings",
		// A booking made on behalf of a registered transaction gets an id
		// derived from it: a retried try lands on the same seat (answered
		// 200 with it), and a cancel that overtakes its try is remembered
		// against it. The id names one booking per flight per transaction
		// — one traveller; a second seat on the same flight in one
		// transaction would need a key of its own (a traveller's name),
		// or its try would be answered with the first seat.
		ReservationID: func(r *http.Request) (string, error) {
			if txID := r.Header.Get(api.HeaderTransactionID); txID != "" {
				return participant.DeriveID(txID, r.PathValue("flight")), nil
			}
			return participant.NewID()
		},
		Try: func(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
			ttl, err := reserve.TTLParam(r, a.MaxTTL)
			if err != nil {
				return participant.Reservation{}, err
			}
			flight := r.PathValue("flight")
			seat, err := a.assign(ctx, tx, id, flight)
			if err != nil {
				return participant.Reservation{}, err
			}
			return participant.Reservation{TTL: ttl, Body: Hold{Airline: a.Name, Flight: flight, Seat: seat}}, nil
		},
		Confirm: items.Confirm,
		Cancel:  items.Cancel,
	}
}

// assign holds the first free seat of flight for reservation id. Another
// try may take a candidate between the SELECT and the guarded UPDATE (on
// PostgreSQL; SQLite runs one writer at a time): then the next candidate
// is tried.
func (a Airline) assign(ctx context.Context, tx *sql.Tx, id, flight string) (string, error) {
	items := a.items()
	free := a.Dialect.Rebind(`SELECT id, seat FROM seats WHERE flight = ? AND state = ? ORDER BY pos LIMIT 8`)
	for range 3 {
		type cand struct{ id, seat string }
		var cands []cand
		rows, err := tx.QueryContext(ctx, free, flight, Available)
		if err != nil {
			return "", err
		}
		for rows.Next() {
			var c cand
			if err := rows.Scan(&c.id, &c.seat); err != nil {
				rows.Close()
				return "", err
			}
			cands = append(cands, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return "", err
		}
		if len(cands) == 0 {
			var n int
			if err := tx.QueryRowContext(ctx, a.Dialect.Rebind(`SELECT COUNT(*) FROM seats WHERE flight = ?`), flight).Scan(&n); err != nil {
				return "", err
			}
			if n == 0 {
				return "", participant.Rejectf(http.StatusNotFound, "no flight %s at %s", flight, a.Name)
			}
			return "", participant.Rejectf(http.StatusConflict, "flight %s is full", flight)
		}
		for _, c := range cands {
			err := items.Reserve(ctx, tx, id, c.id)
			var taken *participant.Rejection
			if errors.As(err, &taken) && taken.Status == http.StatusConflict {
				continue
			}
			if err != nil {
				return "", err
			}
			return c.seat, nil
		}
	}
	return "", participant.Rejectf(http.StatusServiceUnavailable, "the seats of flight %s are going fast; try again", flight)
}

// Seat is one seat of a flight as the airline's database has it.
type Seat struct {
	Seat        string `json:"seat"`
	State       string `json:"state"`
	Reservation string `json:"reservation,omitempty"`
}

// Flight is a flight's seat map and counts.
type Flight struct {
	Flight    string `json:"flight"`
	Total     int    `json:"total"`
	Available int    `json:"available"`
	Reserved  int    `json:"reserved"`
	Sold      int    `json:"sold"`
	Seats     []Seat `json:"seats"`
}

// Flight reads flight's seats, in order.
func (a Airline) Flight(ctx context.Context, flight string) (Flight, error) {
	rows, err := a.DB.QueryContext(ctx, a.Dialect.Rebind(`SELECT seat, state, reservation FROM seats WHERE flight = ? ORDER BY pos`), flight)
	if err != nil {
		return Flight{}, err
	}
	defer rows.Close()
	f := Flight{Flight: flight}
	for rows.Next() {
		var s Seat
		var res sql.NullString
		if err := rows.Scan(&s.Seat, &s.State, &res); err != nil {
			return Flight{}, err
		}
		s.Reservation = res.String
		f.Seats = append(f.Seats, s)
		f.Total++
		switch s.State {
		case Available:
			f.Available++
		case Reserved:
			f.Reserved++
		case Sold:
			f.Sold++
		}
	}
	return f, rows.Err()
}

// ServeFlight is GET /flights/{flight}: the seat counts and the seat map.
func (a Airline) ServeFlight(w http.ResponseWriter, r *http.Request) {
	f, err := a.Flight(r.Context(), r.PathValue("flight"))
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if f.Total == 0 {
		http.Error(w, "no such flight", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(f)
}
