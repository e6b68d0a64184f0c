// Package pgtest gives tests a fresh PostgreSQL database of their own on
// the server named by TCCD_TEST_POSTGRES, dropped when the test ends, so
// that tests never see each other's data.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env names the server, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable. The user must
// be allowed to create databases.
const Env = "TCCD_TEST_POSTGRES"

// ServerDSN returns the server's DSN from Env. Unset, it skips the test —
// except under CI=true, where it fails it: there the PostgreSQL tests
// must run.
func ServerDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(Env)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: under CI=true the PostgreSQL store's tests must run (see README, \"Set-up\")", Env)
		}
		t.Skipf("%s is not set: skipping the PostgreSQL store's tests", Env)
	}
	return dsn
}

var seq atomic.Int64

// NewDatabase creates an empty database on the server and returns its
// DSN (the server's, with the database name replaced). The database is
// dropped, with any connection still open to it, when t ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	server := ServerDSN(t)
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("%s is not a URL: %v", Env, err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("tccd_test_%d_%d_%s", os.Getpid(), seq.Add(1), hex.EncodeToString(b[:]))
	admin(t, server, "CREATE DATABASE "+name)
	t.Cleanup(func() { admin(t, server, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	u.Path = "/" + name
	return u.String()
}

// Exec runs a statement on the database of dsn, failing t on an error.
func Exec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	admin(t, dsn, sql, args...)
}

func admin(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", Env, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
