package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/pebble"
	"github.com/tccd/tccd/postgres"
)

// openStore opens the store the configuration selects: the embedded
// Pebble store in the data directory when store is empty, else the
// PostgreSQL database the store URL names (no data directory is made
// then). The store's Close releases it. Nothing logged or returned
// shows the URL's password.
func openStore(ctx context.Context, c Config, log *slog.Logger) (tccd.Store, error) {
	if c.Store != "" {
		s, err := postgres.Open(ctx, c.Store, postgres.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		log.Info("store opened", "store", "postgres", "database", postgres.Redact(c.Store), "schema", postgres.SchemaVersion)
		return s, nil
	}
	if err := os.MkdirAll(c.Data, 0o700); err != nil {
		return nil, err
	}
	s, err := pebble.Open(c.Data, pebble.Options{
		CacheSize: c.CacheSize, WALMinSyncInterval: c.WALSyncInterval,
		MinFreeBytes: c.MinFreeSpace, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	log.Info("store opened", "store", "pebble", "data", c.Data)
	return s, nil
}

// validateStore checks the store option without connecting.
func validateStore(store string) error {
	if store == "" {
		return nil
	}
	if !postgres.IsDSN(store) {
		// The value is not quoted: it may hold a password.
		return errors.New("store must be empty (the embedded store in data) or a PostgreSQL URL, postgres://… or postgresql://…")
	}
	if err := postgres.ParseDSN(store); err != nil {
		return fmt.Errorf("store must be a valid PostgreSQL URL: %w", err)
	}
	return nil
}

// checkStore reports, for --check-config, what would stop the store from
// opening: a database it cannot reach, or a schema newer than this tccd.
func checkStore(store string) error {
	if store == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := postgres.Check(ctx, store); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

const migrateUsage = `Usage: tccd migrate [--store postgres://…] [--config FILE]

Applies the migrations the PostgreSQL database lacks and exits; tccd serve
applies them too at start. The store comes from --store, else TCCD_STORE,
else the config file's store key.

`

// runMigrate is `tccd migrate`: it brings the schema of the PostgreSQL
// store up to this tccd's and reports the version.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("tccd migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), migrateUsage); fs.PrintDefaults() }
	store := fs.String("store", "", "the PostgreSQL database, postgres://user:password@host/db (env TCCD_STORE)")
	path := fs.String("config", "", "TOML config file whose store key is used (env TCCD_CONFIG)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	c := DefaultConfig()
	if *path == "" {
		*path = getenv("TCCD_CONFIG")
	}
	if err := c.Load(*path, getenv); err != nil {
		return err
	}
	if *store != "" {
		c.Store = *store
	}
	if c.Store == "" {
		return errors.New("migrate needs a PostgreSQL store: --store postgres://… (or TCCD_STORE); the embedded store needs no migration")
	}
	if err := validateStore(c.Store); err != nil {
		return err
	}
	if err := postgres.Migrate(ctx, c.Store); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "the database schema of %s is at version %d\n", postgres.Redact(c.Store), postgres.SchemaVersion)
	return nil
}
