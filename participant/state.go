package participant

import (
	"encoding/json"
	"time"
)

// State is the state of a reservation in the bookkeeping table.
type State string

// Reservation states.
const (
	// Tried: the try committed; the reservation holds until confirmed,
	// cancelled or expired.
	Tried State = "tried"
	// Confirmed: the business confirm committed. Final; never undone.
	Confirmed State = "confirmed"
	// Cancelled: the business cancel committed after a DELETE.
	Cancelled State = "cancelled"
	// Expired: the sweeper ran the business cancel after the expiry passed.
	Expired State = "expired"
	// Void: a DELETE arrived for an id that was never tried (an "empty
	// cancel"). No business logic ran; the row makes a later try with that
	// id fail (a "hanging" try) until Cleanup removes it.
	Void State = "void"
)

// transitions is the one table of the changes of state the kit makes. Every
// change is a guarded UPDATE … WHERE state = from (see Participant.move), so
// of two racing requests exactly one changes the row; a row is created only
// as Tried (by a try) or Void (by a cancel that finds no row).
var transitions = map[State][]State{
	Tried:     {Confirmed, Cancelled, Expired},
	Confirmed: nil,
	Cancelled: nil,
	Expired:   nil,
	Void:      nil,
}

func canMove(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Record is a row of the bookkeeping table.
type Record struct {
	ID    string
	State State
	// Expires is the reservation's expiry; for a Void row, the end of its
	// refusal of a late try.
	Expires time.Time
	Created time.Time
	Updated time.Time
	// Data is the "data" of the answer to the try (the TryFunc's Body,
	// encoded), nil if it had none; a retried try is answered with it.
	Data json.RawMessage
	// Scope is the values of Config.Path's wildcards in the path the
	// reservation was tried (or its empty cancel made) under, URL-encoded
	// ("flight=LX318"); empty when Path has none. A request naming the id
	// under other values does not find it.
	Scope string
	// Style is the reservation's style: "" for a TCC reservation,
	// StyleCompensate for one whose try did the work (Config.Style).
	Style Style
	// Transaction is the transaction id the try carried in the header
	// Tcc-Transaction-Id ("" if none), and URI the link URI the try
	// answered ("" for a void row): a compensate-style reservation's
	// sweeper asks the coordinator about them.
	Transaction, URI string
}

// under reports whether the record belongs to the collection path whose
// wildcard values are scope. A row written before the kit recorded scopes
// (empty Scope) belongs to every path.
func (r Record) under(scope string) bool { return r.Scope == "" || r.Scope == scope }

// record reads a row's integer columns.
func record(id string, state string, expires, created, updated int64) Record {
	return Record{
		ID: id, State: State(state),
		Expires: time.UnixMilli(expires).UTC(),
		Created: time.UnixMilli(created).UTC(),
		Updated: time.UnixMilli(updated).UTC(),
	}
}
