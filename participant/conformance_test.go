package participant_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/participant"
)

// conformance is the suite every dialect passes: the participant contract
// over real HTTP, the three anomalies, atomicity of business change and
// bookkeeping, expiry, cleanup.
var conformance = []struct {
	name string
	run  func(t *testing.T, s *server)
}{
	{"TryConfirm", testTryConfirm},
	{"TryCancel", testTryCancel},
	{"IdempotentConfirm", testIdempotentConfirm},
	{"IdempotentCancel", testIdempotentCancel},
	{"ConfirmAfterCancel", testConfirmAfterCancel},
	{"CancelAfterConfirm", testCancelAfterConfirm},
	{"Unknown", testUnknown},
	{"EmptyCancelThenHangingTry", testEmptyCancelThenHangingTry},
	{"RetriedTry", testRetriedTry},
	{"TryRejected", testTryRejected},
	{"Expiry", testExpiry},
	{"ConfirmWaitsPastExpiry", testConfirmWaitsPastExpiry},
	{"ConcurrentConfirmCancel", testConcurrentConfirmCancel},
	{"ConcurrentTries", testConcurrentTries},
	{"ConfirmFailureRollsBack", testConfirmFailureRollsBack},
	{"CancelFailureRollsBack", testCancelFailureRollsBack},
	{"SweepFailureRetried", testSweepFailureRetried},
	{"BusyDatabase", testBusyDatabase},
	{"MissingTable", testMissingTable},
	{"UpgradeTable", testUpgradeTable},
	{"Cleanup", testCleanup},
	{"PathWildcards", testPathWildcards},
	{"Run", testRun},
}

func TestConformance(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *server) {
		for _, c := range conformance {
			t.Run(c.name, func(t *testing.T) { c.run(t, s) })
		}
	})
}

func testTryConfirm(t *testing.T, s *server) {
	h := newHarness(t, s)
	l := h.try("?ttl=2m&data=1", "")
	wantStatus(t, "try", l.answer, http.StatusCreated)
	if got := l.header.Get("Location"); got != l.uri || !strings.HasPrefix(got, h.srv.URL+"/reservations/") {
		t.Errorf("Location %q, link uri %q", got, l.uri)
	}
	exp := l.expires.UTC().Format(time.RFC3339Nano)
	if want := h.clock.Now().Add(2 * time.Minute); !l.expires.Equal(want) {
		t.Errorf("expires %v, want %v", l.expires, want)
	}
	if got, want := l.header.Get("Link"), fmt.Sprintf(`<%s>; rel="tcc"; expires="%s"`, l.uri, exp); got != want {
		t.Errorf("Link %q, want %q", got, want)
	}
	if got := l.header.Get(api.HeaderExpires); got != exp {
		t.Errorf("%s %q, want %q", api.HeaderExpires, got, exp)
	}
	if string(l.data) != `{"seat":"12A"}` {
		t.Errorf("data %s", l.data)
	}
	if rec := h.record(l.id); rec.State != participant.Tried || !rec.Expires.Equal(l.expires) {
		t.Errorf("record %+v", rec)
	}
	if hd := h.app.holding(t, l.id); hd.state != "held" {
		t.Errorf("holding %+v", hd)
	}

	wantStatus(t, "confirm", h.confirm(l.uri), http.StatusNoContent)
	if hd := h.app.holding(t, l.id); hd.state != "done" || hd.confirms != 1 || hd.cancels != 0 {
		t.Errorf("holding after confirm %+v", hd)
	}
	g := h.do(http.MethodGet, l.uri, nil)
	wantStatus(t, "get", g, http.StatusOK)
	var rec struct{ ID, URI, State, Expires string }
	if err := json.Unmarshal(g.body, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.ID != l.id || rec.URI != l.uri || rec.State != "confirmed" || rec.Expires != exp {
		t.Errorf("GET %s", g.body)
	}
}

func testTryCancel(t *testing.T, s *server) {
	h := newHarness(t, s)
	l := h.mustTry("", "")
	if want := h.clock.Now().Add(time.Minute); !l.expires.Equal(want) { // DefaultTTL of the harness
		t.Errorf("expires %v, want %v", l.expires, want)
	}
	wantStatus(t, "cancel", h.cancel(l.uri), http.StatusNoContent)
	if hd := h.app.holding(t, l.id); hd.state != "released" || hd.cancels != 1 || hd.confirms != 0 {
		t.Errorf("holding after cancel %+v", hd)
	}
	if rec := h.record(l.id); rec.State != participant.Cancelled {
		t.Errorf("record %+v", rec)
	}
}

func testIdempotentConfirm(t *testing.T, s *server) {
	h := newHarness(t, s)
	l := h.mustTry("", "")
	for i := range 3 {
		wantStatus(t, fmt.Sprintf("confirm #%d", i+1), h.confirm(l.uri), http.StatusNoContent)
	}
	if n := h.app.confirms.Load(); n != 1 {
		t.Errorf("business confirm ran %d times", n)
	}
	if hd := h.app.holding(t, l.id); hd.confirms != 1 {
		t.Errorf("holding %+v", hd)
	}
}

func testIdempotentCancel(t *testing.T, s *server) {
	h := newHarness(t, s)
	l := h.mustTry("", "")
	for i := range 3 {
		wantStatus(t, fmt.Sprintf("cancel #%d", i+1), h.cancel(l.uri), http.StatusNoContent)
	}
	if n := h.app.cancels.Load(); n != 1 {
		t.Errorf("business cancel ran %d times", n)
	}
	if hd := h.app.holding(t, l.id); hd.cancels != 1 || hd.state != "released" {
		t.Errorf("holding %+v", hd)
	}
}

func testConfirmAfterCancel(t *testing.T, s *server) {
	h := newHarness(t, s)
	l := h.mustTry("", "")
	wantStatus(t, "cancel", h.cancel(l.uri), http.StatusNoContent)
	a := h.confirm(l.uri)
	wantStatus(t, "confirm after cancel", a, http.StatusNotFound)
	if p := a.problem(t); p.State != "cancelled" || p.Code != api.CodeNotFound {
		t.Errorf("problem %+v", p)
	}
	if n := h.app.confirms.Load(); n != 0 {
		t.Errorf("business confirm ran %d times", n)
	}
	if hd := h.app.holding(t, l.id); hd.state != "released" || hd.confirms != 0 {
		t.Errorf("holding %+v", hd)
	}
}

func testCancelAfterConfirm(t *testing.T, s *server) {
	h := newHarness(t, s)
	l := h.mustTry("", "")
	wantStatus(t, "confirm", h.confirm(l.uri), http.StatusNoContent)
	for range 2 {
		a := h.cancel(l.uri)
		wantStatus(t, "cancel after confirm", a, http.StatusConflict)
		if p := a.problem(t); p.State != "confirmed" || p.Code != api.CodeConflict {
			t.Errorf("problem %+v", p)
		}
	}
	if n := h.app.cancels.Load(); n != 0 {
		t.Errorf("business cancel ran %d times", n)
	}
	if hd := h.app.holding(t, l.id); hd.state != "done" || hd.confirms != 1 || hd.cancels != 0 {
		t.Errorf("business state touched: %+v", hd)
	}
	if rec := h.record(l.id); rec.State != participant.Confirmed {
		t.Errorf("record %+v", rec)
	}
	// Expiry does not touch a confirmed reservation either.
	h.clock.Advance(time.Hour)
	if n, err := h.p.Sweep(context.Background()); err != nil || n != 0 {
		t.Errorf("Sweep = %d, %v", n, err)
	}
}

func testUnknown(t *testing.T, s *server) {
	h := newHarness(t, s)
	for _, c := range []struct {
		method, id string
		status     int
	}{
		{http.MethodPut, "nosuchreservation", http.StatusNotFound},
		{http.MethodGet, "nosuchreservation", http.StatusNotFound},
		{http.MethodPut, "bad%20id", http.StatusNotFound},
		{http.MethodDelete, "bad%20id", http.StatusNotFound},
		{http.MethodGet, strings.Repeat("x", participant.MaxIDLen+1), http.StatusNotFound},
		{http.MethodPatch, "x", http.StatusMethodNotAllowed},
	} {
		a := h.do(c.method, h.uriOf(c.id), nil)
		if a.status != c.status {
			t.Errorf("%s %s: status %d, want %d: %s", c.method, c.id, a.status, c.status, a.body)
		} else if c.status == http.StatusNotFound {
			a.problem(t)
		}
	}
	// A PUT of an unknown id records nothing; a DELETE records a void row.
	if rec := h.record("nosuchreservation"); rec.State != "" {
		t.Errorf("PUT recorded %+v", rec)
	}
	wantStatus(t, "cancel unknown", h.cancel(h.uriOf("nosuchreservation")), http.StatusNotFound)
	if rec := h.record("nosuchreservation"); rec.State != participant.Void {
		t.Errorf("DELETE recorded %+v", rec)
	}
}

func testEmptyCancelThenHangingTry(t *testing.T, s *server) {
	h := newHarness(t, s)
	id := participant.DeriveID("tx-1", txIDResource)
	for i := range 2 {
		a := h.cancel(h.uriOf(id))
		wantStatus(t, fmt.Sprintf("empty cancel #%d", i+1), a, http.StatusNotFound)
		if p := a.problem(t); p.State != "void" {
			t.Errorf("problem %+v", p)
		}
	}
	if n := h.app.cancels.Load(); n != 0 {
		t.Errorf("business cancel ran %d times for an empty cancel", n)
	}
	g := h.do(http.MethodGet, h.uriOf(id), nil)
	wantStatus(t, "get void", g, http.StatusOK)
	var void map[string]any
	if err := json.Unmarshal(g.body, &void); err != nil {
		t.Fatal(err)
	}
	// A void row has no expiry; what it has is a time until which it
	// refuses a late try.
	until := h.clock.Now().Add(participant.DefaultMaxTTL).Format(time.RFC3339Nano)
	if void["state"] != "void" || void["refuses_try_until"] != until || void["expires"] != nil {
		t.Errorf("GET %s", g.body)
	}

	late := h.try("", "tx-1")
	wantStatus(t, "hanging try", late.answer, http.StatusConflict)
	if p := late.problem(t); p.State != "void" || p.Code != api.CodeConflict {
		t.Errorf("problem %+v", p)
	}
	if n := h.app.tries.Load(); n != 0 {
		t.Errorf("business try ran %d times for a hanging try", n)
	}
	if h.app.count(t) != 0 {
		t.Error("the hanging try left a business row")
	}
	wantStatus(t, "confirm void", h.confirm(h.uriOf(id)), http.StatusNotFound)

	// Another transaction is unaffected.
	l := h.mustTry("", "tx-2")
	if l.id != participant.DeriveID("tx-2", txIDResource) {
		t.Errorf("id %s not derived", l.id)
	}
	// A try after an ordinary cancel is refused too.
	wantStatus(t, "cancel", h.cancel(l.uri), http.StatusNoContent)
	if a := h.try("", "tx-2"); a.status != http.StatusConflict || a.problem(t).State != "cancelled" {
		t.Errorf("try after cancel: %d %s", a.status, a.body)
	}
}

func testRetriedTry(t *testing.T, s *server) {
	h := newHarness(t, s)
	first := h.mustTry("?ttl=3m&data=1", "tx-r")
	h.clock.Advance(time.Second)
	// The retry answers like the first try, data included, whatever it
	// asks: the business try does not run again.
	again := h.try("?ttl=5m", "tx-r")
	wantStatus(t, "retried try", again.answer, http.StatusOK)
	if again.uri != first.uri || !again.expires.Equal(first.expires) || string(again.data) != string(first.data) {
		t.Errorf("retried try answered %s %v %s, first %s %v %s", again.uri, again.expires, again.data, first.uri, first.expires, first.data)
	}
	if n := h.app.tries.Load(); n != 1 {
		t.Errorf("business try ran %d times", n)
	}
	wantStatus(t, "confirm", h.confirm(first.uri), http.StatusNoContent)
	if a := h.try("", "tx-r"); a.status != http.StatusOK || string(a.data) != `{"seat":"12A"}` {
		t.Errorf("try after confirm: %d %s", a.status, a.body)
	}
	// A try that returned no data is answered again without.
	plain := h.mustTry("", "tx-p")
	if a := h.try("?data=1", "tx-p"); a.status != http.StatusOK || a.data != nil || a.uri != plain.uri {
		t.Errorf("retried plain try: %d %s", a.status, a.body)
	}
	// Once the reservation has expired unconfirmed, a retried try is refused.
	h.mustTry("?ttl=1m", "tx-e")
	h.clock.Advance(time.Minute)
	if a := h.try("", "tx-e"); a.status != http.StatusConflict || a.problem(t).State != "expired" {
		t.Errorf("try of an expired id: %d %s", a.status, a.body)
	}
}

func testTryRejected(t *testing.T, s *server) {
	h := newHarness(t, s)
	a := h.try("?reject=1", "")
	wantStatus(t, "rejected try", a.answer, http.StatusConflict)
	if p := a.problem(t); p.Detail != "sold out" || p.Code != api.CodeConflict {
		t.Errorf("problem %+v", p)
	}
	f := h.try("?fail=1", "")
	wantStatus(t, "failed try", f.answer, http.StatusInternalServerError)
	if p := f.problem(t); p.Detail != "internal error" || p.ErrorID == "" || strings.Contains(string(f.body), "injected") {
		t.Errorf("problem %+v", p)
	}
	b := h.try("?ttl=forever", "")
	wantStatus(t, "bad request", b.answer, http.StatusBadRequest)
	// Nothing of the three tries was committed: neither the business rows
	// they wrote nor their bookkeeping.
	if n := h.app.count(t); n != 0 {
		t.Errorf("%d business rows committed", n)
	}
	var n int
	if err := h.sp.db.QueryRow("SELECT COUNT(*) FROM " + h.table).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d bookkeeping rows committed (%v)", n, err)
	}
	// A rejected try with a derived id can be tried again.
	wantStatus(t, "rejected", h.try("?reject=1", "tx-x").answer, http.StatusConflict)
	h.mustTry("", "tx-x")
}

func testExpiry(t *testing.T, s *server) {
	h := newHarness(t, s)
	ctx := context.Background()
	live := h.mustTry("?ttl=2m", "")
	l := h.mustTry("?ttl=1m", "")
	h.clock.Advance(time.Minute - time.Millisecond)
	if n, err := h.p.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("Sweep before expiry = %d, %v", n, err)
	}
	h.clock.Advance(time.Millisecond) // exactly the expiry: too late
	a := h.confirm(l.uri)
	wantStatus(t, "confirm after expiry", a, http.StatusNotFound)
	if p := a.problem(t); p.State != "expired" {
		t.Errorf("problem %+v", p)
	}
	if hd := h.app.holding(t, l.id); hd.state != "held" {
		t.Errorf("before the sweep: %+v", hd)
	}
	n, err := h.p.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	if hd := h.app.holding(t, l.id); hd.state != "released" || hd.cancels != 1 || hd.confirms != 0 {
		t.Errorf("after the sweep: %+v", hd)
	}
	if rec := h.record(l.id); rec.State != participant.Expired {
		t.Errorf("record %+v", rec)
	}
	wantStatus(t, "confirm expired", h.confirm(l.uri), http.StatusNotFound)
	wantStatus(t, "cancel expired", h.cancel(l.uri), http.StatusNoContent)
	if n, err := h.p.Sweep(ctx); err != nil || n != 0 {
		t.Errorf("second Sweep = %d, %v", n, err)
	}
	if c := h.app.cancels.Load(); c != 1 {
		t.Errorf("business cancel ran %d times", c)
	}
	// The other reservation is untouched and still confirmable.
	wantStatus(t, "confirm live", h.confirm(live.uri), http.StatusNoContent)
}

// testConfirmWaitsPastExpiry: a confirm that reaches the database while
// another transaction holds the lock it needs (SQLite: the one writer;
// PostgreSQL and MySQL: the bookkeeping row, SELECT … FOR UPDATE), and
// gets it only after the reservation has expired, must not confirm: the
// expiry is judged once the row is locked, not when the request arrived.
func testConfirmWaitsPastExpiry(t *testing.T, s *server) {
	sp, obs := observe(t, s.newSpace(t))
	h := newHarnessIn(t, sp)
	ctx := context.Background()
	l := h.mustTry("?ttl=1m", "")

	holder, err := s.newHolder(ctx, sp, h.table, l.id)
	if err != nil {
		t.Fatal(err)
	}
	used := obs.arm()
	answered := make(chan answer, 1)
	go func() { answered <- h.confirm(l.uri) }()
	select {
	case <-used: // the confirm is at the database, waiting for the lock
	case a := <-answered:
		holder.Rollback()
		t.Fatalf("the confirm answered %d while the lock was held: %s", a.status, a.body)
	case <-time.After(10 * time.Second):
		holder.Rollback()
		t.Fatal("the confirm did not reach the database")
	}
	h.clock.Advance(time.Minute) // exactly the expiry: too late
	if err := holder.Commit(); err != nil {
		t.Fatal(err)
	}
	a := <-answered
	wantStatus(t, "confirm that got the lock after the expiry", a, http.StatusNotFound)
	if p := a.problem(t); p.State != "expired" {
		t.Errorf("problem %+v", p)
	}
	if hd := h.app.holding(t, l.id); hd.state != "held" || hd.confirms != 0 {
		t.Errorf("holding %+v: the expired reservation was confirmed", hd)
	}
	if n, err := h.p.Sweep(ctx); n != 1 || err != nil {
		t.Errorf("Sweep = %d, %v", n, err)
	}
	if hd := h.app.holding(t, l.id); hd.state != "released" {
		t.Errorf("holding after the sweep %+v", hd)
	}
}

// retryBusy repeats a request answered 503, as a coordinator would.
func retryBusy(h *harness, do func() answer) answer {
	for range 20 {
		a := do()
		if a.status != http.StatusServiceUnavailable {
			return a
		}
	}
	h.t.Errorf("still 503 after 20 attempts")
	return answer{}
}

func testConcurrentConfirmCancel(t *testing.T, s *server) {
	h := newHarness(t, s)
	const n = 12
	links := make([]tryLink, n)
	for i := range links {
		links[i] = h.mustTry("", "")
	}
	type outcome struct{ confirm, cancel int }
	outcomes := make([]outcome, n)
	var wg sync.WaitGroup
	for i, l := range links {
		start := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			outcomes[i].confirm = retryBusy(h, func() answer { return h.confirm(l.uri) }).status
		}()
		go func() {
			defer wg.Done()
			<-start
			outcomes[i].cancel = retryBusy(h, func() answer { return h.cancel(l.uri) }).status
		}()
		close(start)
	}
	wg.Wait()
	confirmed := 0
	for i, l := range links {
		o := outcomes[i]
		rec, hd := h.record(l.id), h.app.holding(t, l.id)
		switch o {
		case outcome{http.StatusNoContent, http.StatusConflict}:
			confirmed++
			if rec.State != participant.Confirmed || hd.state != "done" || hd.confirms != 1 || hd.cancels != 0 {
				t.Errorf("%d: confirm won but record %s, holding %+v", i, rec.State, hd)
			}
		case outcome{http.StatusNotFound, http.StatusNoContent}:
			if rec.State != participant.Cancelled || hd.state != "released" || hd.cancels != 1 || hd.confirms != 0 {
				t.Errorf("%d: cancel won but record %s, holding %+v", i, rec.State, hd)
			}
		default:
			t.Errorf("%d: confirm %d and cancel %d: not exactly one winner", i, o.confirm, o.cancel)
		}
	}
	t.Logf("%d of %d races won by confirm", confirmed, n)
}

func testConcurrentTries(t *testing.T, s *server) {
	h := newHarness(t, s)
	const n = 8
	statuses := make([]int, n)
	uris := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var l tryLink
			for range 20 {
				if l = h.try("", "tx-same"); l.status != http.StatusServiceUnavailable {
					break
				}
			}
			statuses[i], uris[i] = l.status, l.uri
		}()
	}
	close(start)
	wg.Wait()
	created := 0
	for i, st := range statuses {
		switch st {
		case http.StatusCreated:
			created++
		case http.StatusOK:
		default:
			t.Errorf("try %d: status %d", i, st)
		}
		if uris[i] != uris[0] {
			t.Errorf("try %d answered %s, try 0 %s", i, uris[i], uris[0])
		}
	}
	if created != 1 {
		t.Errorf("%d tries created the reservation, want 1", created)
	}
	if c := h.app.count(t); c != 1 {
		t.Errorf("%d business rows", c)
	}
}

func testConfirmFailureRollsBack(t *testing.T, s *server) {
	h := newHarness(t, s)
	l := h.mustTry("", "")
	h.app.failConfirm.Store(1)
	a := h.confirm(l.uri)
	wantStatus(t, "failing confirm", a, http.StatusInternalServerError)
	if p := a.problem(t); p.ErrorID == "" || p.Code != api.CodeInternal {
		t.Errorf("problem %+v", p)
	}
	// The business confirm wrote and then failed: its write and the
	// bookkeeping move were rolled back together.
	if rec := h.record(l.id); rec.State != participant.Tried {
		t.Errorf("record after failed confirm: %+v", rec)
	}
	if hd := h.app.holding(t, l.id); hd.state != "held" || hd.confirms != 0 {
		t.Errorf("holding after failed confirm: %+v", hd)
	}
	wantStatus(t, "retried confirm", h.confirm(l.uri), http.StatusNoContent)
	if hd := h.app.holding(t, l.id); hd.state != "done" || hd.confirms != 1 {
		t.Errorf("holding after retried confirm: %+v", hd)
	}
}

func testCancelFailureRollsBack(t *testing.T, s *server) {
	h := newHarness(t, s)
	l := h.mustTry("", "")
	h.app.failCancel.Store(1)
	wantStatus(t, "failing cancel", h.cancel(l.uri), http.StatusInternalServerError)
	if rec := h.record(l.id); rec.State != participant.Tried {
		t.Errorf("record after failed cancel: %+v", rec)
	}
	if hd := h.app.holding(t, l.id); hd.state != "held" || hd.cancels != 0 {
		t.Errorf("holding after failed cancel: %+v", hd)
	}
	wantStatus(t, "retried cancel", h.cancel(l.uri), http.StatusNoContent)
	if hd := h.app.holding(t, l.id); hd.state != "released" || hd.cancels != 1 {
		t.Errorf("holding after retried cancel: %+v", hd)
	}
}

func testSweepFailureRetried(t *testing.T, s *server) {
	// A small batch, so that the failing row heads a page of its own.
	h := newHarness(t, s, func(c *participant.Config) { c.SweepBatch = 1 })
	ctx := context.Background()
	a := h.mustTry("?ttl=1m", "")
	b := h.mustTry("?ttl=2m", "")
	h.clock.Advance(3 * time.Minute)
	h.app.failCancel.Store(1) // a's cancel fails: it is swept first
	n, err := h.p.Sweep(ctx)
	if n != 1 || err == nil {
		t.Fatalf("Sweep = %d, %v; want 1 and the failure", n, err)
	}
	if rec := h.record(a.id); rec.State != participant.Tried {
		t.Errorf("a: %+v", rec)
	}
	if rec := h.record(b.id); rec.State != participant.Expired {
		t.Errorf("b: %+v", rec)
	}
	if n, err := h.p.Sweep(ctx); n != 1 || err != nil {
		t.Fatalf("second Sweep = %d, %v", n, err)
	}
	for _, l := range []tryLink{a, b} {
		if hd := h.app.holding(t, l.id); hd.state != "released" || hd.cancels != 1 {
			t.Errorf("%s: %+v", l.id, hd)
		}
	}
}

func testMissingTable(t *testing.T, s *server) {
	sp := s.newSpace(t)
	ctx := context.Background()
	app := newBizApp(t, sp)
	cfg := participant.Config{DB: sp.db, Dialect: sp.d, Table: sp.q("tcc_reservation"), Try: app.try, Confirm: app.confirm, Cancel: app.cancel}
	_, err := participant.New(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "participant.Migrate") {
		t.Fatalf("New without the table: %v", err)
	}
	// A table without the expected columns is refused too.
	sp.exec(t, "CREATE TABLE "+cfg.Table+" (id VARCHAR(128) PRIMARY KEY, state VARCHAR(16))")
	if _, err := participant.New(ctx, cfg); err == nil {
		t.Fatal("New accepted a table without expires_at")
	}
	sp.exec(t, "DROP TABLE "+cfg.Table)
	if err := participant.Migrate(ctx, sp.db, sp.d, cfg.Table); err != nil {
		t.Fatal(err)
	}
	if err := participant.Migrate(ctx, sp.db, sp.d, cfg.Table); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	if _, err := participant.New(ctx, cfg); err != nil {
		t.Fatalf("New after Migrate: %v", err)
	}
}

// firstTable is the bookkeeping table as the first version of the kit
// created it: without the columns added since.
var firstTable = map[participant.Dialect]string{
	participant.PostgreSQL: `CREATE TABLE %s (id VARCHAR(128) NOT NULL PRIMARY KEY, state VARCHAR(16) NOT NULL,
	expires_at BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)`,
	participant.SQLite: `CREATE TABLE %s (id TEXT NOT NULL PRIMARY KEY, state TEXT NOT NULL,
	expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)`,
	participant.MySQL: `CREATE TABLE %s (id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
	state VARCHAR(16) CHARACTER SET ascii NOT NULL, expires_at BIGINT NOT NULL, created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL) ENGINE=InnoDB`,
}

// testUpgradeTable: a bookkeeping table of the first version is refused
// by New with the DDL to run, and upgraded by Migrate; its rows keep
// working.
func testUpgradeTable(t *testing.T, s *server) {
	sp := s.newSpace(t)
	ctx := context.Background()
	app := newBizApp(t, sp)
	table := sp.q("tcc_reservation")
	sp.exec(t, fmt.Sprintf(firstTable[sp.d], table))
	clock := newClock()
	old := clock.Now().Add(time.Hour).UnixMilli()
	sp.exec(t, fmt.Sprintf("INSERT INTO %s (id, state, expires_at, created_at, updated_at) VALUES ('before', 'tried', %d, 0, 0)", table, old))
	cfg := participant.Config{DB: sp.db, Dialect: sp.d, Table: table, Try: app.try, Confirm: app.confirm, Cancel: app.cancel,
		Now: clock.Now, Logger: testLogger(t),
		ReservationID: func(r *http.Request) (string, error) { return r.URL.Query().Get("id"), nil }}
	_, err := participant.New(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "participant.Migrate") || !strings.Contains(err.Error(), "ALTER TABLE "+table+" ADD COLUMN data") ||
		!strings.Contains(err.Error(), "ALTER TABLE "+table+" ADD COLUMN scope") {
		t.Fatalf("New with a table of the first version: %v", err)
	}
	t.Log(err)
	for range 2 { // Migrate again is harmless
		if err := participant.Migrate(ctx, sp.db, sp.d, table); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	p, err := participant.New(ctx, cfg)
	if err != nil {
		t.Fatalf("New after Migrate: %v", err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	h := &harness{t: t, sp: sp, clock: clock, app: app, p: p, srv: srv, table: table}
	// The row from before answers a retried try (without data) and a confirm.
	if a := h.try("?id=before", ""); a.status != http.StatusOK || a.data != nil {
		t.Errorf("retried try of a row from before: %d %s", a.status, a.body)
	}
	sp.exec(t, fmt.Sprintf("INSERT INTO %s (id, state, confirms, cancels) VALUES ('before', 'held', 0, 0)", app.table))
	wantStatus(t, "confirm a row from before", h.confirm(h.uriOf("before")), http.StatusNoContent)
	l := h.mustTry("?id=after&data=1", "")
	if a := h.try("?id=after", ""); a.status != http.StatusOK || string(a.data) != string(l.data) {
		t.Errorf("retried try after the upgrade: %d %s", a.status, a.body)
	}
}

// retention is the shortest age Cleanup accepts in the tests.
const retention = participant.MinRetention

// testCleanup: Cleanup keeps every row until its expiry (for a void row:
// the end of its refusal) plus the retention, so that a coordinator that
// repeats a confirm long after the expiry still hears 204, and a repeated
// try with a derived id is answered from the row instead of running the
// business try again.
func testCleanup(t *testing.T, s *server) {
	h := newHarness(t, s)
	ctx := context.Background()
	start := h.clock.Now()
	confirmed := h.mustTry("?ttl=24h&data=1", "tx-c")
	cancelled := h.mustTry("?ttl=1h", "tx-x")
	expired := h.mustTry("?ttl=1m", "tx-e")
	tried := h.mustTry("?ttl=24h", "")
	voidID := participant.DeriveID("tx-v", txIDResource)
	wantStatus(t, "confirm", h.confirm(confirmed.uri), http.StatusNoContent)
	wantStatus(t, "cancel", h.cancel(cancelled.uri), http.StatusNoContent)
	wantStatus(t, "empty cancel", h.cancel(h.uriOf(voidID)), http.StatusNotFound)
	h.clock.Advance(90 * time.Second)
	if n, err := h.p.Sweep(ctx); n != 1 || err != nil {
		t.Fatalf("Sweep = %d, %v", n, err)
	}

	for _, age := range []time.Duration{-time.Second, 0, time.Hour, retention - time.Millisecond} {
		if _, err := h.p.Cleanup(ctx, age); err == nil {
			t.Errorf("Cleanup accepted the age %v", age)
		}
	}
	// Long after every row settled, but not after every expiry plus the
	// retention: only the reservation that expired after a minute goes.
	h.clock.Set(start.Add(retention + 2*time.Minute))
	n, err := h.p.Cleanup(ctx, retention)
	if err != nil || n != 1 {
		t.Errorf("Cleanup = %d, %v; want 1", n, err)
	}
	for _, c := range []struct {
		what string
		id   string
		want participant.State
	}{
		{"expired a minute after the start", expired.id, ""},
		{"confirmed, expiry 24h after the start", confirmed.id, participant.Confirmed},
		{"cancelled, expiry an hour after the start", cancelled.id, participant.Cancelled},
		{"void, refusing tries for 24h", voidID, participant.Void},
		{"tried", tried.id, participant.Tried},
	} {
		if got := h.record(c.id).State; got != c.want {
			t.Errorf("%s: state %q after Cleanup, want %q", c.what, got, c.want)
		}
	}
	// The rows kept answer as before: a repeated confirm, a repeated try,
	// hanging tries.
	wantStatus(t, "repeated confirm", h.confirm(confirmed.uri), http.StatusNoContent)
	again := h.try("?data=1", "tx-c")
	wantStatus(t, "repeated try of the confirmed reservation", again.answer, http.StatusOK)
	if again.uri != confirmed.uri {
		t.Errorf("repeated try answered %s, want %s", again.uri, confirmed.uri)
	}
	wantStatus(t, "try after the cancel", h.try("", "tx-x").answer, http.StatusConflict)
	wantStatus(t, "hanging try", h.try("", "tx-v").answer, http.StatusConflict)
	if n := h.app.tries.Load(); n != 4 {
		t.Errorf("business try ran %d times, want 4", n)
	}

	// Past every expiry plus the retention, every settled row goes; the
	// tried one never.
	h.clock.Set(start.Add(24*time.Hour + retention + time.Millisecond))
	if n, err := h.p.Cleanup(ctx, retention); n != 3 || err != nil {
		t.Errorf("Cleanup after every expiry = %d, %v; want 3", n, err)
	}
	if got := h.record(tried.id).State; got != participant.Tried {
		t.Errorf("tried row: %q", got)
	}
}

func testRun(t *testing.T, s *server) {
	h := newHarness(t, s, func(c *participant.Config) { c.SweepEvery = 5 * time.Millisecond; c.Retention = retention })
	l := h.mustTry("?ttl=1m", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.p.Run(ctx)
	}()
	h.clock.Advance(2 * time.Minute)
	eventually(t, 10*time.Second, "Run expires the reservation", func() bool {
		return h.record(l.id).State == participant.Expired
	})
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if hd := h.app.holding(t, l.id); hd.state != "released" || hd.cancels != 1 {
		t.Errorf("holding %+v", hd)
	}
}

func testBusyDatabase(t *testing.T, s *server) {
	h := newHarness(t, s)
	l := h.mustTry("", "")
	// Two deadlocks are absorbed by the kit's retries.
	h.app.busyConfirm.Store(2)
	wantStatus(t, "confirm after 2 deadlocks", h.confirm(l.uri), http.StatusNoContent)
	if n := h.app.confirms.Load(); n != 3 {
		t.Errorf("business confirm ran %d times, want 3", n)
	}
	if hd := h.app.holding(t, l.id); hd.confirms != 1 {
		t.Errorf("holding %+v", hd)
	}
	// More are answered 503 with Retry-After, nothing changed.
	m := h.mustTry("", "")
	h.app.busyConfirm.Store(100)
	a := h.confirm(m.uri)
	wantStatus(t, "confirm while deadlocking", a, http.StatusServiceUnavailable)
	if a.header.Get("Retry-After") == "" || a.problem(t).Code != api.CodeUnavailable {
		t.Errorf("503 without Retry-After or code: %v %s", a.header, a.body)
	}
	if rec := h.record(m.id); rec.State != participant.Tried {
		t.Errorf("record %+v", rec)
	}
	h.app.busyConfirm.Store(0)
	wantStatus(t, "confirm when it passed", h.confirm(m.uri), http.StatusNoContent)
}

// testPathWildcards: a reservation tried under a collection path with
// wildcards (/flights/LX318/seats) is found only under that path: a
// confirm, cancel or GET naming it under another (/flights/NOPE/seats)
// answers 404 and changes nothing, and its id cannot be tried again there.
func testPathWildcards(t *testing.T, s *server) {
	h := newHarness(t, s, func(c *participant.Config) {
		c.Path = "/flights/{flight}/seats"
		derived := c.ReservationID
		c.ReservationID = func(r *http.Request) (string, error) {
			if id := r.URL.Query().Get("id"); id != "" {
				return id, nil // as a careless application might: the same id on every flight
			}
			return derived(r)
		}
	})
	base := h.srv.URL + "/flights/"
	a := h.do(http.MethodPost, base+"LX318/seats?id=r1", nil)
	wantStatus(t, "try", a, http.StatusCreated)
	right, wrong := base+"LX318/seats/r1", base+"NOPE/seats/r1"
	if loc := a.header.Get("Location"); loc != right {
		t.Fatalf("Location %q, want %q", loc, right)
	}
	for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodGet} {
		wantStatus(t, m+" under another flight", h.do(m, wrong, nil), http.StatusNotFound)
	}
	wantStatus(t, "retried try under another flight", h.do(http.MethodPost, base+"NOPE/seats?id=r1", nil), http.StatusConflict)
	if rec := h.record("r1"); rec.State != participant.Tried || h.app.confirms.Load()+h.app.cancels.Load() != 0 {
		t.Fatalf("after calls under another flight: %+v, %d confirms, %d cancels", rec, h.app.confirms.Load(), h.app.cancels.Load())
	}
	wantStatus(t, "get", h.do(http.MethodGet, right, nil), http.StatusOK)
	wantStatus(t, "retried try", h.do(http.MethodPost, base+"LX318/seats?id=r1", nil), http.StatusOK)
	wantStatus(t, "confirm", h.do(http.MethodPut, right, nil), http.StatusNoContent)
	wantStatus(t, "repeated confirm under another flight", h.do(http.MethodPut, wrong, nil), http.StatusNotFound)
	wantStatus(t, "cancel after confirm under another flight", h.do(http.MethodDelete, wrong, nil), http.StatusNotFound)
	wantStatus(t, "cancel after confirm", h.do(http.MethodDelete, right, nil), http.StatusConflict)
	// An empty cancel is remembered under its path: the id is refused
	// under every flight, and known under its own only.
	wantStatus(t, "empty cancel", h.do(http.MethodDelete, base+"U2/seats/r2", nil), http.StatusNotFound)
	wantStatus(t, "hanging try", h.do(http.MethodPost, base+"U2/seats?id=r2", nil), http.StatusConflict)
	wantStatus(t, "try of a voided id under another flight", h.do(http.MethodPost, base+"LX318/seats?id=r2", nil), http.StatusConflict)
	wantStatus(t, "get void", h.do(http.MethodGet, base+"U2/seats/r2", nil), http.StatusOK)
	wantStatus(t, "get void under another flight", h.do(http.MethodGet, base+"LX318/seats/r2", nil), http.StatusNotFound)
	if n := h.app.tries.Load(); n != 1 {
		t.Errorf("business try ran %d times", n)
	}
}

// TestPathAndBaseURL: a collection path with a wildcard that the try
// reads, and reservation URIs made from BaseURL (behind a proxy).
func TestPathAndBaseURL(t *testing.T) {
	s := &server{backend: backends[0]} // SQLite: routing does not depend on the dialect
	var flights []string
	h := newHarness(t, s, func(c *participant.Config) {
		c.Path = "/flights/{flight}/seats"
		c.BaseURL = "https://air.example/api/"
		try := c.Try
		c.Try = func(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
			flights = append(flights, r.PathValue("flight"))
			return try(ctx, tx, id, r)
		}
	})
	a := h.do(http.MethodPost, h.srv.URL+"/flights/LX318/seats", nil)
	wantStatus(t, "try", a, http.StatusCreated)
	loc := a.header.Get("Location")
	if !strings.HasPrefix(loc, "https://air.example/api/flights/LX318/seats/") || len(flights) != 1 || flights[0] != "LX318" {
		t.Fatalf("Location %q, flights %q", loc, flights)
	}
	id := loc[strings.LastIndexByte(loc, '/')+1:]
	wantStatus(t, "confirm", h.do(http.MethodPut, h.srv.URL+"/flights/LX318/seats/"+id, nil), http.StatusNoContent)
	wantStatus(t, "old path", h.do(http.MethodPost, h.srv.URL+"/reservations", nil), http.StatusNotFound)

	// A body over MaxBody is refused before anything is recorded.
	big := newHarness(t, s, func(c *participant.Config) {
		c.MaxBody = 8
		try := c.Try
		c.Try = func(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
			if _, err := io.ReadAll(r.Body); err != nil {
				return participant.Reservation{}, fmt.Errorf("read body: %w", err)
			}
			return try(ctx, tx, id, r)
		}
	})
	req, _ := http.NewRequest(http.MethodPost, big.srv.URL+"/reservations", strings.NewReader("0123456789"))
	resp, err := big.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || big.app.count(t) != 0 {
		t.Errorf("big body: %d, %d business rows", resp.StatusCode, big.app.count(t))
	}
}

// TestHostFallbackWarns: without BaseURL the reservation URIs are built
// from the request's Host header, which a client chooses; the kit says so
// in its log, once.
func TestHostFallbackWarns(t *testing.T) {
	s := &server{backend: backends[0]} // SQLite: the links do not depend on the dialect
	for _, c := range []struct {
		name     string
		baseURL  string
		warnings int
	}{
		{"no BaseURL", "", 1},
		{"BaseURL", "http://seats.example", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var log syncBuffer
			h := newHarness(t, s, func(cfg *participant.Config) {
				cfg.BaseURL = c.baseURL
				cfg.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn}))
			})
			for range 3 {
				h.mustTry("", "")
			}
			if n := strings.Count(log.String(), "no BaseURL"); n != c.warnings {
				t.Errorf("%d warnings naming BaseURL, want %d:\n%s", n, c.warnings, log.String())
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
