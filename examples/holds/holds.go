// Package holds is the quantity participant of two examples: an amount
// per key — units of stock per SKU in the shop's warehouse, cents per
// account in its wallet and in the theatre's payment service — that a try
// holds, a confirm spends and a cancel (or expiry) gives back.
//
// It is participant.Quantity plus a ledger of what was spent, so that
// every unit stays accounted for: for each key,
//
//	funded = available + held + spent
//
// where funded is what was put in (Fund), held the sum of the live holds
// and spent what confirms took. Confirm cannot fail for lack of funds or
// stock: the try took the amount out of available already.
//
//	POST   <path>[?ttl=90s] {"lines":[{"key":"apple","amount":2},…]}  try: hold the amounts
//	                        → 201 + participant link; 409 too little; 404 unknown key
//	PUT    <path>/{id}      confirm: the held amounts are spent
//	DELETE <path>/{id}      cancel: they are available again
//	GET    /balances        every key's funded, available, held and spent amounts
package holds

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tccd/tccd/examples/internal/exampledb"
	"github.com/tccd/tccd/examples/internal/reserve"
	"github.com/tccd/tccd/participant"
)

// Ledger is a quantity participant's database: balances, live holds, and
// what confirms spent.
type Ledger struct {
	DB      *sql.DB
	Dialect participant.Dialect
	// MaxTTL is the longest lifetime a try may ask for with ?ttl= (more is
	// answered 400) and the kit's cap; zero means participant.DefaultMaxTTL.
	MaxTTL time.Duration
}

var schema = []string{
	`CREATE TABLE IF NOT EXISTS balances (
	name      VARCHAR(64) NOT NULL PRIMARY KEY,
	available BIGINT      NOT NULL CHECK (available >= 0),
	funded    BIGINT      NOT NULL
)`,
	`CREATE TABLE IF NOT EXISTS holds (
	reservation VARCHAR(128) NOT NULL,
	name        VARCHAR(64)  NOT NULL,
	amount      BIGINT       NOT NULL,
	PRIMARY KEY (reservation, name)
)`,
	`CREATE TABLE IF NOT EXISTS spent (
	reservation VARCHAR(128) NOT NULL,
	name        VARCHAR(64)  NOT NULL,
	amount      BIGINT       NOT NULL,
	PRIMARY KEY (reservation, name)
)`,
}

// quantity is the participant.Quantity helper over the tables.
func (l Ledger) quantity() participant.Quantity {
	return participant.Quantity{Dialect: l.Dialect,
		Table: "balances", KeyColumn: "name", AvailableColumn: "available",
		HoldTable: "holds", HoldIDColumn: "reservation", HoldKeyColumn: "name", HoldQuantityColumn: "amount"}
}

// Migrate creates the tables and the kit's bookkeeping table if they do
// not exist.
func (l Ledger) Migrate(ctx context.Context) error {
	if err := exampledb.Exec(ctx, l.DB, l.Dialect, schema...); err != nil {
		return err
	}
	return participant.Migrate(ctx, l.DB, l.Dialect, participant.DefaultTable)
}

// Fund creates key with amount available, unless key exists (then it is
// left as it is, so that a restart does not add money or stock).
func (l Ledger) Fund(ctx context.Context, key string, amount int64) error {
	if key == "" || len(key) > 64 || amount < 0 {
		return fmt.Errorf("fund %q with %d: want a key of 1 to 64 bytes and an amount >= 0", key, amount)
	}
	_, err := l.DB.ExecContext(ctx, l.Dialect.Rebind(`INSERT INTO balances (name, available, funded) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`), key, amount, amount)
	return err
}

// Line is an amount of one key.
type Line struct {
	Key    string `json:"key"`
	Amount int64  `json:"amount"`
}

// Request is the body of a try.
type Request struct {
	Lines []Line `json:"lines"`
}

// Normalize merges the lines of one key and sorts them by key: holds are
// always taken in that order, so that two tries never wait for each
// other's rows in opposite orders (a deadlock on PostgreSQL).
func Normalize(lines []Line) ([]Line, error) {
	sum := map[string]int64{}
	for _, l := range lines {
		if l.Key == "" || l.Amount <= 0 {
			return nil, fmt.Errorf("line %+v: want a key and a positive amount", l)
		}
		sum[l.Key] += l.Amount
	}
	out := make([]Line, 0, len(sum))
	for k, n := range sum {
		out = append(out, Line{Key: k, Amount: n})
	}
	slices.SortFunc(out, func(a, b Line) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Config is the participant's configuration at path: the try holds every
// line of the request (all or none: a refusal rolls back the lines held
// before it), confirm moves the holds to the spent ledger, cancel gives
// them back. The caller adds lifetimes and logger and creates it with
// participant.New.
func (l Ledger) Config(path string) participant.Config {
	q := l.quantity()
	return participant.Config{
		DB: l.DB, Dialect: l.Dialect, MaxTTL: l.MaxTTL, Path: path,
		Try: func(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
			ttl, err := reserve.TTLParam(r, l.MaxTTL)
			if err != nil {
				return participant.Reservation{}, err
			}
			var req Request
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				return participant.Reservation{}, participant.Rejectf(http.StatusBadRequest, "body: %v", err)
			}
			lines, err := Normalize(req.Lines)
			if err != nil || len(lines) == 0 || len(lines) > 20 {
				return participant.Reservation{}, participant.Rejectf(http.StatusBadRequest, "want 1 to 20 lines with a key and a positive amount")
			}
			for _, line := range lines {
				if err := q.Reserve(ctx, tx, id, line.Key, line.Amount); err != nil {
					return participant.Reservation{}, err
				}
			}
			return participant.Reservation{TTL: ttl, Body: Request{Lines: lines}}, nil
		},
		Confirm: func(ctx context.Context, tx *sql.Tx, id string) error {
			// Record what is spent before Quantity.Confirm deletes the holds.
			if _, err := tx.ExecContext(ctx, l.Dialect.Rebind(`INSERT INTO spent (reservation, name, amount) SELECT reservation, name, amount FROM holds WHERE reservation = ?`), id); err != nil {
				return err
			}
			return q.Confirm(ctx, tx, id)
		},
		Cancel: q.Cancel,
	}
}

// Balance is one key's account: Funded = Available + Held + Spent.
type Balance struct {
	Key       string `json:"key"`
	Funded    int64  `json:"funded"`
	Available int64  `json:"available"`
	Held      int64  `json:"held"`
	Spent     int64  `json:"spent"`
}

// Balances reads every key's balance, in one statement so that the sums
// are of one moment.
func (l Ledger) Balances(ctx context.Context) ([]Balance, error) {
	rows, err := l.DB.QueryContext(ctx, `SELECT b.name, b.funded, b.available,
	COALESCE((SELECT SUM(h.amount) FROM holds h WHERE h.name = b.name), 0),
	COALESCE((SELECT SUM(s.amount) FROM spent s WHERE s.name = b.name), 0)
FROM balances b ORDER BY b.name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Balance
	for rows.Next() {
		var b Balance
		if err := rows.Scan(&b.Key, &b.Funded, &b.Available, &b.Held, &b.Spent); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// ServeBalances is GET /balances.
func (l Ledger) ServeBalances(w http.ResponseWriter, r *http.Request) {
	bs, err := l.Balances(r.Context())
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(bs)
}

// funds is --fund KEY=AMOUNT, repeatable.
type funds map[string]int64

func (f funds) String() string { return fmt.Sprint(map[string]int64(f)) }
func (f funds) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	n, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil || k == "" {
		return errors.New("want KEY=AMOUNT, e.g. alice=10000")
	}
	f[k] = n
	return nil
}
