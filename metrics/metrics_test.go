package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/metrics"
	"github.com/tccd/tccd/pebble"
)

// scrape serves m's handler once and parses what it wrote, as Prometheus
// would.
func scrape(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return fams
}

// value returns the value of the series of family name with the given
// labels (a counter's or gauge's value, a histogram's count), and whether
// it is there.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestOutcome(t *testing.T) {
	timeout := &net.OpError{Op: "read", Err: context.DeadlineExceeded}
	for _, tc := range []struct {
		name string
		r    tccd.CallResult
		want string
	}{
		{"204", tccd.CallResult{Status: 204, Sent: true}, "2xx"},
		{"100", tccd.CallResult{Status: 100, Sent: true}, "1xx"},
		{"302", tccd.CallResult{Status: 302, Sent: true}, "3xx"},
		{"404", tccd.CallResult{Status: 404, Sent: true}, "4xx"},
		{"599", tccd.CallResult{Status: 599, Sent: true}, "5xx"},
		{"a status beyond 599", tccd.CallResult{Status: 999, Sent: true}, metrics.OutcomeOther},
		{"lost reply", tccd.CallResult{Err: errors.New("connection reset by peer"), Sent: true}, metrics.OutcomeError},
		{"no connection", tccd.CallResult{Err: errors.New("connection refused")}, metrics.OutcomeError},
		{"deadline", tccd.CallResult{Err: fmt.Errorf("put: %w", context.DeadlineExceeded), Sent: true}, metrics.OutcomeTimeout},
		{"net timeout", tccd.CallResult{Err: timeout, Sent: true}, metrics.OutcomeTimeout},
		{"cancelled at shutdown", tccd.CallResult{Err: context.Canceled, Sent: true}, metrics.OutcomeError},
		{"refused destination", tccd.CallResult{Err: errors.New("not allowed"), Permanent: true}, metrics.OutcomeNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := metrics.Outcome(tc.r); got != tc.want {
				t.Errorf("Outcome(%+v) = %q, want %q", tc.r, got, tc.want)
			}
		})
	}
}

// TestEvents feeds the events of transactions' lives through the Events
// decorator and checks what is counted.
func TestEvents(t *testing.T) {
	state := func(prev, to tccd.State, reason tccd.Reason, elapsed time.Duration) tccd.Event {
		return tccd.Event{Type: tccd.EventState, Transaction: "t", Previous: prev, State: to, Reason: reason, Elapsed: elapsed}
	}
	ms := time.Millisecond
	type series struct {
		name   string
		labels []string
		want   float64
	}
	for _, tc := range []struct {
		name   string
		events []tccd.Event
		want   []series
	}{
		{
			name: "registered and confirmed",
			events: []tccd.Event{
				state("", tccd.StateActive, "", 0),
				state(tccd.StateActive, tccd.StateActive, "", 0), // enlist: not a change, never published; harmless
				state(tccd.StateActive, tccd.StateConfirming, tccd.ReasonRequested, 3*ms),
				{Type: tccd.EventAttempt, Transaction: "t", Phase: tccd.OpConfirm, Status: 204, Elapsed: ms},
				state(tccd.StateConfirming, tccd.StateConfirmed, tccd.ReasonRequested, 5*ms),
			},
			want: []series{
				{"tccd_transactions_started_total", nil, 1},
				{"tccd_decision_duration_seconds", nil, 1},
				{"tccd_transactions_finished_total", []string{"state", "confirmed", "reason", "requested"}, 1},
				{"tccd_confirm_duration_seconds", []string{"state", "confirmed"}, 1},
			},
		},
		{
			name: "one-shot cancel, created decided",
			events: []tccd.Event{
				state("", tccd.StateCancelling, tccd.ReasonRequested, 2*ms),
				state(tccd.StateCancelling, tccd.StateCancelled, tccd.ReasonRequested, ms),
			},
			want: []series{
				{"tccd_transactions_started_total", nil, 1},
				{"tccd_decision_duration_seconds", nil, 1},
				{"tccd_transactions_finished_total", []string{"state", "cancelled", "reason", "requested"}, 1},
			},
		},
		{
			name: "timed out: a timer's decision has no request to time",
			events: []tccd.Event{
				state("", tccd.StateActive, "", 0),
				state(tccd.StateActive, tccd.StateCancelling, tccd.ReasonTimeout, 0),
				state(tccd.StateCancelling, tccd.StateCancelled, tccd.ReasonTimeout, ms),
			},
			want: []series{
				{"tccd_transactions_started_total", nil, 1},
				{"tccd_decision_duration_seconds", nil, 0},
				{"tccd_transactions_finished_total", []string{"state", "cancelled", "reason", "timeout"}, 1},
			},
		},
		{
			name: "confirm turned cancel, then heuristic, then resolved",
			events: []tccd.Event{
				state("", tccd.StateActive, "", 0),
				state(tccd.StateActive, tccd.StateConfirming, tccd.ReasonRequested, ms),
				state(tccd.StateConfirming, tccd.StateCancelling, tccd.ReasonParticipant, 0),
				state(tccd.StateCancelling, tccd.StateHeuristic, tccd.ReasonParticipant, 9*ms),
				state(tccd.StateHeuristic, tccd.StateCancelled, tccd.ReasonResolved, 20*ms),
			},
			want: []series{
				{"tccd_transactions_started_total", nil, 1},
				// The switch to cancel is the driver's, not a request's.
				{"tccd_decision_duration_seconds", nil, 1},
				{"tccd_transactions_finished_total", []string{"state", "heuristic", "reason", "participant"}, 1},
				// A resolution does not finish it twice.
				{"tccd_transactions_finished_total", []string{"state", "cancelled"}, 0},
				{"tccd_transactions_resolved_total", []string{"state", "cancelled"}, 1},
				{"tccd_confirm_duration_seconds", []string{"state", "heuristic"}, 1},
			},
		},
		{
			name:   "lagged and gap events are not transactions",
			events: []tccd.Event{{Type: tccd.EventLagged}, {Type: tccd.EventGap}},
			want:   []series{{"tccd_transactions_started_total", nil, 0}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New("test")
			broker := tccd.NewBroker(0, 0, nil)
			ev := m.Events(broker)
			sub, err := ev.Subscribe(tccd.EventFilter{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			for _, e := range tc.events {
				ev.Publish(e)
			}
			// The events still reach the subscribers, in order.
			for i := range tc.events {
				select {
				case got := <-sub.C:
					if got.Type != tc.events[i].Type || got.State != tc.events[i].State {
						t.Fatalf("event %d: got %+v, want %+v", i, got, tc.events[i])
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("event %d not delivered", i)
				}
			}
			fams := scrape(t, m)
			for _, s := range tc.want {
				got, _ := value(fams, s.name, s.labels...)
				if got != s.want {
					t.Errorf("%s%v = %v, want %v", s.name, s.labels, got, s.want)
				}
			}
		})
	}
}

// TestCaller calls real HTTP endpoints through the decorated http.Caller
// and checks each call's outcome class: above all, that a reply lost
// after the participant acted is an error, not the 2xx it would have
// been.
func TestCaller(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /ok", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("DELETE /gone", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) })
	mux.HandleFunc("PUT /busy", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("PUT /lost", func(w http.ResponseWriter, r *http.Request) {
		// The work is done; the answer never leaves.
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	mux.HandleFunc("PUT /slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + closed.Addr().String() + "/x"
	closed.Close()

	allow, err := tccd.ParseAllowlist([]string{"http://127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	real := tccdhttp.NewCallerWith(tccdhttp.CallerConfig{Allow: allow})
	defer real.Close()

	for _, tc := range []struct {
		name    string
		op      tccd.Op
		uri     string
		timeout time.Duration
		phase   string
		outcome string
	}{
		{"confirmed", tccd.OpConfirm, srv.URL + "/ok", 5 * time.Second, "confirm", "2xx"},
		{"cancel of an unknown reservation", tccd.OpCancel, srv.URL + "/gone", 5 * time.Second, "cancel", "4xx"},
		{"busy", tccd.OpConfirm, srv.URL + "/busy", 5 * time.Second, "confirm", "5xx"},
		{"reply lost", tccd.OpConfirm, srv.URL + "/lost", 5 * time.Second, "confirm", "error"},
		{"no answer in time", tccd.OpConfirm, srv.URL + "/slow", 100 * time.Millisecond, "confirm", "timeout"},
		{"nobody listening", tccd.OpCancel, closedURL, 5 * time.Second, "cancel", "error"},
		{"destination not allowed", tccd.OpConfirm, "https://127.0.0.1:1/x", 5 * time.Second, "confirm", "not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New("test")
			c := m.Caller(real)
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			c.Call(ctx, tccd.Call{Op: tc.op, URI: tc.uri})
			fams := scrape(t, m)
			if got, _ := value(fams, "tccd_participant_calls_total", "phase", tc.phase, "outcome", tc.outcome); got != 1 {
				t.Errorf("calls{phase=%s,outcome=%s} = %v, want 1\n%v", tc.phase, tc.outcome, got, fams["tccd_participant_calls_total"])
			}
			if got, _ := value(fams, "tccd_participant_calls_total"); got != 1 {
				t.Errorf("%v calls counted in all, want 1", got)
			}
			if got, _ := value(fams, "tccd_participant_call_duration_seconds", "phase", tc.phase); got != 1 {
				t.Errorf("call durations{phase=%s}: %v observed, want 1", tc.phase, got)
			}
		})
	}
}

// publisher is a MessagePublisher whose answer the test sets.
type publisher struct{ err error }

func (p publisher) CheckSubject(context.Context, string) error { return nil }
func (p publisher) Publish(context.Context, tccd.OutgoingMessage) error {
	return p.err
}

func TestMessages(t *testing.T) {
	for _, tc := range []struct {
		err     error
		outcome string
	}{
		{nil, "ok"},
		{fmt.Errorf("publish: %w", context.DeadlineExceeded), "timeout"},
		{fmt.Errorf("%w: no connection", tccd.ErrNotSent), "error"},
	} {
		t.Run(tc.outcome, func(t *testing.T) {
			m := metrics.New("test")
			if err := m.Messages(publisher{tc.err}).Publish(context.Background(), tccd.OutgoingMessage{ID: "m"}); !errors.Is(err, tc.err) {
				t.Fatalf("Publish returned %v, want %v", err, tc.err)
			}
			if got, _ := value(scrape(t, m), "tccd_participant_calls_total", "phase", "publish", "outcome", tc.outcome); got != 1 {
				t.Errorf("calls{publish,%s} = %v, want 1", tc.outcome, got)
			}
		})
	}
}

// openStore opens a real embedded store in a temporary directory.
func openStore(t *testing.T) *pebble.Store {
	t.Helper()
	s, err := pebble.Open(filepath.Join(t.TempDir(), "data"), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newTx(id, owner string, state tccd.State, parts ...tccd.ParticipantState) *tccd.Transaction {
	now := time.Now()
	tx := &tccd.Transaction{
		ID: id, Protocol: tccd.ProtocolNative, State: state, Timeout: time.Minute, Deadline: now.Add(time.Minute),
		CreatedAt: now, UpdatedAt: now, Owner: owner,
	}
	if state.Decided() {
		tx.DecidedAt, tx.Reason = now, tccd.ReasonRequested
	}
	for i, ps := range parts {
		tx.Participants = append(tx.Participants, tccd.Participant{
			URI: fmt.Sprintf("http://127.0.0.1:1/r/%s-%d", id, i), Expires: now.Add(time.Hour), State: ps,
		})
	}
	return tx
}

// TestStore times writes through the decorator over a real store: synced
// and not, and a compare-and-set conflict, which is an answer, not a
// failure.
func TestStore(t *testing.T) {
	m := metrics.New("test")
	s := m.Store(openStore(t))
	ctx := context.Background()
	tx := newTx("a", "n", tccd.StateActive, tccd.ParticipantPending)
	if err := s.Create(ctx, tx, false); err != nil {
		t.Fatal(err)
	}
	stale := tx.Clone()
	tx.State = tccd.StateConfirming
	if err := s.Update(ctx, tx, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, stale, true); tccd.ErrorCode(err) != tccd.EConflict {
		t.Fatalf("stale update: %v, want a conflict", err)
	}
	fams := scrape(t, m)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tccd_store_write_duration_seconds", []string{"synced", "false"}, 1},
		{"tccd_store_write_duration_seconds", []string{"synced", "true"}, 2},
		{"tccd_store_write_failures_total", []string{"synced", "true"}, 0},
	} {
		if got, ok := value(fams, tc.name, tc.labels...); !ok || got != tc.want {
			t.Errorf("%s%v = %v (present %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
}

// TestUnfinished checks the gauges read from the store at scrape time:
// they count what the store holds, whoever wrote it — after a restart
// too — and, given an owner, only that owner's records.
func TestUnfinished(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	doubt, pending, confirmed := tccd.ParticipantInDoubt, tccd.ParticipantPending, tccd.ParticipantConfirmed
	for _, tx := range []*tccd.Transaction{
		newTx("a1", "n1", tccd.StateActive, pending),
		newTx("a2", "n2", tccd.StateActive, pending, pending),
		newTx("c1", "n1", tccd.StateConfirming, doubt, confirmed),
		newTx("c2", "n1", tccd.StateConfirming, doubt, doubt),
		newTx("x1", "n2", tccd.StateCancelling, doubt),
	} {
		if err := st.Create(ctx, tx, false); err != nil {
			t.Fatal(err)
		}
	}
	// A finished one: not in flight, its doubt no longer asked about.
	fin := newTx("f1", "n1", tccd.StateConfirming, doubt)
	if err := st.Create(ctx, fin, false); err != nil {
		t.Fatal(err)
	}
	fin.State, fin.Reason = tccd.StateHeuristic, tccd.ReasonInDoubt
	if err := st.Update(ctx, fin, false); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		owner                                   string
		active, confirming, cancelling, inDoubt float64
	}{
		{"", 2, 2, 1, 4},
		{"n1", 1, 2, 0, 3},
		{"n2", 1, 0, 1, 1},
		{"n3", 0, 0, 0, 0},
	} {
		t.Run("owner="+tc.owner, func(t *testing.T) {
			m := metrics.New("test")
			if err := m.TrackUnfinished(st, tc.owner); err != nil {
				t.Fatal(err)
			}
			fams := scrape(t, m)
			for _, want := range []struct {
				state string
				n     float64
			}{{"active", tc.active}, {"confirming", tc.confirming}, {"cancelling", tc.cancelling}, {"compensating", 0}} {
				if got, ok := value(fams, "tccd_transactions_in_flight", "state", want.state); !ok || got != want.n {
					t.Errorf("in_flight{%s} = %v (present %v), want %v", want.state, got, ok, want.n)
				}
			}
			if got, ok := value(fams, "tccd_in_doubt_participants"); !ok || got != tc.inDoubt {
				t.Errorf("in_doubt = %v (present %v), want %v", got, ok, tc.inDoubt)
			}
		})
	}

	// A store that cannot be read gives no figures, and the rest is
	// still served.
	broken, err := pebble.Open(filepath.Join(t.TempDir(), "data"), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New("test")
	if err := m.TrackUnfinished(broken, ""); err != nil {
		t.Fatal(err)
	}
	broken.Close()
	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || strings.Contains(body, "tccd_transactions_in_flight{") || !strings.Contains(body, "tccd_build_info") {
		t.Errorf("with a closed store: %d\n%s", rec.Code, body)
	}
}
