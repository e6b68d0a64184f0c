// Package outcome names how an initiator's business transaction (a
// booking, an order) ended, and reads that from the errors of the tries
// and of the confirm. The examples' initiators share it.
package outcome

import (
	"errors"
	"net/http"

	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/examples/internal/reserve"
)

// Outcome is how a business transaction ended.
type Outcome string

// Outcomes.
const (
	Confirmed Outcome = "confirmed" // every reservation confirmed
	Refused   Outcome = "refused"   // a participant refused its try (sold out, no funds); what was held is released
	Failed    Outcome = "failed"    // a try failed (a participant unreachable); what was held is released
	Cancelled Outcome = "cancelled" // asked to confirm, the coordinator cancelled instead (a reservation had expired)
	Heuristic Outcome = "heuristic" // the participants did not all end the same way
	Unknown   Outcome = "unknown"   // the confirm's outcome is not known yet (the coordinator finishes it)
	Held      Outcome = "held"      // tried everywhere, not decided yet
	Abandoned Outcome = "abandoned" // the initiator walked away after its tries: expiry releases everything
)

// OfTry is the outcome of a business transaction whose try at service
// failed with err, and the reason to show. A 4xx answer is a refusal by
// the business (409 sold out, 402 no funds); anything else is a failure.
func OfTry(service string, err error) (Outcome, string) {
	var refused *reserve.Refused
	if errors.As(err, &refused) && refused.Status >= 400 && refused.Status < 500 && refused.Status != http.StatusRequestTimeout {
		return Refused, reserve.Reason(service, err)
	}
	return Failed, reserve.Reason(service, err)
}

// OfConfirm is the outcome of a confirm that returned err, and the reason
// to show.
func OfConfirm(err error) (Outcome, string) {
	var heuristic *client.HeuristicError
	switch {
	case err == nil:
		return Confirmed, ""
	case errors.Is(err, client.ErrTimedOut):
		return Cancelled, "a reservation expired or was cancelled before the confirm"
	case errors.As(err, &heuristic):
		return Heuristic, err.Error()
	default:
		return Unknown, err.Error()
	}
}
