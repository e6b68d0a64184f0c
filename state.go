package tccd

import "fmt"

// State is the lifecycle state of a transaction. Every change of State goes
// through CanTransition, and stores apply it with a compare-and-set.
type State string

// The transaction states. Confirmed and cancelled are the two uniform
// outcomes; heuristic means the participants did not all end the same way.
const (
	StateActive     State = "active"
	StateConfirming State = "confirming"
	StateConfirmed  State = "confirmed"
	StateCancelling State = "cancelling"
	StateCancelled  State = "cancelled"
	StateHeuristic  State = "heuristic"
)

// States lists every transaction state, in lifecycle order.
var States = []State{StateActive, StateConfirming, StateConfirmed, StateCancelling, StateCancelled, StateHeuristic}

// transitions is the one table of legal state changes. A self-transition
// records progress (an enlisted link, a participant attempt) without
// changing the state. The way out of heuristic is an operator's
// resolution (reason resolved): the coordinator itself never takes it,
// and it sends nothing to the participants.
var transitions = map[State][]State{
	StateActive:     {StateActive, StateConfirming, StateCancelling},
	StateConfirming: {StateConfirming, StateConfirmed, StateCancelling, StateHeuristic},
	StateCancelling: {StateCancelling, StateCancelled},
	StateConfirmed:  nil,
	StateCancelled:  nil,
	StateHeuristic:  {StateConfirmed, StateCancelled},
}

// CanTransition reports whether a transaction may move from one state to another.
func CanTransition(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// Final reports whether s is an end state: nothing more will be sent to
// the participants of a transaction in it. (A heuristic transaction may
// still be resolved by an operator, which changes only the record.)
func (s State) Final() bool {
	return s == StateConfirmed || s == StateCancelled || s == StateHeuristic
}

// Decided reports whether the coordinator has settled on confirm or cancel.
func (s State) Decided() bool { return s != StateActive }

// ParseState parses a state name as used on the wire.
func ParseState(v string) (State, error) {
	s := State(v)
	if !s.Valid() {
		return "", fmt.Errorf("unknown state %q", v)
	}
	return s, nil
}

// ParticipantState is what the coordinator knows of one participant link.
type ParticipantState string

// Participant states.
const (
	// ParticipantPending: not settled yet (not called, or being retried).
	ParticipantPending ParticipantState = "pending"
	// ParticipantConfirmed: the participant answered 2xx to PUT.
	ParticipantConfirmed ParticipantState = "confirmed"
	// ParticipantCancelled: the participant answered 2xx, 404, 405 or 410 to
	// DELETE, or 404/410 to PUT (it had already cancelled on its own).
	ParticipantCancelled ParticipantState = "cancelled"
	// ParticipantExpired: the link expired before the participant gave a
	// definite answer; by contract it has cancelled on its own.
	ParticipantExpired ParticipantState = "expired"
	// ParticipantFailed: the participant gave a permanent error (a 4xx
	// other than those above); see LastStatus and LastError.
	ParticipantFailed ParticipantState = "failed"
)

// Settled reports whether nothing more will be sent to the participant.
func (s ParticipantState) Settled() bool { return s != ParticipantPending }
