// Package exampledb opens the database of an example service: an embedded
// SQLite file by default, or PostgreSQL when given a postgres:// URL.
//
// It links no driver, so that a program using only SQLite (tccd demo) does
// not carry pgx: the program imports the drivers it opens — "sqlite" from
// modernc.org/sqlite and "pgx" from github.com/jackc/pgx/v5/stdlib (the
// examples' commands do, through package examplecmd).
package exampledb

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"

	"github.com/tccd/tccd/participant"
)

// sqlitePragmas make concurrent requests wait for SQLite's one writer
// instead of failing (busy_timeout, and BEGIN IMMEDIATE so that a
// transaction takes the write lock up front rather than failing to upgrade
// a read lock), and let readers run beside it (WAL).
const sqlitePragmas = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"

// Open opens dsn: a postgres:// (or postgresql://) URL through pgx, or else
// a SQLite file — a path ("swiss.db") or a file: URI — through
// modernc.org/sqlite, with the pragmas SQLite needs under concurrent
// requests. It pings the database before returning.
//
// A PostgreSQL URL may choose a schema with search_path
// (postgres://…/shop?search_path=stock), so that several example services
// can keep their own tables in one database.
func Open(ctx context.Context, dsn string) (*sql.DB, participant.Dialect, error) {
	driver, d, conn := "sqlite", participant.SQLite, sqliteDSN(dsn)
	if IsPostgres(dsn) {
		driver, d, conn = "pgx", participant.PostgreSQL, dsn
	}
	db, err := sql.Open(driver, conn)
	if err != nil {
		return nil, 0, fmt.Errorf("open %s: %w", Redact(dsn), err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, 0, fmt.Errorf("open %s: %w", Redact(dsn), err)
	}
	return db, d, nil
}

// IsPostgres reports whether dsn names a PostgreSQL server.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

func sqliteDSN(dsn string) string {
	if !strings.HasPrefix(dsn, "file:") {
		dsn = "file:" + dsn
	}
	if strings.Contains(dsn, "_txlock=") || strings.Contains(dsn, "busy_timeout") {
		return dsn // the caller chose
	}
	if strings.Contains(dsn, "?") {
		return dsn + "&" + sqlitePragmas
	}
	return dsn + "?" + sqlitePragmas
}

// Redact returns dsn without its password, for logs.
func Redact(dsn string) string {
	if !IsPostgres(dsn) {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://…"
	}
	return u.Redacted()
}

// Exec runs statements written with ? placeholders, in order, rebinding
// them for d.
func Exec(ctx context.Context, db *sql.DB, d participant.Dialect, stmts ...string) error {
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, d.Rebind(s)); err != nil {
			return fmt.Errorf("%s: %w", firstLine(s), err)
		}
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}
