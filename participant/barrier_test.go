package participant_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/internal/testproc"
	"github.com/tccd/tccd/participant"
	"github.com/tccd/tccd/pebble"
)

// fakeReport is a barrier report as a fake coordinator received it.
type fakeReport struct {
	key, status, detail, auth, wait string
	// committed is the holding's committed state when the report came
	// in, read on another connection: the confirm must not be visible yet.
	committed string
}

// fakeCoordinator answers barrier reports as told: outcome is the
// answer's outcome, or status an error status.
type fakeCoordinator struct {
	srv     *httptest.Server
	outcome string
	status  int
	// visible reads a holding's committed state while the report is in.
	visible func() string

	mu      sync.Mutex
	reports []fakeReport
}

func newFakeCoordinator(t *testing.T, outcome string, status int, visible func() string) *fakeCoordinator {
	f := &fakeCoordinator{outcome: outcome, status: status, visible: visible}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/barriers/{key}", func(w http.ResponseWriter, r *http.Request) {
		var rep struct{ Status, Detail string }
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil || r.Header.Get("Content-Type") != api.MediaJSON {
			http.Error(w, "bad report", http.StatusBadRequest)
			return
		}
		wait := r.URL.Query().Get("wait")
		f.mu.Lock()
		f.reports = append(f.reports, fakeReport{key: r.PathValue("key"), status: rep.Status, detail: rep.Detail,
			auth: r.Header.Get("Authorization"), wait: wait, committed: f.visible()})
		f.mu.Unlock()
		if f.status != 0 {
			http.Error(w, "no barrier round has this key", f.status)
			return
		}
		if f.outcome == "pending" {
			// A long poll whose wait runs out: answered at the end of it.
			d, err := time.ParseDuration(wait)
			if err != nil {
				http.Error(w, "bad wait", http.StatusBadRequest)
				return
			}
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", api.MediaJSON)
		io.WriteString(w, `{"outcome":"`+f.outcome+`"}`)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCoordinator) got() []fakeReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeReport(nil), f.reports...)
}

// TestBarrierConfirm drives the kit's barrier-mode confirm against a
// coordinator that answers as told, on every backend: the confirm is
// applied and reported before it is visible, committed on "commit" only,
// rolled back on anything else (503), and a failing Confirm is reported
// "failed" (409); a confirmed reservation answers at once without a
// report, and without a coordinator URL the confirm is refused (500).
func TestBarrierConfirm(t *testing.T) {
	tests := []struct {
		name string
		// outcome or status is what the coordinator answers; noCoord
		// leaves Config.Coordinator empty, down points it at a closed port.
		outcome       string
		status        int
		noCoord, down bool
		failConfirm   bool
		confirmFirst  bool // confirmed without the barrier beforehand
		want          int
		wantState     participant.State
		wantReport    string // the status reported; "" for no report
	}{
		{name: "commit", outcome: "commit", want: http.StatusNoContent, wantState: participant.Confirmed, wantReport: "confirmed"},
		{name: "abort", outcome: "abort", want: http.StatusServiceUnavailable, wantState: participant.Tried, wantReport: "confirmed"},
		{name: "no outcome in time", outcome: "pending", want: http.StatusServiceUnavailable, wantState: participant.Tried, wantReport: "confirmed"},
		{name: "unknown key", status: http.StatusNotFound, want: http.StatusServiceUnavailable, wantState: participant.Tried, wantReport: "confirmed"},
		{name: "coordinator down", down: true, want: http.StatusServiceUnavailable, wantState: participant.Tried},
		{name: "confirm fails", outcome: "abort", failConfirm: true, want: http.StatusConflict, wantState: participant.Tried, wantReport: "failed"},
		{name: "confirmed before", outcome: "commit", confirmFirst: true, want: http.StatusNoContent, wantState: participant.Confirmed},
		{name: "no coordinator URL", noCoord: true, want: http.StatusInternalServerError, wantState: participant.Tried},
	}
	forEachBackend(t, func(t *testing.T, s *server) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var h *harness
				var id string
				fc := newFakeCoordinator(t, tt.outcome, tt.status, func() string { return h.app.holding(t, id).state })
				h = newHarness(t, s, func(c *participant.Config) {
					c.Now = time.Now
					c.BarrierWait = 300 * time.Millisecond
					switch {
					case tt.noCoord:
					case tt.down:
						dead := httptest.NewServer(http.NotFoundHandler())
						dead.Close()
						c.Coordinator = dead.URL
					default:
						c.Coordinator, c.CoordinatorToken = fc.srv.URL+"/", "s3cret"
					}
				})
				id = h.mustTry("", "").id
				if tt.confirmFirst {
					wantStatus(t, "confirm without the barrier", h.confirm(h.uriOf(id)), http.StatusNoContent)
				}
				if tt.failConfirm {
					h.app.failConfirm.Store(1)
				}
				a := h.do(http.MethodPut, h.uriOf(id), http.Header{api.HeaderBarrier: {"k-" + id}})
				wantStatus(t, "barrier confirm", a, tt.want)
				if a.status >= 400 {
					p := a.problem(t)
					if tt.noCoord && !strings.Contains(p.Detail, "Config.Coordinator") {
						t.Errorf("detail %q does not say what to configure", p.Detail)
					}
					if tt.failConfirm && !strings.Contains(p.Detail, errInjected.Error()) {
						t.Errorf("detail %q does not carry the Confirm's error", p.Detail)
					}
				}
				if got := h.record(id).State; got != tt.wantState {
					t.Errorf("reservation %s, want %s", got, tt.wantState)
				}
				// The business row agrees with the bookkeeping: committed
				// once on commit, untouched otherwise.
				wantHolding := holding{found: true, state: "held"}
				if tt.wantState == participant.Confirmed {
					wantHolding = holding{found: true, state: "done", confirms: 1}
				}
				if got := h.app.holding(t, id); got != wantHolding {
					t.Errorf("holding %+v, want %+v", got, wantHolding)
				}
				reports := fc.got()
				if tt.wantReport == "" {
					if len(reports) != 0 {
						t.Errorf("reported %+v; want no report", reports)
					}
					return
				}
				if len(reports) == 0 {
					t.Fatal("no report")
				}
				r := reports[0]
				if r.key != "k-"+id || r.status != tt.wantReport || r.auth != "Bearer s3cret" || r.committed != "held" {
					t.Errorf("report %+v: want status %s for key k-%s, the bearer token, and the confirm not yet visible", r, tt.wantReport, id)
				}
				if tt.failConfirm && !strings.Contains(r.detail, errInjected.Error()) {
					t.Errorf("failed report's detail %q lacks the Confirm's error", r.detail)
				}
				if d, err := time.ParseDuration(r.wait); err != nil || (r.status == "confirmed" && (d <= 0 || d > 300*time.Millisecond)) {
					t.Errorf("report asked to wait %q; want up to BarrierWait", r.wait)
				}
			})
		}
	})
}

// barrierCoordinator is a real coordinator, in-process, with its HTTP API
// on loopback.
func barrierCoordinator(t *testing.T) (*tccd.Coordinator, *httptest.Server) {
	t.Helper()
	store, err := pebble.Open(t.TempDir(), pebble.Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	coord := tccd.NewCoordinator(tccd.Config{
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, ConfirmWait: 20 * time.Second,
		BarrierWait: 5 * time.Second, CallTimeout: 2 * time.Second,
	}, store, tccdhttp.NewCaller(), nil, nil)
	if err := coord.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tccdhttp.NewServer(coord, tccdhttp.ServerConfig{}, nil))
	t.Cleanup(func() {
		srv.Close()
		coord.Close()
		store.Close()
	})
	return coord, srv
}

// TestBarrierWithCoordinator: two participants on the kit, each on a
// database of its own, in a barrier-mode transaction of a real
// coordinator, on every backend. When both confirm, both commit. When one's
// Confirm fails, the other's applied confirm is rolled back too, the
// transaction is cancelled, and nothing stays sold.
func TestBarrierWithCoordinator(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *server) {
		for _, tt := range []struct {
			name   string
			failB  bool
			want   participant.State
			wantTx string
		}{
			{"both confirm", false, participant.Confirmed, "confirmed"},
			{"one fails", true, participant.Cancelled, "cancelled"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, srv := barrierCoordinator(t)
				tweak := func(c *participant.Config) { c.Now, c.Coordinator = time.Now, srv.URL }
				a, b := newHarness(t, s, tweak), newHarness(t, s, tweak)
				la, lb := a.mustTry("", ""), b.mustTry("", "")
				if tt.failB {
					b.app.failConfirm.Store(1)
				}
				c, err := client.New(srv.URL)
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				tx, err := c.Begin(ctx, client.WithBarrier(), client.WithParticipants(
					client.Link{URI: la.uri, Expires: la.expires}, client.Link{URI: lb.uri, Expires: lb.expires}))
				if err != nil {
					t.Fatal(err)
				}
				got, err := tx.Confirm(ctx)
				switch {
				case tt.wantTx == "confirmed" && err != nil:
					t.Fatalf("confirm: %v", err)
				case tt.wantTx == "cancelled" && !errors.Is(err, client.ErrTimedOut):
					t.Fatalf("confirm = %v, %v; want cancelled", got, err)
				}
				final, err := c.Get(ctx, tx.ID())
				if err != nil || final.State != tt.wantTx || !final.Barrier || final.Round == nil {
					t.Fatalf("transaction %+v, %v; want %s in barrier mode", final, err, tt.wantTx)
				}
				for name, h := range map[string]*harness{"a": a, "b": b} {
					id := map[string]string{"a": la.id, "b": lb.id}[name]
					if st := h.record(id).State; st != tt.want {
						t.Errorf("%s: reservation %s, want %s", name, st, tt.want)
					}
					hold := h.app.holding(t, id)
					if tt.want == participant.Confirmed && (hold.state != "done" || hold.confirms != 1) ||
						tt.want == participant.Cancelled && (hold.state != "released" || hold.confirms != 0) {
						t.Errorf("%s: holding %+v", name, hold)
					}
					// Each applied its confirm: a's rollback is the barrier's.
					if h.app.confirms.Load() < 1 {
						t.Errorf("%s: its Confirm never ran", name)
					}
				}
			})
		}
	})
}

// TestBarrierParticipantKilled: a participant process on the kit is
// SIGKILLed between its report and its commit — the round committed, its
// local transaction open — on every backend. Its confirm is lost with the
// process (the reservation is still tried, the seat reserved); restarted
// on the same database and address, it gets the coordinator's retried PUT
// with the same key, applies the confirm again, hears "commit" at once,
// and commits: the transaction ends confirmed, both seats sold.
func TestBarrierParticipantKilled(t *testing.T) {
	bin, err := testproc.Build(t.TempDir(), "github.com/tccd/tccd/participant/internal/seats")
	if err != nil {
		t.Fatal(err)
	}
	forEachBackend(t, func(t *testing.T, s *server) {
		_, coord := barrierCoordinator(t)
		start := func(sp space, listen string, extra ...string) *testproc.Proc {
			args := []string{"--listen", listen, "--seats", "4", "--coordinator", coord.URL}
			switch sp.d {
			case participant.SQLite:
				// The space's file, which the test reads beside the process.
				path := strings.TrimPrefix(strings.SplitN(sp.dsn, "?", 2)[0], "file:")
				args = append(args, "--db", path)
			case participant.PostgreSQL:
				args = append(args, "--dialect", "postgres", "--db", sp.dsn, "--prefix", sp.prefix)
			default:
				args = append(args, "--dialect", "mysql", "--db", sp.dsn, "--prefix", sp.prefix)
			}
			return testproc.StartService(t, "seats", bin, append(args, extra...)...)
		}
		spA, spB := s.newSpace(t), s.newSpace(t)
		a := start(spA, "127.0.0.1:0", "--hold-after-report")
		b := start(spB, "127.0.0.1:0")
		hc := &http.Client{Timeout: 10 * time.Second}
		tryAt := func(p *testproc.Proc) client.Link {
			resp, err := hc.Post(p.URL()+"/seats?seat=1&ttl=5m", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				ParticipantLink struct {
					URI     string    `json:"uri"`
					Expires time.Time `json:"expires"`
				} `json:"participantLink"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusCreated {
				t.Fatalf("try at %s: %d %v", p.Addr, resp.StatusCode, err)
			}
			return client.Link{URI: body.ParticipantLink.URI, Expires: body.ParticipantLink.Expires}
		}
		la, lb := tryAt(a), tryAt(b)
		c, err := client.New(coord.URL)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		tx, err := c.Begin(ctx, client.WithBarrier(), client.WithParticipants(la, lb))
		if err != nil {
			t.Fatal(err)
		}
		confirmed := make(chan error, 1)
		go func() {
			_, err := tx.Confirm(ctx)
			confirmed <- err
		}()
		// a has reported, the round is committed, a holds its commit.
		eventually(t, 30*time.Second, "a hears commit", func() bool { return strings.Contains(a.Log(), " commit\n") })
		a.Kill()
		// What a's database holds: the seat, and the reservation's row.
		var seatState, resState string
		if err := spA.db.QueryRow(spA.d.Rebind("SELECT state FROM "+spA.q("seats")+" WHERE seat = ?"), 1).Scan(&seatState); err != nil {
			t.Fatal(err)
		}
		idA := la.URI[strings.LastIndexByte(la.URI, '/')+1:]
		if err := spA.db.QueryRow(spA.d.Rebind("SELECT state FROM "+spA.q(participant.DefaultTable)+" WHERE id = ?"), idA).Scan(&resState); err != nil {
			t.Fatal(err)
		}
		if seatState != "RESERVED" || participant.State(resState) != participant.Tried {
			t.Fatalf("after the kill a's seat is %s and its reservation %s; want the confirm lost (RESERVED, tried)", seatState, resState)
		}
		a = start(spA, a.Addr)
		select {
		case err := <-confirmed:
			if err != nil {
				t.Fatalf("confirm: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the transaction did not end")
		}
		for name, p := range map[string]*testproc.Proc{"a": a, "b": b} {
			var seats []struct {
				Seat               int
				State, Reservation string
			}
			resp, err := hc.Get(p.URL() + "/seats")
			if err != nil {
				t.Fatal(err)
			}
			json.NewDecoder(resp.Body).Decode(&seats)
			resp.Body.Close()
			if len(seats) == 0 || seats[0].State != "SOLD" {
				t.Errorf("%s: seats %+v; want seat 1 sold", name, seats)
			}
		}
		if strings.Contains(a.Log(), "holding barrier confirms") {
			t.Error("the restarted a still holds")
		}
	})
}
