package e2e

import (
	"context"
	"database/sql"
	"testing"

	"github.com/tccd/tccd/examples/holds"
	"github.com/tccd/tccd/participant"
)

// CheckLedger checks a holds participant's database once nothing is in
// flight: every unit is accounted for (funded = available + held + spent),
// nothing is held, each key's spent amount is wantSpent's, and the kit
// confirmed exactly confirmed reservations and left none tried.
func CheckLedger(t *testing.T, phase, name string, db *sql.DB, d participant.Dialect, wantSpent map[string]int64, confirmed int) {
	t.Helper()
	bs, err := holds.Ledger{DB: db, Dialect: d}.Balances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, b := range bs {
		seen[b.Key] = true
		if b.Funded != b.Available+b.Held+b.Spent {
			t.Errorf("%s: %s %s: funded %d != available %d + held %d + spent %d", phase, name, b.Key, b.Funded, b.Available, b.Held, b.Spent)
		}
		if b.Held != 0 {
			t.Errorf("%s: %s %s: %d still held with nothing in flight", phase, name, b.Key, b.Held)
		}
		if b.Spent != wantSpent[b.Key] {
			t.Errorf("%s: %s %s: spent %d, the confirmed operations say %d", phase, name, b.Key, b.Spent, wantSpent[b.Key])
		}
	}
	for k := range wantSpent {
		if !seen[k] {
			t.Errorf("%s: %s has no key %s", phase, name, k)
		}
	}
	n := 0
	for id, st := range Reservations(t, db) {
		switch st {
		case participant.Confirmed:
			n++
		case participant.Tried:
			t.Errorf("%s: %s reservation %s is still tried", phase, name, id)
		}
	}
	if n != confirmed {
		t.Errorf("%s: %s confirmed %d reservations, want %d", phase, name, n, confirmed)
	}
}

// StateOf returns the kit's state of the reservation at uri (its last
// path segment) in db, "" if there is none.
func StateOf(t *testing.T, db *sql.DB, uri string) participant.State {
	t.Helper()
	return Reservations(t, db)[lastSegment(uri)]
}

func lastSegment(uri string) string {
	for i := len(uri) - 1; i >= 0; i-- {
		if uri[i] == '/' {
			return uri[i+1:]
		}
	}
	return uri
}
