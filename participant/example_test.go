package participant_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite"

	"github.com/tccd/tccd/participant"
)

// openExampleDB opens a fresh SQLite database in a temporary directory;
// close it with the returned function.
func openExampleDB() (*sql.DB, func()) {
	dir, err := os.MkdirTemp("", "participant-example")
	if err != nil {
		log.Fatal(err)
	}
	// One writer at a time: wait for the lock instead of failing.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+"?_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	return db, func() { db.Close(); os.RemoveAll(dir) }
}

// A seat-booking participant: a seat moves AVAILABLE → RESERVED on try,
// SOLD on confirm, back to AVAILABLE on cancel or expiry.
func Example() {
	ctx := context.Background()
	db, done := openExampleDB()
	defer done()

	// The application's table, and the kit's bookkeeping table.
	for _, stmt := range []string{
		`CREATE TABLE seats (id TEXT PRIMARY KEY, state TEXT NOT NULL, reservation TEXT)`,
		`INSERT INTO seats (id, state) VALUES ('12A', 'AVAILABLE'), ('12B', 'AVAILABLE')`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			log.Fatal(err)
		}
	}
	if err := participant.Migrate(ctx, db, participant.SQLite, participant.DefaultTable); err != nil {
		log.Fatal(err)
	}

	seats := participant.StateItem{Dialect: participant.SQLite, Table: "seats",
		IDColumn: "id", StateColumn: "state", ReservationColumn: "reservation"}
	p, err := participant.New(ctx, participant.Config{
		DB: db, Dialect: participant.SQLite, Path: "/seats",
		Try: func(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
			seat := r.URL.Query().Get("seat")
			return participant.Reservation{TTL: 10 * time.Minute}, seats.Reserve(ctx, tx, id, seat)
		},
		Confirm: seats.Confirm,
		Cancel:  seats.Cancel,
	})
	if err != nil {
		log.Fatal(err) // e.g. the bookkeeping table is missing
	}

	// Serve the contract, and run the expiry sweeper until the end.
	srv := httptest.NewServer(p)
	defer srv.Close()
	sweepCtx, stopSweeper := context.WithCancel(ctx)
	sweeperDone := make(chan struct{})
	go func() { defer close(sweeperDone); p.Run(sweepCtx) }()
	defer func() { stopSweeper(); <-sweeperDone }()

	// What a booking process and the coordinator do.
	call := func(what, method, url string) *http.Response {
		req, _ := http.NewRequest(method, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Printf("%-14s %s\n", what+":", resp.Status)
		return resp
	}
	resp, err := http.Post(srv.URL+"/seats?seat=12A", "", nil)
	if err != nil {
		log.Fatal(err)
	}
	var answer struct {
		ParticipantLink struct{ URI, Expires string } `json:"participantLink"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	fmt.Printf("%-14s %s\n", "try 12A:", resp.Status)
	uri := answer.ParticipantLink.URI

	call("try 12A again", http.MethodPost, srv.URL+"/seats?seat=12A")
	call("confirm", http.MethodPut, uri)
	call("confirm again", http.MethodPut, uri)
	call("cancel", http.MethodDelete, uri)

	var state string
	_ = db.QueryRowContext(ctx, `SELECT state FROM seats WHERE id = '12A'`).Scan(&state)
	fmt.Println("seat 12A:", state)
	// Output:
	// try 12A:       201 Created
	// try 12A again: 409 Conflict
	// confirm:       204 No Content
	// confirm again: 204 No Content
	// cancel:        409 Conflict
	// seat 12A: SOLD
}

// The bookkeeping table for PostgreSQL; Migrate runs the same statements.
func ExampleSchema() {
	ddl, err := participant.Schema(participant.PostgreSQL, participant.DefaultTable)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(ddl)
	// Output:
	// CREATE TABLE IF NOT EXISTS tcc_reservation (
	// 	id         VARCHAR(128) NOT NULL PRIMARY KEY,
	// 	state      VARCHAR(16)  NOT NULL CHECK (state IN ('tried', 'confirmed', 'cancelled', 'expired', 'void')),
	// 	expires_at BIGINT       NOT NULL,
	// 	created_at BIGINT       NOT NULL,
	// 	updated_at BIGINT       NOT NULL,
	// 	data       TEXT,
	// 	scope      VARCHAR(1024) NOT NULL DEFAULT '',
	// 	style      VARCHAR(16) NOT NULL DEFAULT '',
	// 	tx_id      VARCHAR(256) NOT NULL DEFAULT '',
	// 	uri        VARCHAR(2048) NOT NULL DEFAULT ''
	// );
	// CREATE INDEX IF NOT EXISTS tcc_reservation_due_idx ON tcc_reservation (state, expires_at);
	// CREATE INDEX IF NOT EXISTS tcc_reservation_settled_idx ON tcc_reservation (state, updated_at);
}

// A stock participant: try deducts the quantity and records a hold;
// confirm deletes the hold; cancel, or the sweeper once the reservation
// has expired, gives the quantity back.
func ExampleQuantity() {
	ctx := context.Background()
	db, done := openExampleDB()
	defer done()
	for _, stmt := range []string{
		`CREATE TABLE stock (sku TEXT PRIMARY KEY, available INTEGER NOT NULL)`,
		`CREATE TABLE holds (reservation TEXT NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL, PRIMARY KEY (reservation, sku))`,
		`INSERT INTO stock VALUES ('apple', 10)`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			log.Fatal(err)
		}
	}
	if err := participant.Migrate(ctx, db, participant.SQLite, ""); err != nil {
		log.Fatal(err)
	}
	stock := participant.Quantity{Dialect: participant.SQLite,
		Table: "stock", KeyColumn: "sku", AvailableColumn: "available",
		HoldTable: "holds", HoldIDColumn: "reservation", HoldKeyColumn: "sku", HoldQuantityColumn: "quantity"}

	var skew atomic.Int64 // how far the example has moved the kit's clock
	p, err := participant.New(ctx, participant.Config{
		DB: db, Dialect: participant.SQLite, Path: "/stock",
		Try: func(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
			n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
			if err != nil {
				return participant.Reservation{}, participant.Reject(http.StatusBadRequest, "n must be a number")
			}
			return participant.Reservation{TTL: time.Minute}, stock.Reserve(ctx, tx, id, "apple", n)
		},
		Confirm: stock.Confirm,
		Cancel:  stock.Cancel,
		Now:     func() time.Time { return time.Now().Add(time.Duration(skew.Load())) },
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()

	available := func() int {
		var n int
		_ = db.QueryRowContext(ctx, `SELECT available FROM stock WHERE sku = 'apple'`).Scan(&n)
		return n
	}
	for _, n := range []string{"4", "7"} {
		resp, err := http.Post(srv.URL+"/stock?n="+n, "", nil)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Printf("take %s: %s, %d left\n", n, resp.Status, available())
	}
	skew.Add(int64(2 * time.Minute)) // nobody confirmed: the hold expires
	expired, err := p.Sweep(ctx)
	fmt.Printf("swept %d (%v), %d left\n", expired, err, available())
	// Output:
	// take 4: 201 Created, 6 left
	// take 7: 409 Conflict, 6 left
	// swept 1 (<nil>), 10 left
}
