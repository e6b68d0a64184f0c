package tccd_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd"
)

// undoPart is a participant service that keeps every call it gets, for
// the do-compensate style and compensate URIs: PUT /r/{id} confirms (or
// answers confirmStatus), DELETE /r/{id} cancels — or undoes what a
// compensate-style try did —, POST /r/{id}/undo undoes a confirmed
// reservation (or answers undoStatus), idempotently.
type undoPart struct {
	srv *httptest.Server

	mu            sync.Mutex
	calls         map[string][]string // id → "PUT", "DELETE", "POST"
	state         map[string]string   // id → confirmed, cancelled, undone
	confirmStatus map[string]int
	undoStatus    map[string]int
}

func newUndoPart(t *testing.T) *undoPart {
	p := &undoPart{calls: map[string][]string{}, state: map[string]string{}, confirmStatus: map[string]int{}, undoStatus: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /r/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := p.record(r)
		p.mu.Lock()
		defer p.mu.Unlock()
		if st := p.confirmStatus[id]; st != 0 {
			w.WriteHeader(st)
			return
		}
		if p.state[id] == "cancelled" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		p.state[id] = "confirmed"
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /r/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := p.record(r)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.state[id] == "confirmed" {
			w.WriteHeader(http.StatusConflict)
			return
		}
		p.state[id] = "cancelled"
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /r/{id}/undo", func(w http.ResponseWriter, r *http.Request) {
		id := p.record(r)
		p.mu.Lock()
		defer p.mu.Unlock()
		if st := p.undoStatus[id]; st != 0 {
			w.WriteHeader(st)
			return
		}
		p.state[id] = "undone"
		w.WriteHeader(http.StatusNoContent)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *undoPart) record(r *http.Request) string {
	id := r.PathValue("id")
	p.mu.Lock()
	p.calls[id] = append(p.calls[id], r.Method)
	p.mu.Unlock()
	return id
}

func (p *undoPart) link(id string, style tccd.Style, undo bool) tccd.Link {
	l := tccd.Link{URI: p.srv.URL + "/r/" + id, Expires: time.Now().Add(time.Minute), Style: style}
	if undo {
		l.CompensateURI = p.srv.URL + "/r/" + id + "/undo"
	}
	return l
}

func (p *undoPart) callsOf(id string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls[id]...)
}

func count(calls []string, method string) int {
	n := 0
	for _, c := range calls {
		if c == method {
			n++
		}
	}
	return n
}

// TestCompensateStyle: a compensate-style participant (its try did the
// work) is sent nothing on confirm — recorded confirmed by the decision —
// and is undone by its DELETE on cancel; in a mixed transaction the TCC
// participants are confirmed as usual.
func TestCompensateStyle(t *testing.T) {
	e := newEnv(t, testConfig(), 0)
	p := newUndoPart(t)
	ctx := context.Background()

	tx := e.begin(time.Minute, p.link("pay", tccd.StyleCompensate, false), p.link("seat", "", false))
	got, err := e.coord.Confirm(ctx, tx.ID, nil)
	if err != nil || got.State != tccd.StateConfirmed {
		t.Fatalf("Confirm = %+v, %v", got, err)
	}
	if c := p.callsOf("pay"); len(c) != 0 {
		t.Errorf("the compensate-style participant got %v on confirm, want nothing", c)
	}
	if c := p.callsOf("seat"); count(c, "PUT") != 1 {
		t.Errorf("the TCC participant got %v", c)
	}
	for _, pp := range got.Participants {
		if pp.State != tccd.ParticipantConfirmed {
			t.Errorf("participant %s is %s", pp.URI, pp.State)
		}
	}

	tx = e.begin(time.Minute, p.link("pay2", tccd.StyleCompensate, false), p.link("seat2", "", false))
	got, err = e.coord.Cancel(ctx, tx.ID)
	if err != nil || got.State != tccd.StateCancelled {
		t.Fatalf("Cancel = %+v, %v", got, err)
	}
	if c := p.callsOf("pay2"); count(c, "DELETE") != 1 || count(c, "PUT") != 0 {
		t.Errorf("the compensate-style participant got %v on cancel, want one DELETE", c)
	}
	if s := got.Participants[0].State; s != tccd.ParticipantCompensated {
		t.Errorf("the undone participant is %s, want compensated", s)
	}

	// A TCC participant that had cancelled on its own: the confirm turns
	// into a cancel, and the compensate-style one is undone, not left done.
	tx = e.begin(time.Minute, p.link("pay3", tccd.StyleCompensate, false), p.link("seat3", "", false))
	p.mu.Lock()
	p.confirmStatus["seat3"] = http.StatusNotFound
	p.mu.Unlock()
	_, err = e.coord.Confirm(ctx, tx.ID, nil)
	wantCode(t, err, tccd.ETimedOut)
	if c := p.callsOf("pay3"); count(c, "DELETE") != 1 {
		t.Errorf("the compensate-style participant got %v after the other had cancelled, want a DELETE", c)
	}
}

// TestCompensateConfirmed: a confirm that reaches some participants and
// not others, where each confirmed one has a compensate URI, undoes them
// (one successful POST each) and ends compensated; one that cannot be
// undone leaves the transaction heuristic, saying which were undone.
func TestCompensateConfirmed(t *testing.T) {
	for _, tc := range []struct {
		name      string
		undo      int // the undo answer of the first participant, 0: 204
		want      tccd.State
		wantFirst tccd.ParticipantState
	}{
		{"undone", 0, tccd.StateCompensated, tccd.ParticipantCompensated},
		{"cannot be undone", http.StatusUnprocessableEntity, tccd.StateHeuristic, tccd.ParticipantConfirmed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxParallel = 1 // in order: a confirms, b refuses, c confirms
			e := newEnv(t, cfg, 0)
			p := newUndoPart(t)
			p.mu.Lock()
			p.confirmStatus["b"] = http.StatusBadRequest
			if tc.undo != 0 {
				p.undoStatus["a"] = tc.undo
			}
			p.mu.Unlock()
			tx := e.begin(time.Minute, p.link("a", "", true), p.link("b", "", true), p.link("c", "", true))
			_, err := e.coord.Confirm(context.Background(), tx.ID, nil)
			if tc.want == tccd.StateCompensated {
				wantCode(t, err, tccd.ECompensated)
			} else {
				wantCode(t, err, tccd.EHeuristic)
			}
			end := e.waitState(tx.ID, tc.want)
			if end.Participants[0].State != tc.wantFirst || end.Participants[2].State != tccd.ParticipantCompensated {
				t.Errorf("participants %s, %s, %s", end.Participants[0].State, end.Participants[1].State, end.Participants[2].State)
			}
			if c := p.callsOf("c"); count(c, "POST") != 1 {
				t.Errorf("c got %v: want exactly one compensation", c)
			}
			if c := p.callsOf("b"); count(c, "DELETE") != 1 || count(c, "POST") != 0 {
				t.Errorf("b (refused to confirm) got %v: want its reservation released, nothing undone", c)
			}
			if tc.want == tccd.StateCompensated && end.Reason != tccd.ReasonParticipant {
				t.Errorf("reason %s", end.Reason)
			}
		})
	}
}
