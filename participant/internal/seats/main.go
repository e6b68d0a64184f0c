// Command seats is a small seat-booking participant on the kit and SQLite,
// run by the kit's restart test as a real process: each seat moves
// AVAILABLE → RESERVED → SOLD (participant.StateItem). It prints
// "listening <host:port>" once it accepts connections.
//
//	POST   /seats?seat=N[&ttl=1m]  try: reserve seat N; the reservation id is
//	                               derived from Tcc-Transaction-Id and the seat
//	                               when the header is set, else random
//	PUT    /seats/{id}             confirm
//	DELETE /seats/{id}             cancel
//	GET    /seats/{id}             the bookkeeping row
//	GET    /seats                  every seat: [{"seat","state","reservation"}]
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	_ "modernc.org/sqlite"

	"github.com/tccd/tccd/participant"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	dbPath := flag.String("db", "seats.db", "SQLite file")
	seats := flag.Int("seats", 100, "seats created in a new database")
	sweep := flag.Duration("sweep-every", 50*time.Millisecond, "period of the expiry sweeper")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *dbPath, *seats, *sweep); err != nil {
		fmt.Fprintln(os.Stderr, "seats:", err)
		os.Exit(1)
	}
}

// txSeat is the reservation id of seat under transaction tx.
func txSeat(tx string, seat int) string { return participant.DeriveID(tx, "seat", strconv.Itoa(seat)) }

func run(ctx context.Context, listen, path string, n int, sweep time.Duration) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return err
	}
	defer db.Close()
	if err := setup(ctx, db, n); err != nil {
		return fmt.Errorf("set-up: %w", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	items := participant.StateItem{Dialect: participant.SQLite, Table: "seats",
		IDColumn: "seat", StateColumn: "state", ReservationColumn: "reservation"}
	p, err := participant.New(ctx, participant.Config{
		DB: db, Dialect: participant.SQLite, Path: "/seats",
		BaseURL:    "http://" + ln.Addr().String(),
		SweepEvery: sweep,
		Retention:  participant.MinRetention,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, nil)),
		ReservationID: func(r *http.Request) (string, error) {
			seat, err := strconv.Atoi(r.URL.Query().Get("seat"))
			if tx := r.Header.Get("Tcc-Transaction-Id"); tx != "" && err == nil {
				return txSeat(tx, seat), nil
			}
			return participant.NewID()
		},
		Try: func(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
			q := r.URL.Query()
			seat, err := strconv.Atoi(q.Get("seat"))
			if err != nil {
				return participant.Reservation{}, participant.Rejectf(http.StatusBadRequest, "seat %q", q.Get("seat"))
			}
			var ttl time.Duration
			if v := q.Get("ttl"); v != "" {
				if ttl, err = time.ParseDuration(v); err != nil || ttl <= 0 {
					return participant.Reservation{}, participant.Rejectf(http.StatusBadRequest, "ttl %q", v)
				}
			}
			return participant.Reservation{TTL: ttl, Body: map[string]int{"seat": seat}}, items.Reserve(ctx, tx, id, seat)
		},
		Confirm: items.Confirm,
		Cancel:  items.Cancel,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	p.Register(mux)
	mux.HandleFunc("GET /seats", func(w http.ResponseWriter, r *http.Request) {
		if err := listSeats(r.Context(), db, w); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	sweepCtx, stopSweeper := context.WithCancel(context.Background())
	swept := make(chan struct{})
	go func() { defer close(swept); p.Run(sweepCtx) }()
	fmt.Printf("listening %s\n", ln.Addr())
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = errors.Join(err, srv.Shutdown(shutdown))
	stopSweeper()
	<-swept
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// setup creates the seats and the kit's table, unless they exist.
func setup(ctx context.Context, db *sql.DB, n int) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS seats (seat INTEGER PRIMARY KEY, state TEXT NOT NULL, reservation TEXT)`); err != nil {
		return err
	}
	if err := participant.Migrate(ctx, db, participant.SQLite, participant.DefaultTable); err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for i := 1; i <= n; i++ {
		if _, err := tx.ExecContext(ctx, `INSERT INTO seats (seat, state) VALUES (?, 'AVAILABLE') ON CONFLICT DO NOTHING`, i); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// seat is a row of the seats table as GET /seats shows it.
type seat struct {
	Seat        int    `json:"seat"`
	State       string `json:"state"`
	Reservation string `json:"reservation,omitempty"`
}

func listSeats(ctx context.Context, db *sql.DB, w http.ResponseWriter) error {
	rows, err := db.QueryContext(ctx, `SELECT seat, state, reservation FROM seats ORDER BY seat`)
	if err != nil {
		return err
	}
	defer rows.Close()
	out := []seat{}
	for rows.Next() {
		var s seat
		var res sql.NullString
		if err := rows.Scan(&s.Seat, &s.State, &res); err != nil {
			return err
		}
		s.Reservation = res.String
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}
