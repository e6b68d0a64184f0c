// Command seats is a small seat-booking participant on the kit, run by
// the kit's restart and barrier tests as a real process: each seat moves
// AVAILABLE → RESERVED → SOLD (participant.StateItem). It keeps its seats
// in SQLite (--db FILE), or with --dialect postgres|mysql in the database
// --db names (a DSN), its tables' names prefixed with --prefix. With
// --coordinator it takes part in barrier-mode transactions. It prints
// "listening <host:port>" once it accepts connections.
//
// --hold-after-report is for the barrier test that kills it between its
// report and its commit: once the coordinator has answered a report, it
// prints "outcome <key> <outcome>" and holds the confirm (its local
// transaction open) until the request ends.
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
	"strings"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/tccd/tccd/participant"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	var o options
	flag.StringVar(&o.db, "db", "seats.db", "SQLite file, or with --dialect postgres or mysql a DSN")
	flag.StringVar(&o.dialect, "dialect", "sqlite", "sqlite, postgres or mysql")
	flag.StringVar(&o.prefix, "prefix", "", "prefix of the tables' names (a schema or database and a dot)")
	flag.IntVar(&o.seats, "seats", 100, "seats created in a new database")
	flag.DurationVar(&o.sweep, "sweep-every", 50*time.Millisecond, "period of the expiry sweeper")
	flag.StringVar(&o.coordinator, "coordinator", "", "the coordinator's URL, for barrier-mode confirms")
	flag.BoolVar(&o.holdAfterReport, "hold-after-report", false, "FOR TESTS: hold every barrier confirm once its report is answered")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, o); err != nil {
		fmt.Fprintln(os.Stderr, "seats:", err)
		os.Exit(1)
	}
}

// txSeat is the reservation id of seat under transaction tx.
func txSeat(tx string, seat int) string { return participant.DeriveID(tx, "seat", strconv.Itoa(seat)) }

type options struct {
	db, dialect, prefix, coordinator string
	seats                            int
	sweep                            time.Duration
	holdAfterReport                  bool
}

// open opens the database of o.
func (o options) open() (*sql.DB, participant.Dialect, error) {
	switch o.dialect {
	case "sqlite":
		db, err := sql.Open("sqlite", "file:"+o.db+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
		return db, participant.SQLite, err
	case "postgres":
		db, err := sql.Open("pgx", o.db)
		return db, participant.PostgreSQL, err
	case "mysql":
		db, err := sql.Open("mysql", o.db)
		return db, participant.MySQL, err
	}
	return nil, 0, fmt.Errorf("--dialect %q: want sqlite, postgres or mysql", o.dialect)
}

func run(ctx context.Context, listen string, o options) error {
	db, d, err := o.open()
	if err != nil {
		return err
	}
	defer db.Close()
	seatsTable, kitTable := o.prefix+"seats", o.prefix+participant.DefaultTable
	if err := setup(ctx, db, d, seatsTable, kitTable, o.seats); err != nil {
		return fmt.Errorf("set-up: %w", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	items := participant.StateItem{Dialect: d, Table: seatsTable,
		IDColumn: "seat", StateColumn: "state", ReservationColumn: "reservation"}
	var hc *http.Client
	if o.holdAfterReport {
		hc = &http.Client{Transport: holdAfterReport{http.DefaultTransport}}
	}
	p, err := participant.New(ctx, participant.Config{
		DB: db, Dialect: d, Table: kitTable, Path: "/seats",
		BaseURL:     "http://" + ln.Addr().String(),
		SweepEvery:  o.sweep,
		Retention:   participant.MinRetention,
		Coordinator: o.coordinator,
		HTTPClient:  hc,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, nil)),
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
		if err := listSeats(r.Context(), db, seatsTable, w); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	sweepCtx, stopSweeper := context.WithCancel(context.Background())
	swept := make(chan struct{})
	go func() { defer close(swept); p.Run(sweepCtx) }()
	if o.holdAfterReport {
		fmt.Println("holding barrier confirms after their report")
	}
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
func setup(ctx context.Context, db *sql.DB, d participant.Dialect, seats, kitTable string, n int) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+seats+
		` (seat INTEGER NOT NULL PRIMARY KEY, state VARCHAR(16) NOT NULL, reservation VARCHAR(128) NULL)`); err != nil {
		return err
	}
	if err := participant.Migrate(ctx, db, d, kitTable); err != nil {
		return err
	}
	insert := `INSERT INTO ` + seats + ` (seat, state) VALUES (?, 'AVAILABLE') ON CONFLICT DO NOTHING`
	if d == participant.MySQL {
		insert = `INSERT IGNORE INTO ` + seats + ` (seat, state) VALUES (?, 'AVAILABLE')`
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for i := 1; i <= n; i++ {
		if _, err := tx.ExecContext(ctx, d.Rebind(insert), i); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// holdAfterReport is the transport of --hold-after-report: once the
// coordinator has answered a barrier report, it says so on stdout and
// holds the answer until the request ends (the test kills the process
// meanwhile: between the report and the commit).
type holdAfterReport struct{ next http.RoundTripper }

func (h holdAfterReport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.next.RoundTrip(r)
	key, isReport := strings.CutPrefix(r.URL.Path, "/api/v1/barriers/")
	if err != nil || !isReport || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	var ans struct{ Outcome string }
	err = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	fmt.Printf("outcome %s %s\n", key, ans.Outcome)
	<-r.Context().Done()
	return nil, r.Context().Err()
}

// seat is a row of the seats table as GET /seats shows it.
type seat struct {
	Seat        int    `json:"seat"`
	State       string `json:"state"`
	Reservation string `json:"reservation,omitempty"`
}

func listSeats(ctx context.Context, db *sql.DB, table string, w http.ResponseWriter) error {
	rows, err := db.QueryContext(ctx, `SELECT seat, state, reservation FROM `+table+` ORDER BY seat`)
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
