package postgres

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"github.com/tccd/tccd/internal/pgtest"
)

func TestLoadMigrations(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		want  string // "" for no error
	}{
		{"in order", []string{"0001_a.sql", "0002_b.sql"}, ""},
		{"gap", []string{"0001_a.sql", "0003_c.sql"}, "version 3, want 2"},
		{"not from 1", []string{"0002_b.sql"}, "version 2, want 1"},
		{"bad name", []string{"1_a.sql"}, "NNNN_what.sql"},
		{"no number", []string{"init.sql"}, "NNNN_what.sql"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tt.files {
				fsys["migrations/"+f] = &fstest.MapFile{Data: []byte("SELECT 1")}
			}
			_, err := loadMigrations(fsys)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("loadMigrations = %v, want %q", err, tt.want)
			}
		})
	}
	if SchemaVersion < 1 || len(migrations) != SchemaVersion {
		t.Fatalf("embedded migrations: %d, SchemaVersion %d", len(migrations), SchemaVersion)
	}
}

func schemaOf(t *testing.T, dsn string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	v, err := schemaVersion(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMigrateConcurrently: nodes starting at once on a fresh database
// all open it; the migrations ran once.
func TestMigrateConcurrently(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	if err := Check(ctx, dsn); err != nil {
		t.Fatalf("Check of a fresh database: %v", err)
	}
	const nodes = 6
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := 0; i < nodes; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if i%2 == 0 {
				errs[i] = Migrate(ctx, dsn)
				return
			}
			s, err := Open(ctx, dsn, Options{MaxConns: 2})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if v := schemaOf(t, dsn); v != SchemaVersion {
		t.Fatalf("schema version %d, want %d", v, SchemaVersion)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM tccd_schema_version").Scan(&rows); err != nil || rows != SchemaVersion {
		t.Fatalf("tccd_schema_version has %d rows (%v), want %d", rows, err, SchemaVersion)
	}
	if err := Check(ctx, dsn); err != nil {
		t.Fatalf("Check after migrating: %v", err)
	}
}

// TestSchemaTooNew: a database a newer tccd migrated is refused by Open,
// Migrate and Check alike, and left as it is.
func TestSchemaTooNew(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	if err := Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	newer := SchemaVersion + 1
	pgtest.Exec(t, dsn, "INSERT INTO tccd_schema_version (version, name) VALUES ($1, 'from the future')", newer)
	want := &SchemaTooNewError{Have: newer, Know: SchemaVersion}
	s, err := Open(ctx, dsn, Options{})
	if err == nil {
		s.Close()
	}
	for name, err := range map[string]error{"Open": err, "Migrate": Migrate(ctx, dsn), "Check": Check(ctx, dsn)} {
		var tooNew *SchemaTooNewError
		if !errors.As(err, &tooNew) || *tooNew != *want || !strings.Contains(err.Error(), want.Error()) {
			t.Errorf("%s = %v, want %q", name, err, want)
		}
	}
	if v := schemaOf(t, dsn); v != newer {
		t.Fatalf("schema version %d after the refusals, want %d", v, newer)
	}
}

// TestUnreachable: a server that is not there, and one that refuses the
// login, are reported, without the password.
func TestUnreachable(t *testing.T) {
	server := pgtest.ServerDSN(t)
	ctx := context.Background()
	// The server, with a database that does not exist.
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/no_such_database_for_tccd"
	q := u.Query()
	q.Set("password", "s3cret-pw")
	u.RawQuery = q.Encode()
	for _, dsn := range []string{
		"postgres://tccd:s3cret-pw@127.0.0.1:1/tccd?sslmode=disable&connect_timeout=5",
		u.String(),
	} {
		s, err := Open(ctx, dsn, Options{})
		if err == nil {
			s.Close()
		}
		for name, err := range map[string]error{"Open": err, "Migrate": Migrate(ctx, dsn), "Check": Check(ctx, dsn)} {
			if err == nil {
				t.Errorf("%s %s succeeded", name, Redact(dsn))
				continue
			}
			t.Logf("%s: %v", name, err)
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("%s: the error shows the password: %v", name, err)
			}
		}
	}
}
