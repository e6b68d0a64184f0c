package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tccd/tccd"
)

// Group commit. A durable write costs a flush of PostgreSQL's log at
// commit, a round trip and a transaction; concurrent writes share them.
// A write is handed to the committers (a channel); a committer that is
// free takes it and every other write waiting at that moment, up to
// MaxBatch, and runs them as one PostgreSQL transaction sent in one
// round trip (a pipeline: BEGIN, the statements, COMMIT). While it
// commits, new writes queue up for the next free committer, so the
// batches grow with the load and a write alone is committed at once.
//
// Each statement carries its own compare-and-set and reports its own
// result (INSERT … ON CONFLICT DO NOTHING RETURNING, UPDATE … WHERE
// version = … RETURNING): a conflict is a row not returned, not an
// error, so one write's conflict never aborts the others. Should a
// statement fail all the same (the server refuses a value), PostgreSQL
// rolls the whole transaction back and each write of it is run again
// alone, so that only the faulty one fails.
//
// The transaction is durable if any of its writes asks to be; a batch of
// only non-durable writes commits with synchronous_commit off (the
// server's log is flushed shortly after, in order).

// write is one Create or Update waiting for a commit.
type write struct {
	ctx     context.Context
	id      string
	durable bool
	sql     string
	args    []any
	create  bool
	expect  uint64     // Update: the version read
	state   tccd.State // Update: the state written

	// Set by the committer before done is closed.
	version uint64
	err     error
	done    chan struct{}
}

// submit runs w: through a committer, or on the caller's goroutine when
// group commit is off. It returns w's own result, or the caller's
// context's error if that ends first (the write may then still commit).
func (s *Store) submit(ctx context.Context, w *write) error {
	w.done = make(chan struct{})
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed
	}
	if s.writes == nil {
		s.commit([]*write{w})
		s.mu.RUnlock()
		return w.err
	}
	select {
	case s.writes <- w:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// committer commits batches until Close closes the channel and it is
// drained.
func (s *Store) committer() {
	defer s.wg.Done()
	batch := make([]*write, 0, s.maxBatch)
	for w := range s.writes {
		batch = append(batch[:0], w)
	collect:
		for len(batch) < s.maxBatch {
			select {
			case w, ok := <-s.writes:
				if !ok {
					break collect
				}
				batch = append(batch, w)
			default:
				break collect
			}
		}
		s.commit(batch)
		clear(batch) // let the writes go
	}
}

// commit runs a batch as one transaction and gives each write its result.
func (s *Store) commit(batch []*write) {
	live := batch[:0]
	for _, w := range batch {
		// A caller that has gone does not get its write made.
		if err := w.ctx.Err(); err != nil {
			w.err = err
			close(w.done)
			continue
		}
		live = append(live, w)
	}
	if len(live) == 0 {
		return
	}
	sortByID(live)
	err := s.run(live)
	var pgErr *pgconn.PgError
	if err != nil && len(live) > 1 && errors.As(err, &pgErr) && pgErr.Severity == "ERROR" {
		// An ERROR (not FATAL, after which the commit's fate is unknown)
		// rolled the transaction back: nothing of it was written.
		for _, w := range live {
			w.version, w.err = 0, nil
			s.commit([]*write{w})
		}
		return
	}
	for _, w := range live {
		if err != nil {
			w.version, w.err = 0, fmt.Errorf("postgres: write %s: %w", w.id, err)
		}
		close(w.done)
	}
}

// run sends the batch's transaction and reads each write's result. An
// error means the transaction may or may not have committed, unless it
// is a *pgconn.PgError of severity ERROR (rolled back).
func (s *Store) run(ws []*write) error {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	durable := false
	for _, w := range ws {
		durable = durable || w.durable
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	if !durable {
		b.Queue("SET LOCAL synchronous_commit = off")
	}
	for _, w := range ws {
		b.Queue(w.sql, w.args...)
	}
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, b)
	err = readResults(br, ws, durable)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		rollback(conn)
	}
	return err
}

func readResults(br pgx.BatchResults, ws []*write, durable bool) error {
	if _, err := br.Exec(); err != nil { // BEGIN
		return err
	}
	if !durable {
		if _, err := br.Exec(); err != nil { // SET LOCAL
			return err
		}
	}
	for _, w := range ws {
		if err := w.result(br.QueryRow()); err != nil {
			return err
		}
	}
	tag, err := br.Exec()
	if err != nil {
		return err
	}
	// COMMIT of a transaction that failed answers ROLLBACK, not an error.
	if tag.String() != "COMMIT" {
		return fmt.Errorf("the transaction was rolled back (%s)", tag)
	}
	return nil
}

// result reads the row of w's statement: the new version, or why there
// is none (w.err). It returns an error only when the statement failed.
func (w *write) result(row pgx.Row) error {
	if w.create {
		var v int64
		err := row.Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			w.err = tccd.Errorf(tccd.EConflict, "transaction %s already exists", w.id)
			return nil
		}
		w.version = uint64(v)
		return err
	}
	var next, cur *int64
	var state *string
	if err := row.Scan(&next, &cur, &state); err != nil {
		return err
	}
	switch {
	case next != nil:
		w.version = uint64(*next)
	case cur == nil:
		w.err = tccd.Errorf(tccd.ENotFound, "transaction %s not found", w.id)
	case uint64(*cur) != w.expect:
		w.err = tccd.Errorf(tccd.EConflict, "transaction %s was changed concurrently (version %d, not %d)", w.id, *cur, w.expect)
	case !tccd.CanTransition(tccd.State(*state), w.state):
		w.err = tccd.Errorf(tccd.EConflict, "transaction %s cannot move from %s to %s", w.id, *state, w.state)
	default:
		// The row read matched, but another commit changed it first.
		w.err = tccd.Errorf(tccd.EConflict, "transaction %s was changed concurrently", w.id)
	}
	return nil
}
