package tccd

import (
	"context"
	"fmt"
)

// ParticipantOutcome is what a participant may learn of a transaction it
// takes part in: the transaction's state and its own, as stored — never
// more than the record says. A compensate-style participant asks for it
// at its link's expiry: nothing is sent to it on confirm, so asking is
// the only way it learns that the transaction was decided to confirm.
type ParticipantOutcome struct {
	// Transaction is the transaction's id, State its state.
	Transaction string
	State       State
	// URI is the participant's link URI in canonical form, and
	// ParticipantState what the coordinator knows of it. A
	// compensate-style participant is recorded confirmed by the decision
	// to confirm; while the transaction is confirming that may still turn
	// into an undo (the confirm phase can end cancelling or compensating).
	URI              string
	ParticipantState ParticipantState
}

// ParticipantOutcome returns what transaction id and its participant
// with link URI uri (in any spelling CanonicalURI accepts) stand at. It
// is the one read that passes over the creator check (see Get): a client
// principal that did not create the transaction may read it, because
// knowing the participant's URI — a reservation URI carries an id nobody
// can guess — is the capability. It is therefore ENotFound, with one
// message, both when there is no transaction id and when the transaction
// has no participant uri, so that an id cannot be probed without the
// URI (both with Field "uri"); and the answer holds nothing but the two
// states. A malformed uri is EInvalid (field uri), which tells nothing
// about the transaction.
func (c *Coordinator) ParticipantOutcome(ctx context.Context, id, uri string) (ParticipantOutcome, error) {
	canon, err := CanonicalURI(uri)
	if err != nil {
		return ParticipantOutcome{}, err
	}
	// Field "uri" tells this answer from the 404 of a path the server
	// does not serve (an older coordinator): a participant takes only the
	// former for "no such participant".
	none := &Error{Code: ENotFound, Field: "uri", Message: fmt.Sprintf("no transaction %s with a participant %s", id, canon)}
	tx, err := c.store.Get(ctx, id)
	if ErrorCode(err) == ENotFound {
		return ParticipantOutcome{}, none
	}
	if err != nil {
		return ParticipantOutcome{}, storeError(err)
	}
	i := tx.Participant(canon)
	if i < 0 {
		return ParticipantOutcome{}, none
	}
	return ParticipantOutcome{
		Transaction: tx.ID, State: tx.State,
		URI: canon, ParticipantState: tx.Participants[i].State,
	}, nil
}
