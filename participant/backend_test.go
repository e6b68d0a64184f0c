package participant_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/tccd/tccd/participant"
)

// The PostgreSQL and MySQL/MariaDB variants of the tests run against the
// servers named by these variables; unset, they are skipped, except under
// CI=true, where an unset variable fails the test.
const (
	envPostgres = "TCCD_TEST_POSTGRES" // e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable
	envMySQL    = "TCCD_TEST_MYSQL"    // e.g. root@tcp(127.0.0.1:3306)/test?parseTime=true
)

// backend is a database the conformance suite runs against.
type backend struct {
	name    string
	dialect participant.Dialect
	envVar  string // "" for SQLite, which always runs
	driver  string
}

var backends = []backend{
	{name: "sqlite", dialect: participant.SQLite, driver: "sqlite"},
	{name: "postgres", dialect: participant.PostgreSQL, envVar: envPostgres, driver: "pgx"},
	{name: "mysql", dialect: participant.MySQL, envVar: envMySQL, driver: "mysql"},
}

// space is an isolated place for one test's tables: a fresh SQLite file, or
// a fresh PostgreSQL schema or MySQL database on the shared server,
// dropped when the test ends.
type space struct {
	db *sql.DB
	d  participant.Dialect
	// prefix qualifies a table name ("" on SQLite).
	prefix string
	// driver and dsn open more connections to the space (observe).
	driver, dsn string
}

func (s space) q(name string) string { return s.prefix + name }

// exec runs statements, failing the test on an error.
func (s space) exec(t testing.TB, stmts ...string) {
	t.Helper()
	for _, st := range stmts {
		if _, err := s.db.ExecContext(context.Background(), s.d.Rebind(st)); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
}

// forEachBackend runs fn as a subtest per backend, each with its own
// connection opener.
func forEachBackend(t *testing.T, fn func(t *testing.T, b *server)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			fn(t, openServer(t, b))
		})
	}
}

// server is an open backend: a shared connection (PostgreSQL, MySQL) from
// which spaces are made.
type server struct {
	backend
	db  *sql.DB // nil for SQLite: each space has its own file
	dsn string
}

// openServer opens b's server, skipping (or under CI=true failing) when
// its variable is unset.
func openServer(t *testing.T, b backend) *server {
	t.Helper()
	if b.envVar == "" {
		return &server{backend: b}
	}
	dsn := os.Getenv(b.envVar)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: under CI=true the %s variant must run (see docs/PARTICIPANTS.md)", b.envVar, b.name)
		}
		t.Skipf("%s is not set: skipping the %s variant (see docs/PARTICIPANTS.md)", b.envVar, b.name)
	}
	db, err := sql.Open(b.driver, dsn)
	if err != nil {
		t.Fatalf("open %s: %v", b.envVar, err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatalf("%s=%q: %v", b.envVar, dsn, err)
	}
	db.SetMaxOpenConns(20)
	return &server{backend: b, db: db, dsn: dsn}
}

var spaceSeq atomic.Int64

// newSpace makes an isolated space for one test.
func (s *server) newSpace(t testing.TB) space {
	t.Helper()
	ctx := context.Background()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("tccd_test_%d_%d_%s", os.Getpid(), spaceSeq.Add(1), hex.EncodeToString(b[:]))
	switch s.dialect {
	case participant.SQLite:
		dsn := "file:" + filepath.Join(t.TempDir(), "test.db") +
			"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return space{db: db, d: s.dialect, driver: s.driver, dsn: dsn}
	case participant.PostgreSQL:
		if _, err := s.db.ExecContext(ctx, "CREATE SCHEMA "+name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := s.db.ExecContext(context.Background(), "DROP SCHEMA "+name+" CASCADE"); err != nil {
				t.Errorf("drop schema %s: %v", name, err)
			}
		})
	default:
		if _, err := s.db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := s.db.ExecContext(context.Background(), "DROP DATABASE "+name); err != nil {
				t.Errorf("drop database %s: %v", name, err)
			}
		})
	}
	return space{db: s.db, d: s.dialect, prefix: name + ".", driver: s.driver, dsn: s.dsn}
}

// newHolder begins a transaction on sp's own connection that holds the
// lock a change of reservation id in table needs: on SQLite the database's
// write lock (the space is opened with immediate transactions), elsewhere
// the bookkeeping row's, with SELECT … FOR UPDATE. End it to release.
func (s *server) newHolder(ctx context.Context, sp space, table, id string) (*sql.Tx, error) {
	tx, err := sp.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	var q string
	if s.dialect == participant.SQLite {
		q = "UPDATE " + table + " SET updated_at = updated_at WHERE id = ? RETURNING id"
	} else {
		q = "SELECT id FROM " + table + " WHERE id = ? FOR UPDATE"
	}
	var got string
	if err := tx.QueryRowContext(ctx, sp.d.Rebind(q), id).Scan(&got); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("lock %s: %w", id, err)
	}
	return tx, nil
}
