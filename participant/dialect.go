package participant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Dialect names the SQL dialect of the database holding the bookkeeping
// table. It decides the placeholders ($1 or ?), the "insert unless the key
// exists" form, the schema, and which errors mean "run the transaction
// again". The kit never imports a driver: open the *sql.DB with the driver
// of your choice (for PostgreSQL through pgx, github.com/jackc/pgx/v5/stdlib).
type Dialect int

// The supported dialects.
const (
	// PostgreSQL (and databases speaking its dialect), through any
	// database/sql driver: pgx's stdlib, lib/pq.
	PostgreSQL Dialect = iota + 1
	// SQLite 3.24 or newer (for ON CONFLICT), e.g. modernc.org/sqlite.
	SQLite
	// MySQL 8 or MariaDB 10.3 or newer, InnoDB, e.g. github.com/go-sql-driver/mysql.
	MySQL
)

// String returns the dialect's name.
func (d Dialect) String() string {
	switch d {
	case PostgreSQL:
		return "postgresql"
	case SQLite:
		return "sqlite"
	case MySQL:
		return "mysql"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

func (d Dialect) valid() error {
	switch d {
	case PostgreSQL, SQLite, MySQL:
		return nil
	}
	return fmt.Errorf("participant: unknown dialect %v (use PostgreSQL, SQLite or MySQL)", d)
}

// Rebind rewrites a query written with ? placeholders into the dialect's
// form: $1, $2, … for PostgreSQL, unchanged for the others. The query must
// not contain a literal question mark (the kit's and the helpers' never do).
func (d Dialect) Rebind(query string) string {
	if d != PostgreSQL || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// insertIgnore returns an INSERT of the columns that does nothing (and
// reports no affected row) when the primary key exists. On MySQL the
// duplicate check takes a shared lock on the existing row; the caller must
// not update that row afterwards in the same transaction (try does not: it
// rolls back), or two such transactions could deadlock upgrading it.
func (d Dialect) insertIgnore(table string, cols []string) string {
	values := strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")
	list := strings.Join(cols, ", ")
	if d == MySQL {
		return "INSERT IGNORE INTO " + table + " (" + list + ") VALUES (" + values + ")"
	}
	return "INSERT INTO " + table + " (" + list + ") VALUES (" + values + ") ON CONFLICT DO NOTHING"
}

// insertOrLock returns an INSERT that does nothing when the primary key
// exists, and on MySQL takes the existing row's exclusive lock there and
// then (ON DUPLICATE KEY UPDATE), so that a later UPDATE of the row in the
// same transaction needs no lock upgrade. Its affected-row count is not
// meaningful across MySQL client flags; callers read the row instead.
func (d Dialect) insertOrLock(table string, cols []string) string {
	if d == MySQL {
		values := strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")
		return "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" + values + ") ON DUPLICATE KEY UPDATE " + cols[0] + " = " + cols[0]
	}
	return d.insertIgnore(table, cols)
}

// retryable reports whether err means the database gave up on the
// transaction for a reason that running it again may cure: a deadlock, a
// serialization failure, a busy SQLite database. It recognises the drivers'
// errors by behaviour (a SQLState or Code method) or by their text, so that
// no driver is imported.
func (d Dialect) retryable(err error) bool {
	if err == nil {
		return false
	}
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		switch st.SQLState() {
		case "40001", "40P01":
			return true
		}
	}
	if d == SQLite {
		var coded interface{ Code() int }
		if errors.As(err, &coded) {
			switch coded.Code() & 0xff {
			case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
				return true
			}
		}
	}
	msg := err.Error()
	switch d {
	case PostgreSQL:
		return strings.Contains(msg, "SQLSTATE 40001") || strings.Contains(msg, "SQLSTATE 40P01")
	case MySQL:
		// go-sql-driver/mysql: "Error 1213 (40001): Deadlock found …".
		return strings.Contains(msg, "Error 1213") || strings.Contains(msg, "(40001)")
	case SQLite:
		return strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "SQLITE_LOCKED") ||
			strings.Contains(msg, "database is locked") || strings.Contains(msg, "database table is locked")
	}
	return false
}

// DefaultTable is the name of the bookkeeping table unless Config.Table
// names another.
const DefaultTable = "tcc_reservation"

// Schema returns the DDL that creates the bookkeeping table named table
// ("" means DefaultTable) and its indexes in the dialect, as statements
// separated by ";\n". Every statement is idempotent (IF NOT EXISTS), so the
// text can go into a migration tool as it is, or be run by Migrate.
//
// The table is
//
//	id          the reservation id, at most 128 URL-safe characters (primary key)
//	state       tried | confirmed | cancelled | expired | void
//	expires_at  the reservation's expiry, Unix milliseconds (UTC); for a void
//	            row the end of its refusal of a late try
//	created_at  Unix milliseconds
//	updated_at  Unix milliseconds of the last change of state
//	data        the "data" of the answer to the try (JSON text), or NULL
//	scope       the values of the collection path's wildcards the reservation
//	            was tried under, URL-encoded ("flight=LX318"), or ''
//	style       '' (a TCC reservation) or 'compensate' (Config.Style)
//	tx_id       the transaction id the try carried (Tcc-Transaction-Id), or ''
//	uri         the reservation's link URI as the try answered it, or '' (a void row)
//
// with one index for the expiry sweeper (state, expires_at) and one for
// Cleanup (state, updated_at). Times are integers so that every dialect
// compares them the same way and the kit's clock, not each database's,
// decides expiry.
func Schema(d Dialect, table string) (string, error) {
	stmts, err := schemaStatements(d, table)
	if err != nil {
		return "", err
	}
	return strings.Join(stmts, ";\n") + ";\n", nil
}

func schemaStatements(d Dialect, table string) ([]string, error) {
	if err := d.valid(); err != nil {
		return nil, err
	}
	if table == "" {
		table = DefaultTable
	}
	if err := checkIdent(table); err != nil {
		return nil, fmt.Errorf("participant: table: %w", err)
	}
	// Index names are made from the unqualified table name.
	qual, base := "", table
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		qual, base = table[:i+1], table[i+1:]
	}
	due, settled := base+"_due_idx", base+"_settled_idx"
	added := func(d Dialect) string {
		var b strings.Builder
		for _, c := range addedColumns {
			fmt.Fprintf(&b, ",\n\t%-10s %s", c.name, c.def[d])
		}
		return b.String()
	}
	check := "CHECK (state IN ('tried', 'confirmed', 'cancelled', 'expired', 'void'))"
	switch d {
	case PostgreSQL:
		return []string{
			"CREATE TABLE IF NOT EXISTS " + table + ` (
	id         VARCHAR(128) NOT NULL PRIMARY KEY,
	state      VARCHAR(16)  NOT NULL ` + check + `,
	expires_at BIGINT       NOT NULL,
	created_at BIGINT       NOT NULL,
	updated_at BIGINT       NOT NULL` + added(PostgreSQL) + `
)`,
			"CREATE INDEX IF NOT EXISTS " + due + " ON " + table + " (state, expires_at)",
			"CREATE INDEX IF NOT EXISTS " + settled + " ON " + table + " (state, updated_at)",
		}, nil
	case SQLite:
		// SQLite qualifies the index name, not the table, with the schema.
		return []string{
			"CREATE TABLE IF NOT EXISTS " + table + ` (
	id         TEXT    NOT NULL PRIMARY KEY,
	state      TEXT    NOT NULL ` + check + `,
	expires_at INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL` + added(SQLite) + `
)`,
			"CREATE INDEX IF NOT EXISTS " + qual + due + " ON " + base + " (state, expires_at)",
			"CREATE INDEX IF NOT EXISTS " + qual + settled + " ON " + base + " (state, updated_at)",
		}, nil
	default: // MySQL
		// ascii_bin: ids compare byte for byte, as in the other dialects.
		return []string{
			"CREATE TABLE IF NOT EXISTS " + table + ` (
	id         VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
	state      VARCHAR(16)  CHARACTER SET ascii NOT NULL,
	expires_at BIGINT       NOT NULL,
	created_at BIGINT       NOT NULL,
	updated_at BIGINT       NOT NULL` + added(MySQL) + `,
	` + check + `,
	INDEX ` + due + ` (state, expires_at),
	INDEX ` + settled + ` (state, updated_at)
) ENGINE=InnoDB`,
		}, nil
	}
}

// addedColumn is a column of the bookkeeping table that an earlier
// version of the kit did not create. Schema includes it; Migrate adds it
// to an older table; New refuses a table without it, naming the DDL.
type addedColumn struct {
	name string
	def  map[Dialect]string
}

// addedColumns are the columns added since the first version, in order.
var addedColumns = []addedColumn{
	{name: "data", def: map[Dialect]string{
		PostgreSQL: "TEXT",
		SQLite:     "TEXT",
		MySQL:      "MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
	}},
	{name: "scope", def: map[Dialect]string{
		PostgreSQL: "VARCHAR(1024) NOT NULL DEFAULT ''",
		SQLite:     "TEXT NOT NULL DEFAULT ''",
		MySQL:      "VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT ''",
	}},
	{name: "style", def: map[Dialect]string{
		PostgreSQL: "VARCHAR(16) NOT NULL DEFAULT ''",
		SQLite:     "TEXT NOT NULL DEFAULT ''",
		MySQL:      "VARCHAR(16) CHARACTER SET ascii NOT NULL DEFAULT ''",
	}},
	{name: "tx_id", def: map[Dialect]string{
		PostgreSQL: "VARCHAR(256) NOT NULL DEFAULT ''",
		SQLite:     "TEXT NOT NULL DEFAULT ''",
		MySQL:      "VARCHAR(256) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT ''",
	}},
	{name: "uri", def: map[Dialect]string{
		PostgreSQL: "VARCHAR(2048) NOT NULL DEFAULT ''",
		SQLite:     "TEXT NOT NULL DEFAULT ''",
		MySQL:      "VARCHAR(2048) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT ''",
	}},
}

// maxTxIDLen bounds the tx_id column: the transaction id a try carried.
const maxTxIDLen = 256

// maxURILen bounds the uri column: the reservation's link URI, as the
// coordinator bounds participant URIs.
const maxURILen = 2048

// maxScopeLen bounds the scope column: the URL-encoded values of the
// path's wildcards.
const maxScopeLen = 1024

// add is the DDL that adds c to table.
func (c addedColumn) add(d Dialect, table string) string {
	return "ALTER TABLE " + table + " ADD COLUMN " + c.name + " " + c.def[d]
}

// missingColumns returns the added columns that table lacks (or that
// cannot be read for another reason, which adding them will report).
func missingColumns(ctx context.Context, db *sql.DB, table string) []addedColumn {
	var missing []addedColumn
	for _, c := range addedColumns {
		if _, err := db.ExecContext(ctx, "SELECT "+c.name+" FROM "+table+" WHERE 1 = 0"); err != nil {
			missing = append(missing, c)
		}
	}
	return missing
}

// Migrate creates the bookkeeping table named table ("" means DefaultTable)
// and its indexes if they do not exist, and adds to a table created by an
// earlier version of the kit the columns it lacks; then the outbox table
// beside it (OutboxSchema). It is safe to run at every start, by several
// processes at once.
func Migrate(ctx context.Context, db *sql.DB, d Dialect, table string) error {
	stmts, err := schemaStatements(d, table)
	if err != nil {
		return err
	}
	if table == "" {
		table = DefaultTable
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("participant: migrate: %w", err)
		}
	}
	for _, c := range missingColumns(ctx, db, table) {
		if _, err := db.ExecContext(ctx, c.add(d, table)); err != nil {
			// Another process may have added it meanwhile.
			still := missingColumns(ctx, db, table)
			if slices.ContainsFunc(still, func(s addedColumn) bool { return s.name == c.name }) {
				return fmt.Errorf("participant: migrate: add column %s to %s: %w", c.name, table, err)
			}
		}
	}
	return migrateOutbox(ctx, db, d, table)
}
