package tccd

import "testing"

func TestTransitionTable(t *testing.T) {
	legal := map[[2]State]bool{
		{StateActive, StateActive}:         true,
		{StateActive, StateConfirming}:     true,
		{StateActive, StateCancelling}:     true,
		{StateConfirming, StateConfirming}: true,
		{StateConfirming, StateConfirmed}:  true,
		{StateConfirming, StateCancelling}: true,
		{StateConfirming, StateHeuristic}:  true,
		{StateCancelling, StateCancelling}: true,
		{StateCancelling, StateCancelled}:  true,
		// Undoing the participants that confirmed.
		{StateConfirming, StateCompensating}:   true,
		{StateCompensating, StateCompensating}: true,
		{StateCompensating, StateCompensated}:  true,
		{StateCompensating, StateHeuristic}:    true,
		{StateCompensated, StateCompensated}:   true,
		// A cancel refused, or a participant in doubt that confirmed.
		{StateCancelling, StateHeuristic}: true,
		// The delivery of a final outcome's notification.
		{StateConfirmed, StateConfirmed}: true,
		{StateCancelled, StateCancelled}: true,
		{StateHeuristic, StateHeuristic}: true,
		// An operator's resolution of a heuristic outcome.
		{StateHeuristic, StateConfirmed}: true,
		{StateHeuristic, StateCancelled}: true,
	}
	for _, from := range States {
		for _, to := range States {
			if got, want := CanTransition(from, to), legal[[2]State{from, to}]; got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	if CanTransition("bogus", StateActive) || CanTransition(StateActive, "bogus") {
		t.Error("unknown states must not transition")
	}
	// The initial row: a record is born active, or decided (one-shot).
	for _, st := range States {
		want := st == StateActive || st == StateConfirming || st == StateCancelling
		if CanCreate(st) != want {
			t.Errorf("CanCreate(%s) = %v, want %v", st, CanCreate(st), want)
		}
	}
	if CanCreate(StateNone) || CanCreate("bogus") || StateNone.Valid() {
		t.Error("no record is created in no state or an unknown one")
	}
}

func TestStatePredicates(t *testing.T) {
	tests := []struct {
		s                     State
		final, decided, valid bool
	}{
		{StateActive, false, false, true},
		{StateConfirming, false, true, true},
		{StateConfirmed, true, true, true},
		{StateCancelling, false, true, true},
		{StateCancelled, true, true, true},
		{StateHeuristic, true, true, true},
		{StateCompensating, false, true, true},
		{StateCompensated, true, true, true},
		{"bogus", false, true, false},
	}
	for _, tt := range tests {
		if tt.s.Final() != tt.final || tt.s.Decided() != tt.decided || tt.s.Valid() != tt.valid {
			t.Errorf("%s: final %v decided %v valid %v", tt.s, tt.s.Final(), tt.s.Decided(), tt.s.Valid())
		}
		if _, err := ParseState(string(tt.s)); (err == nil) != tt.valid {
			t.Errorf("ParseState(%s) err = %v", tt.s, err)
		}
	}
}
