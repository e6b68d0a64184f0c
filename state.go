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
	// StateCompensating: the confirm did not reach every participant, and
	// the ones that confirmed are being undone (their compensate URIs).
	StateCompensating State = "compensating"
	// StateCompensated: every participant that confirmed was undone and
	// the rest cancelled: the transaction did not happen.
	StateCompensated State = "compensated"
)

// States lists every transaction state, in lifecycle order.
var States = []State{StateActive, StateConfirming, StateConfirmed, StateCancelling, StateCancelled, StateCompensating, StateCompensated, StateHeuristic}

// StateNone is the "state" of a transaction that does not exist yet: its
// row of the transition table lists the states a record may be created
// in, and every store's Create checks it.
const StateNone State = ""

// transitions is the one table of legal state changes. A self-transition
// records progress (an enlisted link, a participant attempt) without
// changing the state; on a final state it records the delivery of the
// outcome's notification (a webhook) and nothing else. A record is born
// through the StateNone row: active
// (registered, begin) or straight into a decision (one-shot confirm or
// cancel of the Atomikos protocol). The way out of heuristic is an
// operator's resolution (reason resolved): the coordinator itself never
// takes it, and it sends nothing to the participants.
var transitions = map[State][]State{
	StateNone:         {StateActive, StateConfirming, StateCancelling},
	StateActive:       {StateActive, StateConfirming, StateCancelling},
	StateConfirming:   {StateConfirming, StateConfirmed, StateCancelling, StateCompensating, StateHeuristic},
	StateCancelling:   {StateCancelling, StateCancelled, StateHeuristic},
	StateCompensating: {StateCompensating, StateCompensated, StateHeuristic},
	StateCompensated:  {StateCompensated},
	StateConfirmed:    {StateConfirmed},
	StateCancelled:    {StateCancelled},
	StateHeuristic:    {StateHeuristic, StateConfirmed, StateCancelled},
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

// CanCreate reports whether a new record may be created in state s.
func CanCreate(s State) bool { return CanTransition(StateNone, s) }

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool {
	_, ok := transitions[s]
	return ok && s != StateNone
}

// Final reports whether s is an end state: nothing more will be sent to
// the participants of a transaction in it. (A heuristic transaction may
// still be resolved by an operator, which changes only the record.)
func (s State) Final() bool {
	return s == StateConfirmed || s == StateCancelled || s == StateHeuristic || s == StateCompensated
}

// Decided reports whether the coordinator has settled on confirm or cancel.
func (s State) Decided() bool { return s != StateActive && s != StateNone }

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
	// ParticipantPending: not settled yet, and no confirm sent to it can
	// have taken effect (not called yet, or every call failed before the
	// participant could act on it).
	ParticipantPending ParticipantState = "pending"
	// ParticipantInDoubt: not settled, and a confirm may have taken
	// effect: a PUT was sent without a definite answer (a timeout, a reset
	// connection or a 5xx after the request was written), or the
	// coordinator restarted while confirming. Reaching the link's expiry
	// does not settle it: the coordinator keeps asking with the same PUT
	// (2xx: confirmed; 404/410: cancelled) until the expiry plus the
	// in-doubt window, and never reports it cancelled without a definite
	// answer (see Coordinator and docs/ARCHITECTURE.md).
	ParticipantInDoubt ParticipantState = "in_doubt"
	// ParticipantConfirmed: the participant answered 2xx to PUT.
	ParticipantConfirmed ParticipantState = "confirmed"
	// ParticipantCancelled: the participant answered 2xx, 404, 405 or 410 to
	// DELETE, or 404/410 to PUT (it had already cancelled on its own).
	ParticipantCancelled ParticipantState = "cancelled"
	// ParticipantExpired: the link expired before the participant gave a
	// definite answer; by contract it has cancelled on its own.
	ParticipantExpired ParticipantState = "expired"
	// ParticipantFailed: the participant refused to confirm with a
	// permanent error (a 4xx other than 404/410), so it did not confirm;
	// see LastStatus and LastError.
	ParticipantFailed ParticipantState = "failed"
	// ParticipantCompensated: the participant had confirmed and was undone
	// (2xx to the POST to its compensate URI).
	ParticipantCompensated ParticipantState = "compensated"
	// ParticipantCancelRefused: the participant answered DELETE with a 4xx
	// other than 404/405/410 (409: "I am confirmed", typically) until its
	// link expired: it is not known to be cancelled.
	ParticipantCancelRefused ParticipantState = "cancel_refused"
)

// ParticipantStates lists every participant state.
var ParticipantStates = []ParticipantState{
	ParticipantPending, ParticipantInDoubt, ParticipantConfirmed, ParticipantCancelled,
	ParticipantExpired, ParticipantFailed, ParticipantCancelRefused, ParticipantCompensated,
}

// Settled reports whether the coordinator has a definite view of the
// participant: nothing more will be sent to it for the current decision.
// A participant still in doubt when its window ran out is not settled
// (the coordinator never learnt its outcome) even though nothing more is
// sent.
func (s ParticipantState) Settled() bool {
	return s != ParticipantPending && s != ParticipantInDoubt
}
