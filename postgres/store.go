// Package postgres is a tccd.Store on PostgreSQL, which several
// coordinators can share. One row per transaction holds the columns that
// queries filter and lock on and the whole record as versioned JSON
// (record.go); the schema comes from embedded, numbered migrations
// applied at Open (migrate.go). Every Update is a compare-and-set on the
// row's version inside PostgreSQL, so writers in different processes
// exclude each other as goroutines of one do. Concurrent writes share
// commits (group commit, see commit). See docs/ARCHITECTURE.md.
package postgres

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tccd/tccd"
)

// Defaults for Options.
const (
	DefaultMaxConns   = 16
	DefaultCommitters = 4
	DefaultMaxBatch   = 128
)

// Options configure the store. Zero values take the defaults.
type Options struct {
	// MaxConns bounds the connections the store keeps to the server:
	// the committers' and those of reads.
	MaxConns int32
	// Committers is how many commits may be in flight at once. Each takes
	// every write waiting when it starts (up to MaxBatch) into one
	// PostgreSQL transaction.
	Committers int
	// MaxBatch bounds the writes of one commit. 1 turns group commit off:
	// each write is its own transaction, run by the caller's goroutine.
	MaxBatch int
	// Logger receives the store's messages (migrations applied, unsafe
	// server settings); nil discards them.
	Logger *slog.Logger
}

const (
	// commitTimeout bounds one commit: a server that stops answering
	// fails the writes waiting on it instead of holding them forever.
	commitTimeout = 30 * time.Second
	// unfinishedPage is how many rows Unfinished reads per query; fn is
	// called between queries, never while a query holds a connection.
	unfinishedPage = 500
	// purgeChunk is the most rows one DELETE of Purge removes.
	purgeChunk = 1000
)

// Store is a tccd.Store in a PostgreSQL database.
type Store struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	maxBatch int

	// mu is held shared to hand a write over (or, without group commit,
	// to run it) and exclusively by Close, so that no write starts after
	// Close and every write handed over is committed before it returns.
	mu     sync.RWMutex
	closed bool
	writes chan *write
	wg     sync.WaitGroup // the committers
}

var _ tccd.Store = (*Store)(nil)

var errClosed = errors.New("postgres: the store is closed")

// Open connects to the database of dsn (a postgres:// URL or a key=value
// string), applies the migrations it lacks and starts the committers. A
// schema newer than this tccd knows is refused (*SchemaTooNewError).
// Errors never quote the DSN's password.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.Committers <= 0 {
		opts.Committers = DefaultCommitters
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := Redact(dsn)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, redactError(dsn, fmt.Errorf("parse the PostgreSQL DSN %s: %w", name, err))
	}
	cfg.MaxConns = opts.MaxConns
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	cfg.AfterConnect = keepSynchronousCommit
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, redactError(dsn, fmt.Errorf("connect to %s: %w", name, err))
	}
	if err := prepare(ctx, pool, log); err != nil {
		pool.Close()
		return nil, redactError(dsn, fmt.Errorf("open %s: %w", name, err))
	}
	s := &Store{pool: pool, log: log, maxBatch: opts.MaxBatch}
	if s.maxBatch > 1 {
		s.writes = make(chan *write, opts.Committers*s.maxBatch)
		for i := 0; i < opts.Committers; i++ {
			s.wg.Add(1)
			go s.committer()
		}
	}
	return s, nil
}

// prepare migrates the schema and warns of server settings that void
// durability.
func prepare(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	from, to, err := migrate(ctx, conn.Conn())
	if err != nil {
		return err
	}
	if from != to {
		log.Info("migrated the database schema", "from", from, "to", to)
	}
	var fsync string
	if err := conn.QueryRow(ctx, "SELECT current_setting('fsync')").Scan(&fsync); err != nil {
		return err
	}
	if fsync != "on" {
		log.Warn("the PostgreSQL server runs with fsync off: a crash of its machine can lose decisions tccd reported durable")
	}
	return nil
}

// keepSynchronousCommit runs on every new connection. A durable write is
// one PostgreSQL has flushed to its log at commit, which takes
// synchronous_commit on (or a stronger setting the server chose, such as
// remote_apply, which is kept). Should the server, database or role turn
// it off, the store's connections turn it back on; only a non-durable
// write turns it off, for its own transaction.
func keepSynchronousCommit(ctx context.Context, c *pgx.Conn) error {
	var v string
	if err := c.QueryRow(ctx, "SELECT current_setting('synchronous_commit')").Scan(&v); err != nil {
		return err
	}
	if v == "off" {
		_, err := c.Exec(ctx, "SET synchronous_commit = on")
		return err
	}
	return nil
}

// Close waits for the writes handed over to commit, then closes the
// connections. After Close every method fails.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.writes != nil {
		close(s.writes)
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.pool.Close()
	return nil
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// textOK reports whether s can be stored in a text column: PostgreSQL's
// text holds valid UTF-8 without NUL. The record column (JSON) holds any
// string; the columns beside it need this.
func textOK(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// The range of CreatedAt a nanosecond column can hold.
var (
	minCreated = time.Unix(0, math.MinInt64)
	maxCreated = time.Unix(0, math.MaxInt64)
)

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// clampNanos is t in Unix nanoseconds, clamped to what int64 holds.
func clampNanos(t time.Time) int64 {
	switch {
	case t.Before(minCreated):
		return math.MinInt64
	case t.After(maxCreated):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// nullTime is t as a timestamptz parameter, NULL for the zero time.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// columns checks what goes into the columns beside the record.
func columns(tx *tccd.Transaction) error {
	for _, f := range []struct{ name, v string }{{"owner", tx.Owner}, {"created_by", tx.CreatedBy}} {
		if !textOK(f.v) {
			return tccd.FieldError(f.name, "%s must be UTF-8 without NUL characters", f.name)
		}
	}
	return nil
}

const insertSQL = `INSERT INTO tccd_transactions
	(id, state, created_at, created_ns, finished_at, version, owner, lease_until, notification_pending, created_by, record, epoch)
	VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, $9, $10, $11)
	ON CONFLICT (id) DO NOTHING
	RETURNING version`

// Create stores a new transaction with version 1; EConflict if the id exists.
func (s *Store) Create(ctx context.Context, tx *tccd.Transaction, durable bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !tccd.CanCreate(tx.State) {
		return tccd.Errorf(tccd.EInvalid, "a transaction cannot be created in state %q", tx.State)
	}
	if !textOK(tx.ID) || tx.ID == "" {
		return tccd.FieldError("id", "a transaction id must be non-empty UTF-8 without NUL characters")
	}
	if !tx.CreatedAt.IsZero() && (tx.CreatedAt.Before(minCreated) || tx.CreatedAt.After(maxCreated)) {
		return tccd.FieldError("created_at", "created_at is out of range")
	}
	if err := columns(tx); err != nil {
		return err
	}
	rec, err := encode(tx)
	if err != nil {
		return err
	}
	w := &write{
		ctx: ctx, id: tx.ID, durable: durable, create: true, sql: insertSQL,
		args: []any{tx.ID, string(tx.State), tx.CreatedAt, nanos(tx.CreatedAt), nullTime(tx.FinishedAt), tx.Owner,
			nullTime(tx.LeaseUntil), tx.Notification.State == tccd.NotificationPending, tx.CreatedBy, rec, int64(tx.Epoch)},
	}
	if err := s.submit(ctx, w); err != nil {
		return err
	}
	tx.Version = w.version
	return nil
}

// updateSQL is the compare-and-set. It updates the row only if its
// version is the one read ($2) and its state may move to the new one
// ($10: the states CanTransition allows from); the first CTE reads the
// row as it was, to tell the caller why not. Creation time and epoch are
// not written: a row's creation never changes, and the epoch is the
// lease's, not the record's.
const updateSQL = `WITH cur AS (SELECT version, state FROM tccd_transactions WHERE id = $1),
	upd AS (
		UPDATE tccd_transactions SET state = $3, finished_at = $4, version = version + 1, owner = $5,
			-- A renewal (Leaser.Renew) may have moved the lease past what
			-- the owner's record says: never shorten it.
			lease_until = CASE WHEN owner = $5 THEN greatest(lease_until, $6) ELSE $6 END,
			epoch = greatest(epoch, $11),
			notification_pending = $7, created_by = $8, record = $9
		WHERE id = $1 AND version = $2 AND state = ANY($10::text[])
		RETURNING version)
	SELECT (SELECT version FROM upd), (SELECT version FROM cur), (SELECT state FROM cur)`

// Update replaces a transaction if its stored version is tx.Version and
// its state may move to tx.State; otherwise EConflict (ENotFound if the
// id is not stored) and nothing changes.
func (s *Store) Update(ctx context.Context, tx *tccd.Transaction, durable bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !textOK(tx.ID) {
		return tccd.Errorf(tccd.ENotFound, "transaction %s not found", tx.ID)
	}
	if tx.Version > math.MaxInt64 {
		return tccd.Errorf(tccd.EConflict, "transaction %s was changed concurrently (version %d)", tx.ID, tx.Version)
	}
	if err := columns(tx); err != nil {
		return err
	}
	rec, err := encode(tx)
	if err != nil {
		return err
	}
	var from []string
	for _, st := range tccd.States {
		if tccd.CanTransition(st, tx.State) {
			from = append(from, string(st))
		}
	}
	w := &write{
		ctx: ctx, id: tx.ID, durable: durable, sql: updateSQL, expect: tx.Version, state: tx.State,
		args: []any{tx.ID, int64(tx.Version), string(tx.State), nullTime(tx.FinishedAt), tx.Owner,
			nullTime(tx.LeaseUntil), tx.Notification.State == tccd.NotificationPending, tx.CreatedBy, rec, from, int64(tx.Epoch)},
	}
	if err := s.submit(ctx, w); err != nil {
		return err
	}
	tx.Version = w.version
	return nil
}

// Get returns a transaction, or ENotFound.
func (s *Store) Get(ctx context.Context, id string) (*tccd.Transaction, error) {
	if s.isClosed() {
		return nil, errClosed
	}
	if !textOK(id) {
		return nil, tccd.Errorf(tccd.ENotFound, "transaction %s not found", id)
	}
	var v int64
	var rec []byte
	err := s.pool.QueryRow(ctx, "SELECT version, record FROM tccd_transactions WHERE id = $1", id).Scan(&v, &rec)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, tccd.Errorf(tccd.ENotFound, "transaction %s not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: get %s: %w", id, err)
	}
	tx, err := decode(rec, uint64(v))
	if err != nil {
		return nil, fmt.Errorf("postgres: transaction %s: %w", id, err)
	}
	return tx, nil
}

// List returns transactions newest first by (CreatedAt, ID), at most
// f.Limit, after f.Cursor. The cursor is the creation time (nanoseconds)
// and id of the last one returned, base64url-encoded; it is given only
// when more transactions follow.
func (s *Store) List(ctx context.Context, f tccd.Filter) ([]*tccd.Transaction, string, error) {
	if f.Limit <= 0 {
		return nil, "", tccd.FieldError("limit", "limit must be positive")
	}
	if f.State != "" && !f.State.Valid() {
		return nil, "", tccd.FieldError("state", "unknown state %q", f.State)
	}
	var conds []string
	var args []any
	if f.State != "" {
		args = append(args, string(f.State))
		conds = append(conds, fmt.Sprintf("state = $%d", len(args)))
	}
	if f.Cursor != "" {
		c, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil || len(c) < 9 || !textOK(string(c[8:])) {
			return nil, "", tccd.FieldError("cursor", "invalid cursor")
		}
		args = append(args, int64(binary.BigEndian.Uint64(c)), string(c[8:]))
		conds = append(conds, fmt.Sprintf("(created_ns, id) < ($%d, $%d)", len(args)-1, len(args)))
	}
	q := "SELECT version, record, created_ns, id FROM tccd_transactions"
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	limit := int64(f.Limit)
	if limit > math.MaxInt64-1 {
		limit = math.MaxInt64 - 1
	}
	args = append(args, limit+1) // one more says whether a next page exists
	q += fmt.Sprintf(" ORDER BY created_ns DESC, id DESC LIMIT $%d", len(args))
	if s.isClosed() {
		return nil, "", errClosed
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: list: %w", err)
	}
	defer rows.Close()
	var out []*tccd.Transaction
	var lastNS int64
	var lastID string
	more := false
	for rows.Next() {
		if len(out) == f.Limit {
			more = true
			break
		}
		var v int64
		var rec []byte
		if err := rows.Scan(&v, &rec, &lastNS, &lastID); err != nil {
			return nil, "", fmt.Errorf("postgres: list: %w", err)
		}
		tx, err := decode(rec, uint64(v))
		if err != nil {
			return nil, "", fmt.Errorf("postgres: transaction %s: %w", lastID, err)
		}
		out = append(out, tx)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("postgres: list: %w", err)
	}
	cursor := ""
	if more {
		c := binary.BigEndian.AppendUint64(nil, uint64(lastNS))
		cursor = base64.RawURLEncoding.EncodeToString(append(c, lastID...))
	}
	return out, cursor, nil
}

// unfinishedSQL reads one page of the unfinished transactions by id. Its
// condition is the predicate of the partial index tccd_transactions_unfinished.
const unfinishedSQL = `SELECT version, record, id FROM tccd_transactions
	WHERE (state IN ('active', 'confirming', 'cancelling', 'compensating') OR notification_pending) AND id > $1
	ORDER BY id LIMIT $2`

// Unfinished calls fn for every transaction not in a final state and
// every one whose notification is pending. It reads them
// in pages by id and calls fn between the reads, holding no connection
// or snapshot while fn runs: a transaction written meanwhile is yielded
// as it was, as it is, or not at all if it left the set, never twice.
func (s *Store) Unfinished(ctx context.Context, fn func(*tccd.Transaction) error) error {
	after := ""
	for {
		if s.isClosed() {
			return errClosed
		}
		rows, err := s.pool.Query(ctx, unfinishedSQL, after, unfinishedPage)
		if err != nil {
			return fmt.Errorf("postgres: unfinished: %w", err)
		}
		var page []*tccd.Transaction
		for rows.Next() {
			var v int64
			var rec []byte
			if err := rows.Scan(&v, &rec, &after); err != nil {
				rows.Close()
				return fmt.Errorf("postgres: unfinished: %w", err)
			}
			tx, err := decode(rec, uint64(v))
			if err != nil {
				rows.Close()
				return fmt.Errorf("postgres: transaction %s: %w", after, err)
			}
			page = append(page, tx)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("postgres: unfinished: %w", err)
		}
		for _, tx := range page {
			if err := fn(tx); err != nil {
				return err
			}
		}
		if len(page) < unfinishedPage {
			return nil
		}
	}
}

// purgeSQL deletes one chunk of a final state's transactions finished
// before $3, oldest created first: it walks the state index up to the
// cutoff (nothing finished before it was created). Rows another node is
// writing or purging are skipped, not waited for.
const purgeSQL = `DELETE FROM tccd_transactions WHERE id IN (
	SELECT id FROM tccd_transactions
	WHERE state = $1 AND created_ns < $2 AND finished_at < $3
	ORDER BY created_ns, id LIMIT $4
	FOR UPDATE SKIP LOCKED)`

// Purge deletes up to limit transactions that reached a final state
// before the given time, in chunks, oldest first within each final state.
// A purge lost in a crash is done again, so its commits are not waited
// for (synchronous_commit off).
func (s *Store) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	// The column holds microseconds, truncated: comparing with the cutoff
	// truncated too never purges what finished at or after it.
	cutoff := before.Truncate(time.Microsecond)
	n := 0
	for _, st := range tccd.States {
		if !st.Final() {
			continue
		}
		for n < limit {
			chunk := min(limit-n, purgeChunk)
			deleted, err := s.execAsync(ctx, purgeSQL, string(st), clampNanos(before), cutoff, chunk)
			if err != nil {
				return n, fmt.Errorf("postgres: purge: %w", err)
			}
			n += int(deleted)
			if deleted < int64(chunk) {
				break
			}
		}
	}
	return n, nil
}

// execAsync runs one statement in a transaction committed without
// waiting for the flush of PostgreSQL's log, and returns the rows it
// affected.
func (s *Store) execAsync(ctx context.Context, sql string, args ...any) (int64, error) {
	if s.isClosed() {
		return 0, errClosed
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit = off")
	b.Queue(sql, args...)
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, b)
	var tag pgconn.CommandTag
	for i := 0; i < b.Len() && err == nil; i++ {
		var t pgconn.CommandTag
		if t, err = br.Exec(); i == 2 {
			tag = t
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		rollback(conn)
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// rollback ends a transaction left open by a failed batch, so that the
// connection goes back to the pool usable (the pool drops a connection
// in a transaction).
func rollback(conn *pgxpool.Conn) {
	pc := conn.Conn().PgConn()
	if pc.IsClosed() || pc.TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = conn.Exec(ctx, "ROLLBACK")
}

// sortByID orders a batch by id, keeping the order of writes to one id:
// every commit takes its rows' locks in the same order, so two commits
// in flight at once wait for each other but never deadlock.
func sortByID(ws []*write) {
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].id < ws[j].id })
}
