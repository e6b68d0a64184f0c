package participant

import (
	"testing"
	"time"
)

// TestJudge: every pair of a transaction's state and a participant's
// state that tccd can answer, and what the kit does with a
// compensate-style reservation past its expiry. Keep only what the
// coordinator holds confirmed for good; undo only what it will never
// hold confirmed; ask again otherwise.
func TestJudge(t *testing.T) {
	txStates := []string{"active", "confirming", "confirmed", "cancelling", "cancelled", "compensating", "compensated", "heuristic"}
	partStates := []string{"pending", "in_doubt", "confirmed", "cancelled", "expired", "failed", "cancel_refused", "compensated"}
	want := map[string]map[string]verdict{
		// A confirm may still come (pending), or the confirm phase may
		// still turn into an undo (confirmed while confirming).
		"active":     {"pending": askAgain, "in_doubt": askAgain, "confirmed": askAgain},
		"confirming": {"pending": askAgain, "in_doubt": askAgain, "confirmed": askAgain},
		// Final and confirmed: keep. (Pending or in doubt in a confirmed
		// transaction cannot be: ask again rather than guess.)
		"confirmed": {"pending": askAgain, "in_doubt": askAgain, "confirmed": keep},
		// The coordinator counts it confirmed and sends nothing more.
		"heuristic": {"pending": undo, "in_doubt": undo, "confirmed": keep},
		// The decision is to undo: its DELETE is on its way, or past.
		"cancelling":   {"pending": undo, "in_doubt": undo, "confirmed": undo},
		"cancelled":    {"pending": undo, "in_doubt": undo, "confirmed": undo},
		"compensating": {"pending": undo, "in_doubt": undo, "confirmed": undo},
		"compensated":  {"pending": undo, "in_doubt": undo, "confirmed": undo},
	}
	for _, tx := range txStates {
		for _, ps := range partStates {
			w, ok := want[tx][ps]
			if !ok {
				w = undo // not counted confirmed, in any transaction
			}
			if got := judge(tx, ps); got != w {
				t.Errorf("judge(%s, %s) = %v, want %v", tx, ps, got, w)
			}
			if !knownAnswer(askAnswer{found: true, state: tx, partState: ps}) {
				t.Errorf("knownAnswer(%s, %s) = false", tx, ps)
			}
		}
	}
	for _, c := range [][2]string{{"decided", "confirmed"}, {"confirmed", "done"}, {"", ""}, {"CONFIRMED", "confirmed"}} {
		if got := judge(c[0], c[1]); got != askAgain {
			t.Errorf("judge(%q, %q) = %v: an unknown state must not be acted on", c[0], c[1], got)
		}
		if knownAnswer(askAnswer{found: true, state: c[0], partState: c[1]}) {
			t.Errorf("knownAnswer(%q, %q) = true", c[0], c[1])
		}
	}
}

// TestAskBook: questions about a reservation back off while its
// transaction is undecided; a coordinator that did not answer is left
// alone for a back-off of its own; warnings come at most once a minute.
func TestAskBook(t *testing.T) {
	var b askBook
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	if !b.due("r1", t0) {
		t.Fatal("a reservation never asked about is not due")
	}
	// Undecided: 1s, 2s, 4s, … up to a minute.
	now := t0
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute} {
		b.later("r1", now, time.Time{})
		if b.due("r1", now.Add(wait-time.Millisecond)) || !b.due("r1", now.Add(wait)) {
			t.Fatalf("question %d: not due after exactly %v", i+1, wait)
		}
		now = now.Add(wait)
	}
	// A chosen time (the end of the grace).
	b.later("r2", t0, t0.Add(10*time.Second))
	if b.due("r2", t0.Add(9*time.Second)) || !b.due("r2", t0.Add(10*time.Second)) {
		t.Error("r2 not due at its chosen time")
	}
	// Down: nobody is due until the back-off passes; an answer ends it.
	b.failed(t0)
	if b.due("r3", t0.Add(999*time.Millisecond)) || !b.due("r3", t0.Add(time.Second)) {
		t.Error("after one failure: want 1s of quiet")
	}
	b.failed(t0.Add(time.Second))
	if b.due("r3", t0.Add(2900*time.Millisecond)) || !b.due("r3", t0.Add(3*time.Second)) {
		t.Error("after two failures: want 2s of quiet")
	}
	b.answered()
	if !b.due("r3", t0.Add(time.Second)) {
		t.Error("an answer did not end the quiet")
	}
	// Settled ones are forgotten; a full pass keeps only what it saw.
	b.forget("r1")
	b.later("r4", t0, time.Time{})
	b.keepOnly(map[string]bool{"r4": true})
	if len(b.next) != 1 || b.next["r4"].tries != 1 {
		t.Errorf("entries %v; want r4 only", b.next)
	}
	// Warnings.
	if ok, _ := b.warn(t0); !ok {
		t.Error("first warning not logged")
	}
	for i := range 5 {
		if ok, _ := b.warn(t0.Add(time.Duration(i+1) * time.Second)); ok {
			t.Error("a warning within the minute was logged")
		}
	}
	if ok, skipped := b.warn(t0.Add(time.Minute)); !ok || skipped != 5 {
		t.Errorf("warn after a minute = %v, %d skipped; want true, 5", ok, skipped)
	}
}
