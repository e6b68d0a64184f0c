package participant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

type sqlStateErr string

func (e sqlStateErr) Error() string    { return "sqlstate " + string(e) }
func (e sqlStateErr) SQLState() string { return string(e) }

type codeErr int

func (e codeErr) Error() string { return fmt.Sprintf("code %d", int(e)) }
func (e codeErr) Code() int     { return int(e) }

func TestRetryable(t *testing.T) {
	for _, c := range []struct {
		d    Dialect
		err  error
		want bool
	}{
		{PostgreSQL, sqlStateErr("40001"), true},
		{PostgreSQL, fmt.Errorf("wrapped: %w", sqlStateErr("40P01")), true},
		{PostgreSQL, sqlStateErr("23505"), false},
		{PostgreSQL, errors.New("ERROR: deadlock detected (SQLSTATE 40P01)"), true},
		{MySQL, errors.New("Error 1213 (40001): Deadlock found when trying to get lock; try restarting transaction"), true},
		{MySQL, errors.New("Error 1062 (23000): Duplicate entry"), false},
		{SQLite, codeErr(5), true},
		{SQLite, codeErr(517), true}, // SQLITE_BUSY_SNAPSHOT
		{SQLite, codeErr(19), false},
		{SQLite, errors.New("database is locked (5) (SQLITE_BUSY)"), true},
		{SQLite, nil, false},
		{MySQL, sql.ErrNoRows, false},
	} {
		if got := c.d.retryable(c.err); got != c.want {
			t.Errorf("%v retryable(%v) = %v, want %v", c.d, c.err, got, c.want)
		}
	}
}

func TestCheckIdent(t *testing.T) {
	for _, ok := range []string{"seats", "Seats_2", "_x", "app.seats", "a.b"} {
		if err := checkIdent(ok); err != nil {
			t.Errorf("checkIdent(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "2seats", "seats;DROP TABLE x", "a.b.c", "a.", ".a", "se ats", `"seats"`, "seats--",
		"sé", strings.Repeat("a", 64)} {
		if err := checkIdent(bad); err == nil {
			t.Errorf("checkIdent(%q) accepted", bad)
		}
	}
}

func TestCheckID(t *testing.T) {
	id, err := NewID()
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{id, DeriveID("tx", "seat"), "A-b.c_d~1", strings.Repeat("x", MaxIDLen)} {
		if err := checkID(ok); err != nil {
			t.Errorf("checkID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a b", "a%20b", "é", strings.Repeat("x", MaxIDLen+1)} {
		if err := checkID(bad); err == nil {
			t.Errorf("checkID(%q) accepted", bad)
		}
	}
}

func TestIDs(t *testing.T) {
	a, _ := NewID()
	b, _ := NewID()
	if a == b || len(a) != 26 {
		t.Errorf("NewID: %q, %q", a, b)
	}
	if DeriveID("tx", "seat") != DeriveID("tx", "seat") {
		t.Error("DeriveID is not deterministic")
	}
	distinct := [][]string{{"tx", "seat"}, {"txs", "eat"}, {"seat", "tx"}, {"txseat"}, {"tx", "seat", ""}, {}}
	seen := map[string]int{}
	for i, parts := range distinct {
		id := DeriveID(parts...)
		if j, dup := seen[id]; dup {
			t.Errorf("DeriveID(%q) = DeriveID(%q)", parts, distinct[j])
		}
		seen[id] = i
	}
}

func TestTransitions(t *testing.T) {
	for from, tos := range transitions {
		for _, to := range tos {
			if !canMove(from, to) {
				t.Errorf("canMove(%s, %s) = false", from, to)
			}
		}
	}
	for _, c := range [][2]State{{Confirmed, Cancelled}, {Cancelled, Confirmed}, {Void, Tried}, {Expired, Confirmed}, {Tried, Void}} {
		if canMove(c[0], c[1]) {
			t.Errorf("canMove(%s, %s) = true", c[0], c[1])
		}
	}
}

func TestRebind(t *testing.T) {
	q := "UPDATE t SET a = ? WHERE b = ? AND c = ?"
	if got := PostgreSQL.Rebind(q); got != "UPDATE t SET a = $1 WHERE b = $2 AND c = $3" {
		t.Errorf("PostgreSQL: %s", got)
	}
	if MySQL.Rebind(q) != q || SQLite.Rebind(q) != q {
		t.Error("MySQL and SQLite must keep ?")
	}
}

func TestSchema(t *testing.T) {
	for _, d := range []Dialect{PostgreSQL, SQLite, MySQL} {
		s, err := Schema(d, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"CREATE TABLE IF NOT EXISTS tcc_reservation", "id ", "state ", "expires_at ", "created_at ", "updated_at ",
			"tcc_reservation_due_idx", "tcc_reservation_settled_idx", "'void'"} {
			if !strings.Contains(s, want) {
				t.Errorf("%v schema lacks %q:\n%s", d, want, s)
			}
		}
		if q, err := Schema(d, "app.holds"); err != nil || !strings.Contains(q, "holds_due_idx") {
			t.Errorf("%v qualified: %v\n%s", d, err, q)
		}
		if _, err := Schema(d, "x; DROP TABLE y"); err == nil {
			t.Errorf("%v: bad table name accepted", d)
		}
	}
	if _, err := Schema(Dialect(0), ""); err == nil {
		t.Error("the zero Dialect was accepted")
	}
}

func TestConfigValidation(t *testing.T) {
	noop := func(context.Context, *sql.Tx, string) error { return nil }
	try := func(context.Context, *sql.Tx, string, *http.Request) (Reservation, error) { return Reservation{}, nil }
	good := Config{DB: &sql.DB{}, Dialect: SQLite, Try: try, Confirm: noop, Cancel: noop}
	if _, err := good.build(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, c := range map[string]func(*Config){
		"no DB":            func(c *Config) { c.DB = nil },
		"no dialect":       func(c *Config) { c.Dialect = 0 },
		"no Confirm":       func(c *Config) { c.Confirm = nil },
		"bad table":        func(c *Config) { c.Table = "t; --" },
		"relative path":    func(c *Config) { c.Path = "reservations" },
		"trailing slash":   func(c *Config) { c.Path = "/reservations/" },
		"id wildcard":      func(c *Config) { c.Path = "/x/{id}/y" },
		"bad wildcard":     func(c *Config) { c.Path = "/x/{a" },
		"bad base":         func(c *Config) { c.BaseURL = "ftp://x" },
		"TTL above max":    func(c *Config) { c.DefaultTTL, c.MaxTTL = 2e9, 1e9 },
		"negative sweep":   func(c *Config) { c.SweepEvery = -1 },
		"negative maxbody": func(c *Config) { c.MaxBody = -1 },
		"short retention":  func(c *Config) { c.Retention = MinRetention - time.Millisecond },
	} {
		cfg := good
		c(&cfg)
		if _, err := cfg.build(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestProblemFor(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		code   string
		detail string
	}{
		{Reject(http.StatusConflict, "sold out"), 409, "conflict", "sold out"},
		{fmt.Errorf("wrapped: %w", Rejectf(http.StatusPaymentRequired, "no %s", "funds")), 402, "rejected", "no funds"},
		{Reject(http.StatusOK, "not an error status"), 500, "internal", "not an error status"},
		{errors.New("secret detail"), 500, "internal", "internal error"},
		{errUnavailable{errors.New("busy")}, 503, "unavailable", "the database is busy; try again"},
		{&http.MaxBytesError{Limit: 10}, 413, "too_large", "request body larger than 10 bytes"},
	} {
		p := problemFor(c.err, "/x")
		if p.Status != c.status || p.Code != c.code || p.Detail != c.detail || p.Type != "urn:tccd:problem:"+c.code {
			t.Errorf("problemFor(%v) = %+v", c.err, p)
		}
	}
}
