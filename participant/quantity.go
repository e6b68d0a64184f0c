package participant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
)

// Quantity is the quantity reservation pattern: a stock row holds an
// available amount (units in a warehouse, money in an account); try
// deducts from it and records a hold (reservation id, stock key,
// quantity) in a second table; confirm deletes the hold (the amount is
// spent); cancel or expiry adds the held amount back and deletes the hold.
// Available plus held amounts stay equal to the stock less what was
// confirmed, and available never goes negative (a guarded UPDATE …
// WHERE available >= quantity).
//
// The names are spliced into SQL and must be plain identifiers (checked by
// Validate and by every method). Its Confirm and Cancel have the
// SettleFunc signature; call Reserve from your TryFunc.
type Quantity struct {
	Dialect Dialect
	// Table, KeyColumn and AvailableColumn name the stock table, its key
	// and its available amount (an integer column).
	Table, KeyColumn, AvailableColumn string
	// HoldTable, HoldIDColumn, HoldKeyColumn and HoldQuantityColumn name
	// the holds' table and its columns: reservation id, stock key, amount.
	// A reservation may hold several keys, each once.
	HoldTable, HoldIDColumn, HoldKeyColumn, HoldQuantityColumn string
}

// Validate checks the dialect and the identifiers. Call it at start-up to
// fail early; the methods check again.
func (q Quantity) Validate() error {
	if err := q.Dialect.valid(); err != nil {
		return err
	}
	if err := checkIdents("Table", q.Table, "KeyColumn", q.KeyColumn, "AvailableColumn", q.AvailableColumn,
		"HoldTable", q.HoldTable, "HoldIDColumn", q.HoldIDColumn, "HoldKeyColumn", q.HoldKeyColumn,
		"HoldQuantityColumn", q.HoldQuantityColumn); err != nil {
		return fmt.Errorf("participant: Quantity: %w", err)
	}
	return nil
}

// Reserve deducts n from the stock of key and records the hold of
// reservation id, in tx. A non-positive n is a Rejection 400; an unknown
// key 404; too little available 409 (saying how much is).
func (q Quantity) Reserve(ctx context.Context, tx *sql.Tx, id string, key any, n int64) error {
	if err := q.Validate(); err != nil {
		return err
	}
	if n <= 0 {
		return Rejectf(http.StatusBadRequest, "quantity must be positive, not %d", n)
	}
	d, a := q.Dialect, q.AvailableColumn
	res, err := tx.ExecContext(ctx, d.Rebind("UPDATE "+q.Table+" SET "+a+" = "+a+" - ? WHERE "+q.KeyColumn+" = ? AND "+a+" >= ?"), n, key, n)
	if err != nil {
		return fmt.Errorf("participant: deduct %d of %v: %w", n, key, err)
	}
	if changed, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("participant: deduct %d of %v: %w", n, key, err)
	} else if changed != 1 {
		var have int64
		err := tx.QueryRowContext(ctx, d.Rebind("SELECT "+a+" FROM "+q.Table+" WHERE "+q.KeyColumn+" = ?"), key).Scan(&have)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return Rejectf(http.StatusNotFound, "no stock %v", key)
		case err != nil:
			return fmt.Errorf("participant: read stock %v: %w", key, err)
		}
		return Rejectf(http.StatusConflict, "only %d of %v available, %d asked", have, key, n)
	}
	_, err = tx.ExecContext(ctx, d.Rebind("INSERT INTO "+q.HoldTable+" ("+q.HoldIDColumn+", "+q.HoldKeyColumn+", "+q.HoldQuantityColumn+") VALUES (?, ?, ?)"), id, key, n)
	if err != nil {
		return fmt.Errorf("participant: record hold of %d of %v: %w", n, key, err)
	}
	return nil
}

// Confirm deletes the holds of reservation id: the amounts are spent. It
// fails if there is none (the try recorded at least one, so the data was
// changed behind the kit's back).
func (q Quantity) Confirm(ctx context.Context, tx *sql.Tx, id string) error {
	if err := q.Validate(); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, q.Dialect.Rebind("DELETE FROM "+q.HoldTable+" WHERE "+q.HoldIDColumn+" = ?"), id)
	if err != nil {
		return fmt.Errorf("participant: delete holds of %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("participant: delete holds of %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("participant: no hold of %s in %s", id, q.HoldTable)
	}
	return nil
}

// Cancel adds the amounts held by reservation id back to their stock and
// deletes the holds. Finding none is not an error: nothing is held.
func (q Quantity) Cancel(ctx context.Context, tx *sql.Tx, id string) error {
	if err := q.Validate(); err != nil {
		return err
	}
	d, a := q.Dialect, q.AvailableColumn
	type hold struct {
		key any
		n   int64
	}
	rows, err := tx.QueryContext(ctx, d.Rebind("SELECT "+q.HoldKeyColumn+", "+q.HoldQuantityColumn+" FROM "+q.HoldTable+" WHERE "+q.HoldIDColumn+" = ?"), id)
	if err != nil {
		return fmt.Errorf("participant: read holds of %s: %w", id, err)
	}
	var holds []hold
	for rows.Next() {
		var h hold
		if err := rows.Scan(&h.key, &h.n); err != nil {
			rows.Close()
			return fmt.Errorf("participant: read holds of %s: %w", id, err)
		}
		holds = append(holds, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("participant: read holds of %s: %w", id, err)
	}
	// The rows are read in full before the updates: a transaction has one
	// connection, and some drivers cannot interleave statements on it.
	for _, h := range holds {
		if _, err := tx.ExecContext(ctx, d.Rebind("UPDATE "+q.Table+" SET "+a+" = "+a+" + ? WHERE "+q.KeyColumn+" = ?"), h.n, h.key); err != nil {
			return fmt.Errorf("participant: give back %d of %v: %w", h.n, h.key, err)
		}
	}
	if _, err := tx.ExecContext(ctx, d.Rebind("DELETE FROM "+q.HoldTable+" WHERE "+q.HoldIDColumn+" = ?"), id); err != nil {
		return fmt.Errorf("participant: delete holds of %s: %w", id, err)
	}
	return nil
}
