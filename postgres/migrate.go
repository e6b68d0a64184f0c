package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The schema's migrations: migrations/NNNN_name.sql, numbered from 1
// without gaps, each applied once and recorded in tccd_schema_version.
// A migration runs inside a transaction (with every other pending one),
// so it must not use statements that cannot (CREATE INDEX CONCURRENTLY).
// A released migration is never edited: a change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations are the embedded migrations in order; loaded at start, so a
// malformed set fails every test at once.
var migrations = mustLoadMigrations(migrationFiles)

// SchemaVersion is the newest schema version this tccd knows.
var SchemaVersion = len(migrations)

func mustLoadMigrations(fsys fs.FS) []migration {
	ms, err := loadMigrations(fsys)
	if err != nil {
		panic(err) // the embedded files are part of the binary: a bug, found by any test
	}
	return ms
}

func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var ms []migration
	for i, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || len(num) != 4 {
			return nil, fmt.Errorf("migration %s: the name must be NNNN_what.sql", name)
		}
		if v != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d (numbered from 1 without gaps)", name, v, i+1)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	return ms, nil
}

// migrateLockKey is the advisory lock under which migrations run: nodes
// starting at once apply them one after the other ("tccd" and 1).
const migrateLockKey int64 = 0x7463636400000001

// SchemaTooNewError is the error of a database whose schema a newer tccd
// migrated: this one does not know its tables and must not write them.
type SchemaTooNewError struct {
	Have, Know int
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("the database schema is version %d; this tccd knows up to %d: upgrade tccd", e.Have, e.Know)
}

const createVersionTable = `CREATE TABLE IF NOT EXISTS tccd_schema_version (
	version    integer NOT NULL PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// migrate brings the schema of conn's database up to SchemaVersion, in
// one transaction under an advisory lock, and returns the version found
// and the version now. A schema newer than SchemaVersion is refused with
// a *SchemaTooNewError, changing nothing.
func migrate(ctx context.Context, conn *pgx.Conn) (from, to int, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback(ctx) // after Commit, a no-op
	// Taken first, before the version table may exist: whoever holds it
	// sees every earlier holder's committed migrations.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockKey); err != nil {
		return 0, 0, fmt.Errorf("take the migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, createVersionTable); err != nil {
		return 0, 0, fmt.Errorf("create tccd_schema_version: %w", err)
	}
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM tccd_schema_version").Scan(&from); err != nil {
		return 0, 0, fmt.Errorf("read the schema version: %w", err)
	}
	if from > SchemaVersion {
		return from, from, &SchemaTooNewError{Have: from, Know: SchemaVersion}
	}
	for _, m := range migrations[from:] {
		// No arguments: pgx sends it with the simple protocol, which
		// runs a file of several statements.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return from, from, fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO tccd_schema_version (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			return from, from, fmt.Errorf("record migration %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return from, from, fmt.Errorf("commit the migrations: %w", err)
	}
	return from, SchemaVersion, nil
}

// Migrate applies the migrations the database of dsn lacks. It is what
// Open does first; `tccd migrate` runs it alone, so that a deployment can
// migrate before it starts nodes. A schema newer than this tccd knows is
// refused (*SchemaTooNewError).
func Migrate(ctx context.Context, dsn string) error {
	conn, err := connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, _, err = migrate(ctx, conn); err != nil {
		return redactError(dsn, fmt.Errorf("migrate %s: %w", Redact(dsn), err))
	}
	return nil
}

// Check reports what would stop Open on the database of dsn, changing
// nothing: a server it cannot reach or log in to, a database that does
// not exist, or a schema newer than this tccd knows. An older schema is
// not a problem: Open migrates it.
func Check(ctx context.Context, dsn string) error {
	conn, err := connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	have, err := schemaVersion(ctx, conn)
	if err != nil {
		return redactError(dsn, fmt.Errorf("read the schema version of %s: %w", Redact(dsn), err))
	}
	if have > SchemaVersion {
		return &SchemaTooNewError{Have: have, Know: SchemaVersion}
	}
	return nil
}

// schemaVersion returns the schema version of conn's database, 0 when
// nothing was migrated yet. It reads without the migration lock: a
// migration in progress is not visible until it commits.
func schemaVersion(ctx context.Context, conn *pgx.Conn) (int, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('tccd_schema_version') IS NOT NULL").Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var v int
	err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM tccd_schema_version").Scan(&v)
	return v, err
}

// connectTimeout bounds how long Migrate and Check try to reach the
// server when ctx sets no deadline.
const connectTimeout = 10 * time.Second

func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, redactError(dsn, fmt.Errorf("parse the PostgreSQL DSN %s: %w", Redact(dsn), err))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, redactError(dsn, fmt.Errorf("connect to %s: %w", Redact(dsn), err))
	}
	return conn, nil
}
