package tccd_test

import (
	"context"
	"testing"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/internal/testpart"
)

// TestEventsFollowWrites: every state change and every participant
// attempt is published, after it is written, in the order of the writes
// of each transaction, with Seq increasing by one.
func TestEventsFollowWrites(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	sub, err := e.coord.Events().Subscribe(tccd.EventFilter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	a, b := e.parts[0].link(0), e.parts[1].link(0)
	e.parts[1].svc.AddFault(testpart.Fault{Op: "confirm", Count: 2, Status: 503})
	tx := e.begin(time.Minute, a, b)
	if _, err := e.coord.Confirm(context.Background(), tx.ID, nil); err != nil {
		t.Fatal(err)
	}
	var evs []tccd.Event
	timeout := time.After(10 * time.Second)
	for len(evs) == 0 || evs[len(evs)-1].State != tccd.StateConfirmed {
		select {
		case ev := <-sub.C:
			evs = append(evs, ev)
		case <-timeout:
			t.Fatalf("no confirmed event; got %+v", evs)
		}
	}
	for i, ev := range evs {
		if ev.Transaction != tx.ID {
			t.Fatalf("event %d of another transaction: %+v", i, ev)
		}
		if i > 0 && ev.Seq != evs[i-1].Seq+1 {
			t.Fatalf("seq %d after %d", ev.Seq, evs[i-1].Seq)
		}
	}
	// active, confirming, b's two 503s (with the next retry), then the
	// two 204s, then confirmed.
	if evs[0].Type != tccd.EventState || evs[0].State != tccd.StateActive || evs[0].Previous != tccd.StateNone {
		t.Fatalf("first event %+v", evs[0])
	}
	if evs[1].State != tccd.StateConfirming || evs[1].Previous != tccd.StateActive || evs[1].Reason != tccd.ReasonRequested {
		t.Fatalf("second event %+v", evs[1])
	}
	var fails, oks int
	for _, ev := range evs[2 : len(evs)-1] {
		if ev.Type != tccd.EventAttempt || ev.Phase != tccd.OpConfirm {
			t.Fatalf("event %+v, want a confirm attempt", ev)
		}
		switch ev.Status {
		case 503:
			fails++
			if ev.Participant != b.URI || ev.NextRetry.IsZero() || ev.Error != "HTTP 503" {
				t.Errorf("retry event %+v", ev)
			}
		case 204:
			oks++
			if !ev.NextRetry.IsZero() {
				t.Errorf("final attempt with a next retry: %+v", ev)
			}
		}
	}
	if fails != 2 || oks != 2 {
		t.Fatalf("%d failed and %d successful attempts published, want 2 and 2: %+v", fails, oks, evs)
	}
	last := evs[len(evs)-1]
	if last.Previous != tccd.StateConfirming || last.Type != tccd.EventState {
		t.Fatalf("last event %+v", last)
	}
	// The attempts of b come in the order they were made.
	n := 0
	for _, ev := range evs {
		if ev.Type == tccd.EventAttempt && ev.Participant == b.URI {
			n++
			if ev.Attempt != n {
				t.Fatalf("attempt %d published as %d", n, ev.Attempt)
			}
		}
	}
}
