package participant

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

// This file holds the bookkeeping: every statement on the table, and the
// three operations try, confirm and cancel, each one local transaction in
// which the bookkeeping row is written first and the application's
// function runs second. Writing the row first ("insert-first") means:
//
//   - the primary key serialises every operation on one id without a
//     SELECT … FOR UPDATE before an insert of a row that may not exist
//     (which, under MySQL's repeatable read, takes gap locks that
//     deadlock); confirm, which inserts nothing, does lock the row first,
//     so that it judges the expiry after any wait for the lock;
//   - the row is always locked before any business row, so the kit's own
//     operations on one reservation take locks in one order;
//   - a hanging try or a repeated call is recognised before any business
//     logic runs.

// queries are the statements, built once for a dialect and table.
type queries struct {
	probe, baseProbe, insertTried, insertVoid, setAnswer, get, due, cleanup string
	move, moveLive, moveDue                                                 string
	// dueAsk pages the compensate-style reservations past their expiry:
	// the sweeper asks the coordinator about them (see compensate.go).
	dueAsk string
	// getLocked reads a row and locks it (FOR UPDATE); on SQLite, where
	// there is no FOR UPDATE, touch locks it first.
	getLocked, touch string
}

var columns = []string{"id", "state", "expires_at", "created_at", "updated_at", "scope", "style", "tx_id", "uri"}

func newQueries(d Dialect, t string, batch int) queries {
	move := "UPDATE " + t + " SET state = ?, updated_at = ? WHERE id = ? AND state = ?"
	get := "SELECT state, expires_at, created_at, updated_at, data, scope, style, tx_id, uri FROM " + t + " WHERE id = ?"
	getLocked, touch := get+" FOR UPDATE", ""
	if d == SQLite {
		getLocked, touch = get, d.Rebind("UPDATE "+t+" SET state = state WHERE id = ?")
	}
	return queries{
		getLocked:   d.Rebind(getLocked),
		touch:       touch,
		probe:       "SELECT id, state, expires_at, created_at, updated_at, data, scope, style, tx_id, uri FROM " + t + " WHERE 1 = 0",
		baseProbe:   "SELECT id, state, expires_at, created_at, updated_at FROM " + t + " WHERE 1 = 0",
		insertTried: d.Rebind(d.insertIgnore(t, columns)),
		insertVoid:  d.Rebind(d.insertOrLock(t, columns)),
		setAnswer:   d.Rebind("UPDATE " + t + " SET expires_at = ?, data = ? WHERE id = ?"),
		get:         d.Rebind(get),
		move:        d.Rebind(move),
		moveLive:    d.Rebind(move + " AND expires_at > ?"),
		moveDue:     d.Rebind(move + " AND expires_at <= ?"),
		// Keyset pagination, so that rows whose cancel keeps failing do
		// not hide the rows after them.
		due: d.Rebind("SELECT id, expires_at FROM " + t +
			" WHERE state = ? AND style = ? AND expires_at <= ? AND (expires_at > ? OR (expires_at = ? AND id > ?))" +
			" ORDER BY expires_at, id LIMIT " + strconv.Itoa(batch)),
		dueAsk: d.Rebind("SELECT id, expires_at, tx_id, uri FROM " + t +
			" WHERE state = ? AND style = ? AND expires_at <= ? AND (expires_at > ? OR (expires_at = ? AND id > ?))" +
			" ORDER BY expires_at, id LIMIT " + strconv.Itoa(batch)),
		cleanup: d.Rebind("DELETE FROM " + t + " WHERE state IN (?, ?, ?, ?) AND updated_at < ? AND expires_at < ?"),
	}
}

// errRace: the row was not in a state the operation can explain (it
// appeared or vanished between two statements); running the operation
// again sorts it out.
var errRace = errors.New("participant: reservation changed concurrently")

// maxAttempts bounds how often confirm, cancel and the sweeper run a
// transaction the database gave up on (deadlock, busy) before answering 503.
const maxAttempts = 3

// retry runs fn until it succeeds, fails for a reason running it again
// cannot cure, or has run maxAttempts times; then a retryable failure
// becomes errUnavailable (503 with Retry-After).
func (p *Participant) retry(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !(errors.Is(err, errRace) || p.d.retryable(err)) {
			return err
		}
		if attempt >= maxAttempts || ctx.Err() != nil {
			return errUnavailable{err}
		}
	}
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// lookup reads reservation id's row through q (the database, or a
// transaction to see its own writes).
func (p *Participant) lookup(ctx context.Context, q querier, id string) (Record, bool, error) {
	return p.read(ctx, q, p.q.get, id)
}

// lockRow locks reservation id's row in tx, waiting for any transaction
// that holds it, and reads it. On PostgreSQL and MySQL that is SELECT …
// FOR UPDATE (on a missing row MySQL takes a gap lock, which can delay a
// concurrent insert of that id but not deadlock with it: the caller
// inserts nothing after it); on SQLite a write to the row takes the
// database's write lock first, unless BEGIN IMMEDIATE took it already.
func (p *Participant) lockRow(ctx context.Context, tx *sql.Tx, id string) (Record, bool, error) {
	if p.q.touch != "" {
		if _, err := tx.ExecContext(ctx, p.q.touch, id); err != nil {
			return Record{}, false, fmt.Errorf("participant: lock reservation %s: %w", id, err)
		}
	}
	return p.read(ctx, tx, p.q.getLocked, id)
}

func (p *Participant) read(ctx context.Context, q querier, query, id string) (Record, bool, error) {
	var state string
	var expires, created, updated int64
	var data sql.NullString
	var scope, style, txID, uri string
	err := q.QueryRowContext(ctx, query, id).Scan(&state, &expires, &created, &updated, &data, &scope, &style, &txID, &uri)
	if errors.Is(err, sql.ErrNoRows) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("participant: read reservation %s: %w", id, err)
	}
	rec := record(id, state, expires, created, updated)
	rec.Scope, rec.Style, rec.Transaction, rec.URI = scope, Style(style), txID, uri
	if data.Valid {
		rec.Data = json.RawMessage(data.String)
	}
	return rec, true, nil
}

// Lookup returns the bookkeeping row of reservation id, and whether there
// is one. It is what GET Path/{id} shows.
func (p *Participant) Lookup(ctx context.Context, id string) (Record, bool, error) {
	if checkID(id) != nil {
		return Record{}, false, nil
	}
	return p.lookup(ctx, p.db, id)
}

// Guards of move beyond "state = from".
const (
	guardNone = iota
	guardLive // expires_at > now: confirm only what has not expired
	guardDue  // expires_at <= now: expire only what has
)

// move changes reservation id from one state to another in tx if and only
// if it is in from (and passes guard), and reports whether it did. Every
// change of state goes through it and the transition table.
func (p *Participant) move(ctx context.Context, tx *sql.Tx, id string, from, to State, now int64, guard int) (bool, error) {
	if !canMove(from, to) {
		return false, fmt.Errorf("participant: no transition %s -> %s", from, to)
	}
	var res sql.Result
	var err error
	switch guard {
	case guardLive:
		res, err = tx.ExecContext(ctx, p.q.moveLive, to, now, id, from, now)
	case guardDue:
		res, err = tx.ExecContext(ctx, p.q.moveDue, to, now, id, from, now)
	default:
		res, err = tx.ExecContext(ctx, p.q.move, to, now, id, from)
	}
	if err != nil {
		return false, fmt.Errorf("participant: %s -> %s %s: %w", from, to, id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("participant: %s -> %s %s: %w", from, to, id, err)
	}
	return n == 1, nil
}

// tried is the outcome of a try.
type tried struct {
	id      string
	expires int64
	created bool            // false: an existing reservation answered again
	data    json.RawMessage // the TryFunc's Body, encoded
	style   Style           // the reservation's, answered with its link
}

// tryReserve runs a try: insert the row as tried (nothing is inserted if
// the id exists), run the TryFunc, fix the expiry, commit.
func (p *Participant) tryReserve(ctx context.Context, r *http.Request) (tried, error) {
	scope := p.scopeOf(r)
	if len(scope) > maxScopeLen {
		return tried{}, Rejectf(http.StatusBadRequest, "the values of the path's wildcards are longer than %d bytes", maxScopeLen)
	}
	txID, err := p.transactionOf(r)
	if err != nil {
		return tried{}, err
	}
	id, err := p.newID(r)
	if err != nil {
		return tried{}, fmt.Errorf("participant: reservation id: %w", err)
	}
	if err := checkID(id); err != nil {
		return tried{}, fmt.Errorf("participant: ReservationID returned %q: %w", id, err)
	}
	uri := p.uri(r, id)
	if len(uri) > maxURILen || !utf8.ValidString(uri) {
		if p.style == StyleCompensate {
			return tried{}, Rejectf(http.StatusBadRequest, "the reservation's URI would be longer than %d bytes, or not UTF-8", maxURILen)
		}
		uri = "" // kept for diagnosis only: a TCC reservation never needs it
	}
	now := p.nowMilli()
	expires := now + p.defaultTTL.Milliseconds()

	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return tried{}, p.dbErr(err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, p.q.insertTried, id, Tried, expires, now, now, scope, p.style.stored(), txID, uri)
	if err != nil {
		return tried{}, p.dbErr(fmt.Errorf("participant: record try %s: %w", id, err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return tried{}, fmt.Errorf("participant: record try %s: %w", id, err)
	}
	if n == 0 {
		_ = tx.Rollback()
		return p.tryAgain(ctx, id, scope, now)
	}

	out, err := p.try(ctx, tx, id, r)
	if err != nil {
		return tried{}, p.dbErr(fmt.Errorf("participant: try %s: %w", id, err))
	}
	ttl := out.TTL
	switch {
	case ttl < 0:
		return tried{}, fmt.Errorf("participant: try %s: negative TTL %v", id, ttl)
	case ttl == 0:
		ttl = p.defaultTTL
	case ttl > p.maxTTL:
		ttl = p.maxTTL
	}
	var data json.RawMessage
	if out.Body != nil {
		if data, err = json.Marshal(out.Body); err != nil {
			return tried{}, fmt.Errorf("participant: try %s: encode Body: %w", id, err)
		}
	}
	// The answer is stored with the reservation, so that a retried try is
	// answered with the same link and data.
	if ms := max(ttl.Milliseconds(), 1); now+ms != expires || data != nil {
		expires = now + ms
		stored := sql.NullString{String: string(data), Valid: data != nil}
		if _, err := tx.ExecContext(ctx, p.q.setAnswer, expires, stored, id); err != nil {
			return tried{}, p.dbErr(fmt.Errorf("participant: record the answer to try %s: %w", id, err))
		}
	}
	if err := tx.Commit(); err != nil {
		return tried{}, p.dbErr(fmt.Errorf("participant: commit try %s: %w", id, err))
	}
	return tried{id: id, expires: expires, created: true, data: data, style: p.style.stored()}, nil
}

// tryAgain answers a try whose id has a row already: the same reservation
// again if it still holds (a retried try), else refused (a hanging try:
// its cancel, or its expiry, came first).
func (p *Participant) tryAgain(ctx context.Context, id, scope string, now int64) (tried, error) {
	rec, ok, err := p.lookup(ctx, p.db, id)
	if err != nil {
		return tried{}, p.dbErr(err)
	}
	switch {
	case !ok:
		return tried{}, errUnavailable{errRace} // removed by Cleanup meanwhile
	case !rec.under(scope):
		return tried{}, rejectState(http.StatusConflict, "", "reservation id %s is taken by a reservation under another path", id)
	case rec.State == Confirmed || rec.State == Tried && rec.Expires.UnixMilli() > now:
		return tried{id: id, expires: rec.Expires.UnixMilli(), data: rec.Data, style: rec.Style}, nil
	case rec.State == Tried:
		return tried{}, rejectState(http.StatusConflict, Expired, "reservation %s expired at %s", id, formatTime(rec.Expires))
	case rec.State == Void:
		return tried{}, rejectState(http.StatusConflict, Void, "reservation %s was cancelled before this try arrived; the late try is refused", id)
	default:
		return tried{}, rejectState(http.StatusConflict, rec.State, "reservation %s is %s already; the try is refused", id, rec.State)
	}
}

// confirm confirms reservation id; nil means it is confirmed (now or
// before). A Rejection 404 says it was cancelled, expired or never tried.
func (p *Participant) confirm(ctx context.Context, id, scope string) error {
	return p.retry(ctx, func() error { return p.confirmOnce(ctx, id, scope) })
}

func (p *Participant) confirmOnce(ctx context.Context, id, scope string) error {
	tx, err := p.applyConfirm(ctx, id, scope)
	if err != nil || tx == nil {
		return err
	}
	defer tx.Rollback()
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("participant: commit confirm %s: %w", id, err)
	}
	return nil
}

// applyConfirm runs a confirm in a new local transaction up to, not
// including, its commit: lock the row, judge it, move it to confirmed, run
// the application's Confirm. It returns the open transaction for the
// caller to commit or roll back, or nil when the reservation was confirmed
// before (nothing to do). On an error nothing is left open; a failure of
// the application's Confirm is a *confirmFuncError.
func (p *Participant) applyConfirm(ctx context.Context, id, scope string) (_ *sql.Tx, err error) {
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	rec, ok, err := p.lockRow(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	// The clock is read once the row is locked, not when the request
	// arrived: however long the wait for the lock (another writer, a
	// sweeper, a SELECT … FOR UPDATE elsewhere), the expiry is judged at
	// the moment the decision is written, and nothing can change the row
	// between the two.
	now := p.nowMilli()
	switch {
	case !ok || !rec.under(scope):
		return nil, rejectState(http.StatusNotFound, "", "no reservation %s", id)
	case rec.State == Confirmed:
		_ = tx.Rollback()
		return nil, nil
	case rec.State == Tried && rec.Expires.UnixMilli() <= now:
		return nil, rejectState(http.StatusNotFound, Expired, "reservation %s expired at %s", id, formatTime(rec.Expires))
	case rec.State == Void:
		return nil, rejectState(http.StatusNotFound, Void, "no reservation %s (it was cancelled before any try)", id)
	case rec.State != Tried:
		return nil, rejectState(http.StatusNotFound, rec.State, "reservation %s was %s", id, rec.State)
	}
	moved, err := p.move(ctx, tx, id, Tried, Confirmed, now, guardLive)
	if err != nil {
		return nil, err
	}
	if !moved {
		return nil, errRace // cannot happen under the lock; run again to explain it
	}
	if err := p.confirmFn(ctx, tx, id); err != nil {
		return nil, &confirmFuncError{id: id, err: err}
	}
	return tx, nil
}

// confirmFuncError is a failure of the application's Confirm. It unwraps
// to the application's error, so that a deadlock it met is retried and a
// Rejection it returned is answered with its status.
type confirmFuncError struct {
	id  string
	err error
}

func (e *confirmFuncError) Error() string {
	return fmt.Sprintf("participant: confirm %s: %v", e.id, e.err)
}
func (e *confirmFuncError) Unwrap() error { return e.err }

// cancel cancels reservation id; nil means it is cancelled or expired (now
// or before). A Rejection 404 says it was never tried (recorded as Void so
// that a late try is refused), 409 that it is confirmed.
func (p *Participant) cancel(ctx context.Context, id, scope string) error {
	return p.retry(ctx, func() error { return p.cancelOnce(ctx, id, scope) })
}

func (p *Participant) cancelOnce(ctx context.Context, id, scope string) error {
	now := p.nowMilli()
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Insert first: a Void row if none exists (an empty cancel, remembered
	// against a hanging try); otherwise nothing, but on MySQL the existing
	// row is now locked exclusively.
	if _, err := tx.ExecContext(ctx, p.q.insertVoid, id, Void, now+p.maxTTL.Milliseconds(), now, now, scope, "", "", ""); err != nil {
		return fmt.Errorf("participant: record cancel %s: %w", id, err)
	}
	rec, ok, err := p.lockRow(ctx, tx, id)
	if err != nil {
		return err
	}
	switch {
	case !ok:
		return errRace // removed by Cleanup meanwhile
	case !rec.under(scope):
		return rejectState(http.StatusNotFound, "", "no reservation %s", id)
	case rec.State == Tried:
		moved, err := p.move(ctx, tx, id, Tried, Cancelled, now, guardNone)
		if err != nil {
			return err
		}
		if !moved {
			return errRace
		}
		if err := p.cancelFn(ctx, tx, id); err != nil {
			return fmt.Errorf("participant: cancel %s: %w", id, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("participant: commit cancel %s: %w", id, err)
		}
		return nil
	case rec.State == Cancelled || rec.State == Expired:
		return nil
	case rec.State == Void:
		if err := tx.Commit(); err != nil { // keeps a Void row just inserted
			return fmt.Errorf("participant: commit cancel %s: %w", id, err)
		}
		return rejectState(http.StatusNotFound, Void, "no reservation %s was tried; the cancel is recorded and a later try will be refused", id)
	case rec.State == Confirmed:
		return rejectState(http.StatusConflict, Confirmed, "reservation %s is confirmed; a cancel never undoes a confirm", id)
	default:
		return fmt.Errorf("participant: reservation %s in unknown state %q", id, rec.State)
	}
}

// expire moves reservation id from tried to expired if its expiry is at or
// before now, and runs the business cancel; it reports whether it did.
func (p *Participant) expire(ctx context.Context, id string, now int64) (bool, error) {
	return p.settleDue(ctx, id, Expired, now, p.cancelFn, "cancel expired %s", "expiry")
}

// settleDue moves a due reservation id from tried to state to and runs fn
// in the same local transaction, retried as one; it reports whether it
// did (a reservation no longer tried, or not due, is left as it is). what
// (a format of the id) and commit name the step in errors.
func (p *Participant) settleDue(ctx context.Context, id string, to State, now int64, fn SettleFunc, what, commit string) (bool, error) {
	var moved bool
	err := p.retry(ctx, func() error {
		moved = false
		tx, err := p.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		ok, err := p.move(ctx, tx, id, Tried, to, now, guardDue)
		if err != nil || !ok {
			return err
		}
		if err := fn(ctx, tx, id); err != nil {
			return fmt.Errorf("participant: %s: %w", fmt.Sprintf(what, id), err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("participant: commit %s of %s: %w", commit, id, err)
		}
		moved = true
		return nil
	})
	return moved, err
}

// dbErr marks a database error that running the request again may cure.
func (p *Participant) dbErr(err error) error {
	if p.d.retryable(err) {
		return errUnavailable{err}
	}
	return err
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
