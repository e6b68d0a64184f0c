package tccd_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd"
)

// spanRec is a Tracer that remembers the spans it was asked for.
type spanRec struct {
	mu    sync.Mutex
	spans []span
}

type span struct {
	name, parent string
	attrs        map[string]string
	ended        bool
	err          error
}

type parentKey struct{}

// callerParent is the traceparent a request arrives with.
const callerParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func (r *spanRec) Start(ctx context.Context, traceparent, name string, attrs ...tccd.Attr) (context.Context, func(error)) {
	parent := traceparent
	if p, ok := ctx.Value(parentKey{}).(string); ok {
		parent = p
	}
	s := span{name: name, parent: parent, attrs: map[string]string{}}
	for _, a := range attrs {
		s.attrs[a.Key] = a.Value
	}
	r.mu.Lock()
	i := len(r.spans)
	r.spans = append(r.spans, s)
	r.mu.Unlock()
	return context.WithValue(ctx, parentKey{}, parent), func(err error) {
		r.mu.Lock()
		r.spans[i].ended, r.spans[i].err = true, err
		r.mu.Unlock()
	}
}

func (r *spanRec) TraceParent(ctx context.Context) string {
	p, _ := ctx.Value(parentKey{}).(string)
	return p
}

func (r *spanRec) named(name string) []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []span
	for _, s := range r.spans {
		if s.name == name {
			out = append(out, s)
		}
	}
	return out
}

// TestTraceContinues: the trace of the request that began a transaction
// is stored with it; its decision and every participant call are spans
// of that trace, also when the calls are made by the driver after the
// request has returned, and after a restart.
func TestTraceContinues(t *testing.T) {
	rec := &spanRec{}
	cfg := testConfig()
	cfg.Tracer = rec
	e := newEnv(t, cfg, 2)
	a, b := e.parts[0].link(0), e.parts[1].link(0)
	ctx := context.WithValue(context.Background(), parentKey{}, callerParent)
	tx, err := e.coord.Begin(ctx, tccd.BeginRequest{Timeout: time.Minute, Participants: []tccd.Link{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	if tx.TraceParent != callerParent {
		t.Fatalf("stored traceparent %q, want the request's", tx.TraceParent)
	}
	e.close()
	e.open()
	if got, _ := e.coord.Get(context.Background(), tx.ID); got.TraceParent != callerParent {
		t.Fatalf("traceparent after a restart %q", got.TraceParent)
	}
	// The confirm comes without a trace: its calls still join the
	// transaction's.
	if _, err := e.coord.Confirm(context.Background(), tx.ID, nil); err != nil {
		t.Fatal(err)
	}
	decide := rec.named("tccd.decide")
	if len(decide) != 1 || decide[0].attrs["tccd.decision"] != "confirm" || decide[0].attrs["tccd.transaction.id"] != tx.ID || !decide[0].ended || decide[0].err != nil {
		t.Fatalf("decision spans %+v", decide)
	}
	calls := rec.named("tccd.participant.confirm")
	if len(calls) != 2 {
		t.Fatalf("participant spans %+v, want 2", calls)
	}
	seen := map[string]bool{}
	for _, s := range calls {
		if s.parent != callerParent || !s.ended || s.err != nil {
			t.Fatalf("participant span %+v: want a child of the request's trace, ended without error", s)
		}
		seen[s.attrs["url.full"]] = true
	}
	if !seen[a.URI] || !seen[b.URI] {
		t.Fatalf("participant spans for %v, want %s and %s", seen, a.URI, b.URI)
	}
}

// TestElapsedOnEvents: a decision's state event says how long the request
// took to write it, an attempt how long the call took.
func TestElapsedOnEvents(t *testing.T) {
	e := newEnv(t, testConfig(), 1)
	sub, err := e.coord.Events().Subscribe(tccd.EventFilter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	tx := e.begin(time.Minute, e.parts[0].link(0))
	if _, err := e.coord.Confirm(context.Background(), tx.ID, nil); err != nil {
		t.Fatal(err)
	}
	var sawDecision, sawAttempt bool
	timeout := time.After(10 * time.Second)
	for !sawDecision || !sawAttempt {
		select {
		case ev := <-sub.C:
			switch {
			case ev.Type == tccd.EventState && ev.State == tccd.StateConfirming:
				sawDecision = ev.Elapsed > 0
			case ev.Type == tccd.EventAttempt:
				sawAttempt = ev.Elapsed > 0 && ev.ParticipantState == tccd.ParticipantConfirmed
			}
		case <-timeout:
			t.Fatalf("decision with elapsed time %v, attempt with duration and state %v", sawDecision, sawAttempt)
		}
	}
}
