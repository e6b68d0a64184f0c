package tccd_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/pebble"
)

// barrierPart is a participant that speaks the barrier: on a PUT with
// Tcc-Barrier it applies the confirm inside an open "local transaction",
// reports on the key, waits for the outcome, and commits (204) or rolls
// back (503). Its behaviour is set per reservation.
type barrierPart struct {
	coord func() *tccd.Coordinator
	srv   *httptest.Server

	mu        sync.Mutex
	committed map[string]bool // reservation → committed (the confirm is durable)
	cancelled map[string]bool
	mode      map[string]string // "fail": report failed; "silent": never report; "crash-once": report, then drop the connection before committing
	rounds    map[string][]string
}

func newBarrierPart(t *testing.T, coord func() *tccd.Coordinator) *barrierPart {
	p := &barrierPart{coord: coord, committed: map[string]bool{}, cancelled: map[string]bool{}, mode: map[string]string{}, rounds: map[string][]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /r/{id}", p.confirm)
	mux.HandleFunc("DELETE /r/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.committed[id] {
			w.WriteHeader(http.StatusConflict)
			return
		}
		p.cancelled[id] = true
		w.WriteHeader(http.StatusNoContent)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *barrierPart) confirm(w http.ResponseWriter, r *http.Request) {
	id, key := r.PathValue("id"), r.Header.Get("Tcc-Barrier")
	p.mu.Lock()
	done, mode := p.committed[id], p.mode[id]
	if p.cancelled[id] {
		p.mu.Unlock()
		w.WriteHeader(http.StatusNotFound)
		return
	}
	p.rounds[id] = append(p.rounds[id], key)
	p.mu.Unlock()
	if done {
		w.WriteHeader(http.StatusNoContent) // idempotent
		return
	}
	if key == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	coord := p.coord()
	switch mode {
	case "silent":
		<-r.Context().Done()
		return
	case "fail":
		coord.BarrierReport(r.Context(), key, tccd.BarrierFailed, "out of seats")
		w.WriteHeader(http.StatusConflict)
		return
	}
	if _, err := coord.BarrierReport(r.Context(), key, tccd.BarrierConfirmed, ""); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	o, _ := coord.BarrierWait(r.Context(), key, 30*time.Second)
	p.mu.Lock()
	defer p.mu.Unlock()
	if o == tccd.BarrierCommit && mode == "crash-once" {
		// Crashed before committing: the local transaction rolled back,
		// the reservation is still there; the next PUT applies again.
		delete(p.mode, id)
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		conn.Close()
		return
	}
	if o != tccd.BarrierCommit {
		w.WriteHeader(http.StatusServiceUnavailable) // rolled back
		return
	}
	p.committed[id] = true
	w.WriteHeader(http.StatusNoContent)
}

func (p *barrierPart) link(id string, ttl time.Duration) tccd.Link {
	return tccd.Link{URI: p.srv.URL + "/r/" + id, Expires: time.Now().Add(ttl)}
}

func newBarrierCoord(t *testing.T, dir string) (*tccd.Coordinator, *pebble.Store) {
	t.Helper()
	store, err := pebble.Open(dir, pebble.Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.BarrierWait = 500 * time.Millisecond
	cfg.CallTimeout = 300 * time.Millisecond // a silent participant's PUT ends soon after an abort
	coord := tccd.NewCoordinator(cfg, store, tccdhttp.NewCaller(), nil, nil)
	if err := coord.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	return coord, store
}

// TestBarrier: the rounds of a barrier-mode confirm. Every participant
// reports confirmed: the round commits and all confirm. One reports
// failed: the round aborts, nobody commits, and the transaction is
// cancelled — never heuristic. One never reports: the round aborts after
// the barrier wait, later rounds too, and the transaction is cancelled
// once its links are too close to expiry. One reports and then crashes
// before committing: the round is committed already, so its retried PUT
// (same key) is answered commit at once.
func TestBarrier(t *testing.T) {
	tests := []struct {
		name       string
		modes      [2]string
		ttl        time.Duration
		want       tccd.State
		committed  [2]bool
		sameKeyTwo bool // b got two PUTs with the same key
	}{
		{"all confirm", [2]string{"", ""}, time.Minute, tccd.StateConfirmed, [2]bool{true, true}, false},
		{"one fails", [2]string{"", "fail"}, time.Minute, tccd.StateCancelled, [2]bool{false, false}, false},
		{"one never reports", [2]string{"", "silent"}, 3 * time.Second, tccd.StateCancelled, [2]bool{false, false}, false},
		{"one crashes after the commit record", [2]string{"", "crash-once"}, time.Minute, tccd.StateConfirmed, [2]bool{true, true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var coord *tccd.Coordinator
			get := func() *tccd.Coordinator { return coord }
			p := newBarrierPart(t, get)
			var store *pebble.Store
			coord, store = newBarrierCoord(t, t.TempDir())
			defer store.Close()
			defer coord.Close()
			p.mode["b"] = tt.modes[1]
			tx, err := coord.Begin(context.Background(), tccd.BeginRequest{Barrier: true, Participants: []tccd.Link{p.link("a", tt.ttl), p.link("b", tt.ttl)}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := coord.Confirm(context.Background(), tx.ID, nil)
			if tt.want == tccd.StateConfirmed {
				if err != nil || got.State != tccd.StateConfirmed {
					t.Fatalf("Confirm = %v, %v", got, err)
				}
			} else if tccd.ErrorCode(err) != tccd.ETimedOut {
				t.Fatalf("Confirm = %v, %v; want timed out (cancelled)", got, err)
			}
			final, _ := coord.Get(context.Background(), tx.ID)
			if final.State != tt.want {
				t.Fatalf("state %s, want %s", final.State, tt.want)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			for i, id := range []string{"a", "b"} {
				if p.committed[id] != tt.committed[i] {
					t.Errorf("%s committed = %v, want %v", id, p.committed[id], tt.committed[i])
				}
				if final.State == tccd.StateCancelled && !p.cancelled[id] && !p.committed[id] {
					// a cancel reaches every participant
					t.Errorf("%s not cancelled", id)
				}
			}
			if r := p.rounds["b"]; tt.sameKeyTwo && (len(r) < 2 || r[0] != r[len(r)-1]) {
				t.Errorf("b's PUTs carried keys %v; want the committed round's key again", r)
			}
			if tt.name == "one never reports" && len(p.rounds["a"]) < 2 {
				t.Errorf("a saw %d rounds; aborted rounds are retried", len(p.rounds["a"]))
			}
			for _, keys := range p.rounds {
				for _, k := range keys {
					if len(k) < 22 || strings.ContainsAny(k, " /") {
						t.Errorf("key %q is not a 128-bit-or-more URL-safe key", k)
					}
				}
			}
		})
	}
}

// TestBarrierRecovery: a coordinator stopped after a round's commit
// record drives it to confirmed at its next start; one stopped before the
// commit record aborts that round and runs a new one.
func TestBarrierRecovery(t *testing.T) {
	for _, afterCommit := range []bool{false, true} {
		name := "before the commit record"
		if afterCommit {
			name = "after the commit record"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var coord *tccd.Coordinator
			var mu sync.Mutex
			get := func() *tccd.Coordinator { mu.Lock(); defer mu.Unlock(); return coord }
			p := newBarrierPart(t, get)
			c1, s1 := newBarrierCoord(t, dir)
			mu.Lock()
			coord = c1
			mu.Unlock()
			// b holds its report until the test lets it go.
			release := make(chan struct{})
			p.mode["b"] = "held"
			held := make(chan string, 1)
			orig := p.srv.Config.Handler
			p.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/b") && r.Method == "PUT" {
					p.mu.Lock()
					first := p.mode["b"] == "held"
					p.mode["b"] = ""
					p.mu.Unlock()
					if first {
						key := r.Header.Get("Tcc-Barrier")
						if afterCommit {
							get().BarrierReport(r.Context(), key, tccd.BarrierConfirmed, "")
						}
						held <- key
						<-release
						w.WriteHeader(http.StatusServiceUnavailable)
						return
					}
				}
				orig.ServeHTTP(w, r)
			})
			tx, err := c1.Begin(context.Background(), tccd.BeginRequest{Barrier: true, Participants: []tccd.Link{p.link("a", time.Minute), p.link("b", time.Minute)}})
			if err != nil {
				t.Fatal(err)
			}
			go c1.Confirm(context.Background(), tx.ID, nil)
			key := <-held
			if afterCommit {
				// a reported too: wait for the commit record.
				for {
					cur, _ := c1.Get(context.Background(), tx.ID)
					if cur.Round != nil && cur.Round.Committed {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			close(release)
			c1.Close()
			s1.Close()
			c2, s2 := newBarrierCoord(t, dir)
			defer s2.Close()
			defer c2.Close()
			mu.Lock()
			coord = c2
			mu.Unlock()
			var final *tccd.Transaction
			for deadline := time.Now().Add(15 * time.Second); ; {
				final, _ = c2.Get(context.Background(), tx.ID)
				if final.State.Final() || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if final.State != tccd.StateConfirmed {
				t.Fatalf("state %s after recovery, want confirmed", final.State)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			rounds := p.rounds["b"]
			if afterCommit && rounds[len(rounds)-1] != key {
				t.Errorf("after the commit record, recovery used key %q, not the round's %q", rounds[len(rounds)-1], key)
			}
			if !afterCommit && final.Round.N < 2 {
				t.Errorf("before the commit record, recovery went on with round %d; want a new round", final.Round.N)
			}
			if !p.committed["a"] || !p.committed["b"] {
				t.Errorf("committed %v", p.committed)
			}
		})
	}
}
