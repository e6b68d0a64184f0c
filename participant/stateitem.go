package participant

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
)

// StateItem is the state reservation pattern: a row of the application's
// table (a seat, a room, a ticket) moves AVAILABLE → RESERVED on try,
// RESERVED → SOLD on confirm, and back to AVAILABLE on cancel or expiry.
// The reservation id is kept in a column of the item, so the item knows
// who holds it and confirm and cancel find it by reservation id alone.
// Every change is a guarded UPDATE (… WHERE state = 'AVAILABLE'), so no
// item is ever reserved or sold twice.
//
// The names are spliced into SQL and must be plain identifiers (checked by
// Validate and by every method); the states are bound as parameters. The
// reservation column must be nullable: cancel sets it to NULL.
//
// Its Confirm and Cancel have the SettleFunc signature, so they can be put
// into Config as they are; call Reserve from your TryFunc.
type StateItem struct {
	Dialect Dialect
	// Table, IDColumn, StateColumn and ReservationColumn name the items'
	// table, its key, its state and the column holding the reservation id.
	Table, IDColumn, StateColumn, ReservationColumn string
	// Available, Reserved and Sold are the state values; defaults
	// "AVAILABLE", "RESERVED" and "SOLD".
	Available, Reserved, Sold string
}

// Validate checks the dialect and the identifiers. Call it at start-up to
// fail early; the methods check again.
func (s StateItem) Validate() error {
	if err := s.Dialect.valid(); err != nil {
		return err
	}
	if err := checkIdents("Table", s.Table, "IDColumn", s.IDColumn, "StateColumn", s.StateColumn,
		"ReservationColumn", s.ReservationColumn); err != nil {
		return fmt.Errorf("participant: StateItem: %w", err)
	}
	return nil
}

func (s StateItem) states() (available, reserved, sold string) {
	available, reserved, sold = s.Available, s.Reserved, s.Sold
	if available == "" {
		available = "AVAILABLE"
	}
	if reserved == "" {
		reserved = "RESERVED"
	}
	if sold == "" {
		sold = "SOLD"
	}
	return available, reserved, sold
}

// Reserve moves each item (by key, in the order given) from available to
// reserved under reservation id, in tx. If one is not available (held,
// sold or unknown) it returns a Rejection 409 naming it; the kit then rolls
// back tx, so the items reserved before it are released too.
func (s StateItem) Reserve(ctx context.Context, tx *sql.Tx, id string, items ...any) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if len(items) == 0 {
		return Reject(http.StatusBadRequest, "no item to reserve")
	}
	available, reserved, _ := s.states()
	q := s.Dialect.Rebind("UPDATE " + s.Table + " SET " + s.StateColumn + " = ?, " + s.ReservationColumn + " = ?" +
		" WHERE " + s.IDColumn + " = ? AND " + s.StateColumn + " = ?")
	for _, item := range items {
		res, err := tx.ExecContext(ctx, q, reserved, id, item, available)
		if err != nil {
			return fmt.Errorf("participant: reserve item %v: %w", item, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("participant: reserve item %v: %w", item, err)
		} else if n != 1 {
			return Rejectf(http.StatusConflict, "item %v is not available", item)
		}
	}
	return nil
}

// Confirm moves the items held by reservation id from reserved to sold. It
// fails if there is none: the try reserved at least one, so the data was
// changed behind the kit's back, and confirming nothing would hide it.
func (s StateItem) Confirm(ctx context.Context, tx *sql.Tx, id string) error {
	if err := s.Validate(); err != nil {
		return err
	}
	_, reserved, sold := s.states()
	q := s.Dialect.Rebind("UPDATE " + s.Table + " SET " + s.StateColumn + " = ?" +
		" WHERE " + s.ReservationColumn + " = ? AND " + s.StateColumn + " = ?")
	res, err := tx.ExecContext(ctx, q, sold, id, reserved)
	if err != nil {
		return fmt.Errorf("participant: sell items of %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("participant: sell items of %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("participant: no item of %s is %s in %s", id, reserved, s.Table)
	}
	return nil
}

// Cancel moves the items held by reservation id from reserved back to
// available and clears their reservation column. Finding none is not an
// error: nothing is held.
func (s StateItem) Cancel(ctx context.Context, tx *sql.Tx, id string) error {
	if err := s.Validate(); err != nil {
		return err
	}
	available, reserved, _ := s.states()
	q := s.Dialect.Rebind("UPDATE " + s.Table + " SET " + s.StateColumn + " = ?, " + s.ReservationColumn + " = NULL" +
		" WHERE " + s.ReservationColumn + " = ? AND " + s.StateColumn + " = ?")
	if _, err := tx.ExecContext(ctx, q, available, id, reserved); err != nil {
		return fmt.Errorf("participant: release items of %s: %w", id, err)
	}
	return nil
}
