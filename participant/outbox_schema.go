package participant

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
)

// OutboxSchema returns the DDL of the outbox table of the bookkeeping
// table named table ("" means DefaultTable): table+OutboxSuffix, with its
// indexes, in the dialect, as statements separated by ";\n", each
// idempotent. Migrate runs it after the bookkeeping table's.
//
// The table is
//
//	reservation   the reservation id (with n, the primary key)
//	n             the message's number within its reservation, from 1
//	state         held (the reservation is tried) | due (it confirmed) | published
//	subject       where the message goes
//	headers       its headers as a JSON object of arrays, or NULL
//	data          its payload
//	created_at    Unix milliseconds
//	due_at        when it became due (0 while held)
//	next_at       the earliest time of the next publish attempt
//	lease_until   the end of a relay's claim (0: unclaimed)
//	lease_owner   the claiming relay's token ('' when unclaimed)
//	attempts      failed publish attempts so far
//	last_error    the last failure, or NULL
//	published_at  when the broker acknowledged it (0 before)
//
// with one index for the relay (state, next_at) and one for the cleanup
// of published rows (state, published_at).
func OutboxSchema(d Dialect, table string) (string, error) {
	stmts, err := outboxStatements(d, table)
	if err != nil {
		return "", err
	}
	return strings.Join(stmts, ";\n") + ";\n", nil
}

func outboxStatements(d Dialect, table string) ([]string, error) {
	if err := d.valid(); err != nil {
		return nil, err
	}
	if table == "" {
		table = DefaultTable
	}
	if err := checkIdent(table); err != nil {
		return nil, fmt.Errorf("participant: table: %w", err)
	}
	t := table + OutboxSuffix
	if err := checkIdent(t); err != nil {
		return nil, fmt.Errorf("participant: outbox table of %s: %w", table, err)
	}
	qual, base := "", t
	if i := strings.LastIndexByte(t, '.'); i >= 0 {
		qual, base = t[:i+1], t[i+1:]
	}
	due, published := base+"_due_idx", base+"_published_idx"
	check := "CHECK (state IN ('held', 'due', 'published'))"
	switch d {
	case PostgreSQL:
		return []string{
			"CREATE TABLE IF NOT EXISTS " + t + ` (
	reservation  VARCHAR(128) NOT NULL,
	n            INTEGER      NOT NULL,
	state        VARCHAR(16)  NOT NULL ` + check + `,
	subject      VARCHAR(255) NOT NULL,
	headers      TEXT,
	data         BYTEA        NOT NULL,
	created_at   BIGINT       NOT NULL,
	due_at       BIGINT       NOT NULL DEFAULT 0,
	next_at      BIGINT       NOT NULL DEFAULT 0,
	lease_until  BIGINT       NOT NULL DEFAULT 0,
	lease_owner  VARCHAR(64)  NOT NULL DEFAULT '',
	attempts     INTEGER      NOT NULL DEFAULT 0,
	last_error   TEXT,
	published_at BIGINT       NOT NULL DEFAULT 0,
	PRIMARY KEY (reservation, n)
)`,
			"CREATE INDEX IF NOT EXISTS " + due + " ON " + t + " (state, next_at)",
			"CREATE INDEX IF NOT EXISTS " + published + " ON " + t + " (state, published_at)",
		}, nil
	case SQLite:
		return []string{
			"CREATE TABLE IF NOT EXISTS " + t + ` (
	reservation  TEXT    NOT NULL,
	n            INTEGER NOT NULL,
	state        TEXT    NOT NULL ` + check + `,
	subject      TEXT    NOT NULL,
	headers      TEXT,
	data         BLOB    NOT NULL,
	created_at   INTEGER NOT NULL,
	due_at       INTEGER NOT NULL DEFAULT 0,
	next_at      INTEGER NOT NULL DEFAULT 0,
	lease_until  INTEGER NOT NULL DEFAULT 0,
	lease_owner  TEXT    NOT NULL DEFAULT '',
	attempts     INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT,
	published_at INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (reservation, n)
)`,
			"CREATE INDEX IF NOT EXISTS " + qual + due + " ON " + base + " (state, next_at)",
			"CREATE INDEX IF NOT EXISTS " + qual + published + " ON " + base + " (state, published_at)",
		}, nil
	default: // MySQL
		return []string{
			"CREATE TABLE IF NOT EXISTS " + t + ` (
	reservation  VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	n            INT          NOT NULL,
	state        VARCHAR(16)  CHARACTER SET ascii NOT NULL,
	subject      VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	headers      MEDIUMTEXT   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
	data         LONGBLOB     NOT NULL,
	created_at   BIGINT       NOT NULL,
	due_at       BIGINT       NOT NULL DEFAULT 0,
	next_at      BIGINT       NOT NULL DEFAULT 0,
	lease_until  BIGINT       NOT NULL DEFAULT 0,
	lease_owner  VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '',
	attempts     INT          NOT NULL DEFAULT 0,
	last_error   TEXT         CHARACTER SET utf8mb4,
	published_at BIGINT       NOT NULL DEFAULT 0,
	PRIMARY KEY (reservation, n),
	` + check + `,
	INDEX ` + due + ` (state, next_at),
	INDEX ` + published + ` (state, published_at)
) ENGINE=InnoDB`,
		}, nil
	}
}

// migrateOutbox creates the outbox table of table, unless its name would
// be too long (then only an Outbox refuses to start, naming the reason).
func migrateOutbox(ctx context.Context, db *sql.DB, d Dialect, table string) error {
	stmts, err := outboxStatements(d, table)
	if err != nil {
		return nil // NewOutbox reports the name; without an outbox nothing needs the table
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("participant: migrate the outbox: %w", err)
		}
	}
	return nil
}

// outboxQueries are the outbox's statements, built once.
type outboxQueries struct {
	probe, reservationState, nextN, insert, markDue, drop  string
	candidates, claim, claimed, published, failed, release string
	cleanup, messages                                      string
}

const outboxColumns = "reservation, n, state, subject, headers, data, created_at, due_at, next_at, lease_until, lease_owner, attempts, last_error, published_at"

func newOutboxQueries(d Dialect, bookkeeping, t string, batch int) outboxQueries {
	r := d.Rebind
	return outboxQueries{
		probe:            "SELECT " + outboxColumns + " FROM " + t + " WHERE 1 = 0",
		reservationState: r("SELECT state FROM " + bookkeeping + " WHERE id = ?"),
		nextN:            r("SELECT COALESCE(MAX(n), 0) + 1 FROM " + t + " WHERE reservation = ?"),
		insert: r("INSERT INTO " + t + " (reservation, n, state, subject, headers, data, created_at, due_at, next_at)" +
			" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
		markDue: r("UPDATE " + t + " SET state = ?, due_at = ?, next_at = ? WHERE reservation = ? AND state = ?"),
		drop:    r("DELETE FROM " + t + " WHERE reservation = ? AND state = ?"),
		candidates: r("SELECT reservation FROM " + t + " WHERE state = 'due' AND next_at <= ? AND lease_until <= ?" +
			" ORDER BY next_at, reservation, n LIMIT " + strconv.Itoa(batch)),
		claim: r("UPDATE " + t + " SET lease_owner = ?, lease_until = ?" +
			" WHERE reservation = ? AND state = 'due' AND next_at <= ? AND lease_until <= ?"),
		claimed: r("SELECT n, subject, headers, data, attempts FROM " + t +
			" WHERE reservation = ? AND state = 'due' AND lease_owner = ? ORDER BY n"),
		published: r("UPDATE " + t + " SET state = 'published', published_at = ?, lease_owner = '', lease_until = 0, last_error = NULL" +
			" WHERE reservation = ? AND n = ? AND state = 'due'"),
		failed: r("UPDATE " + t + " SET attempts = attempts + 1, next_at = ?, last_error = ?, lease_owner = '', lease_until = 0" +
			" WHERE reservation = ? AND n = ? AND lease_owner = ?"),
		release: r("UPDATE " + t + " SET next_at = ?, lease_owner = '', lease_until = 0" +
			" WHERE reservation = ? AND state = 'due' AND lease_owner = ?"),
		cleanup: r("DELETE FROM " + t + " WHERE state = 'published' AND published_at < ?"),
		messages: r("SELECT n, state, subject, headers, data, created_at, due_at, next_at, attempts, last_error, published_at FROM " + t +
			" WHERE reservation = ? ORDER BY n"),
	}
}
