// Package storetest is the conformance suite of tccd.Store: every store
// implementation runs Run from its own tests.
package storetest

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tccd/tccd"
)

// Opener opens a store over one backing location. Calling it again after
// the previous store was closed must reopen the same data.
type Opener func() (tccd.Store, error)

// Run runs the conformance suite. newOpener returns an Opener over a fresh,
// empty backing location for one subtest.
func Run(t *testing.T, newOpener func(t *testing.T) Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"CreateGetRoundTrip", testRoundTrip},
		{"CreateDuplicate", testCreateDuplicate},
		{"CreateOnlyInInitialStates", testCreateInitialStates},
		{"GetMissing", testGetMissing},
		{"UpdateCompareAndSet", testUpdateCAS},
		{"UpdateIllegalTransition", testIllegalTransition},
		{"UpdateMissing", testUpdateMissing},
		{"ConcurrentUpdatesOneWins", testConcurrentUpdates},
		{"ConcurrentCreatesOneWins", testConcurrentCreates},
		{"ListNewestFirstPaged", testListPaged},
		{"ListByState", testListByState},
		{"ListBadInput", testListBadInput},
		{"Unfinished", testUnfinished},
		{"UnfinishedPendingNotifications", testPendingNotifications},
		{"Purge", testPurge},
		{"ResolveHeuristic", testResolveHeuristic},
		{"Reopen", testReopen},
		{"ConcurrentUpdatesEachVersionOnce", testUpdatesEachVersionOnce},
		{"ConcurrentCreatesKeepTheWinner", testCreatesKeepTheWinner},
		{"ReopenAfterConcurrentWrites", testReopenAfterConcurrentWrites},
		{"UnfinishedDuringWrites", testUnfinishedDuringWrites},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newOpener(t))
		})
	}
}

func open(t *testing.T, o Opener) tccd.Store {
	t.Helper()
	s, err := o()
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var base = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)

// sample returns a transaction with every field set.
func sample(id string, created time.Time, state tccd.State) *tccd.Transaction {
	tx := &tccd.Transaction{
		ID: id, Protocol: tccd.ProtocolNative, Name: "trip", Labels: map[string]string{"team": "travel"},
		State: state, Reason: tccd.ReasonRequested, Timeout: 30 * time.Second,
		Deadline: created.Add(30 * time.Second), CreatedAt: created, UpdatedAt: created,
		Owner: "node-1", LeaseUntil: created.Add(time.Minute),
		CreatedBy: "billing", ResolvedBy: "ops", ResolutionNote: "checked by hand",
		Participants: []tccd.Participant{
			{URI: "http://127.0.0.1:1/a/" + id, Expires: created.Add(time.Hour), State: tccd.ParticipantPending,
				ConfirmURI: "http://127.0.0.1:1/a/" + id + "/confirm", CancelURI: "http://127.0.0.1:1/a/" + id + "/cancel"},
			{
				URI: "https://127.0.0.1:2/b/" + id, Expires: created.Add(2 * time.Hour), State: tccd.ParticipantConfirmed,
				Attempts: 3, LastStatus: 503, LastError: "HTTP 503", LastAttemptAt: created.Add(time.Second),
				LastDuration: 1500 * time.Microsecond, Style: tccd.StyleCompensate, CompensateURI: "https://127.0.0.1:2/b/" + id + "/undo",
			},
			{
				URI: tccd.MessageURI(1), Expires: created.Add(time.Minute), Style: tccd.StyleMessage, State: tccd.ParticipantPending,
				Message:        &tccd.Message{Subject: "orders.placed", Data: []byte(`{"order":"` + id + `"}`), Headers: map[string]string{"Content-Type": "application/json"}},
				FirstAttemptAt: created.Add(3 * time.Second), Attempts: 1, LastError: "nats: timeout",
			},
		},
		Barrier:     true,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Round:       &tccd.Round{N: 2, Committed: true, Keys: map[string]string{"http://127.0.0.1:1/a/" + id: "k1-" + id, "https://127.0.0.1:2/b/" + id: "k2-" + id}},
	}
	if state.Decided() {
		tx.DecidedAt = created.Add(time.Second)
	}
	if state.Final() {
		tx.FinishedAt = created.Add(2 * time.Second)
	}
	return tx
}

// mustCreate stores tx in its state. A record cannot be created in a
// final state (see tccd.CanCreate), so one is created in the state the
// coordinator passes through before it and then moved.
func mustCreate(t *testing.T, s tccd.Store, tx *tccd.Transaction) {
	t.Helper()
	want := tx.State
	path := []tccd.State{want}
	switch want {
	case tccd.StateCancelled:
		path = []tccd.State{tccd.StateCancelling, want}
	case tccd.StateConfirmed, tccd.StateHeuristic, tccd.StateCompensating:
		path = []tccd.State{tccd.StateConfirming, want}
	case tccd.StateCompensated:
		path = []tccd.State{tccd.StateConfirming, tccd.StateCompensating, want}
	}
	tx.State = path[0]
	if err := s.Create(context.Background(), tx, false); err != nil {
		t.Fatalf("Create(%s): %v", tx.ID, err)
	}
	for _, st := range path[1:] {
		tx.State = st
		if err := s.Update(context.Background(), tx, false); err != nil {
			t.Fatalf("Update(%s) to %s: %v", tx.ID, st, err)
		}
	}
}

func wantCode(t *testing.T, err error, code tccd.Code) {
	t.Helper()
	if got := tccd.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

// equal compares transactions, ignoring time zones.
func equal(t *testing.T, got, want *tccd.Transaction) {
	t.Helper()
	norm := func(tx *tccd.Transaction) *tccd.Transaction {
		c := tx.Clone()
		utc := func(tm *time.Time) {
			if !tm.IsZero() {
				*tm = tm.UTC()
			}
		}
		for _, tm := range []*time.Time{&c.Deadline, &c.CreatedAt, &c.UpdatedAt, &c.DecidedAt, &c.FinishedAt, &c.LeaseUntil} {
			utc(tm)
		}
		for i := range c.Participants {
			utc(&c.Participants[i].Expires)
			utc(&c.Participants[i].LastAttemptAt)
		}
		return c
	}
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("transaction differs:\n got  %+v\n want %+v", g, w)
	}
}

func testRoundTrip(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	for _, st := range tccd.States {
		tx := sample("rt-"+string(st), base, st)
		// A final state is reached by Updates after the Create.
		wantVersion := uint64(1)
		switch {
		case st == tccd.StateCompensated:
			wantVersion = 3
		case !tccd.CanCreate(st):
			wantVersion = 2
		}
		mustCreate(t, s, tx)
		if tx.Version != wantVersion {
			t.Fatalf("Version after Create = %d, want %d", tx.Version, wantVersion)
		}
		got, err := s.Get(ctx, tx.ID)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, got, tx)
		got.Participants[0].URI = "changed"
		again, _ := s.Get(ctx, tx.ID)
		if again.Participants[0].URI == "changed" {
			t.Fatal("Get returned shared memory")
		}
	}
}

// testCreateInitialStates: a record is born only in a state of the
// transition table's initial row (tccd.CanCreate); any other is refused
// and nothing is stored.
func testCreateInitialStates(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	for _, st := range append(append([]tccd.State(nil), tccd.States...), "bogus", tccd.StateNone) {
		tx := sample("init-"+string(st), base, st)
		err := s.Create(ctx, tx, true)
		if tccd.CanCreate(st) {
			if err != nil {
				t.Errorf("Create in %q: %v", st, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Create in %q succeeded", st)
			continue
		}
		if _, gerr := s.Get(ctx, tx.ID); tccd.ErrorCode(gerr) != tccd.ENotFound {
			t.Errorf("after a refused Create in %q, Get = %v, want not found", st, gerr)
		}
	}
}

func testCreateDuplicate(t *testing.T, o Opener) {
	s := open(t, o)
	tx := sample("dup", base, tccd.StateActive)
	mustCreate(t, s, tx)
	other := sample("dup", base.Add(time.Second), tccd.StateConfirming)
	wantCode(t, s.Create(context.Background(), other, true), tccd.EConflict)
	got, _ := s.Get(context.Background(), "dup")
	equal(t, got, tx)
}

func testGetMissing(t *testing.T, o Opener) {
	s := open(t, o)
	_, err := s.Get(context.Background(), "nope")
	wantCode(t, err, tccd.ENotFound)
}

func testUpdateCAS(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	tx := sample("cas", base, tccd.StateActive)
	mustCreate(t, s, tx)
	stale := tx.Clone()

	tx.State = tccd.StateConfirming
	tx.DecidedAt = base.Add(time.Second)
	if err := s.Update(ctx, tx, true); err != nil {
		t.Fatal(err)
	}
	if tx.Version != 2 {
		t.Fatalf("Version after Update = %d, want 2", tx.Version)
	}
	stale.State = tccd.StateCancelling
	wantCode(t, s.Update(ctx, stale, false), tccd.EConflict)
	if stale.Version != 1 {
		t.Fatalf("failed Update changed Version to %d", stale.Version)
	}
	got, _ := s.Get(ctx, "cas")
	equal(t, got, tx)

	// A self-transition records progress.
	tx.Participants[0].Attempts = 7
	if err := s.Update(ctx, tx, false); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Get(ctx, "cas")
	equal(t, got, tx)
}

func testIllegalTransition(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	for _, from := range tccd.States {
		for _, to := range tccd.States {
			if tccd.CanTransition(from, to) {
				continue
			}
			id := fmt.Sprintf("ill-%s-%s", from, to)
			tx := sample(id, base, from)
			mustCreate(t, s, tx)
			next := tx.Clone()
			next.State = to
			wantCode(t, s.Update(ctx, next, false), tccd.EConflict)
			got, _ := s.Get(ctx, id)
			equal(t, got, tx)
		}
	}
}

func testUpdateMissing(t *testing.T, o Opener) {
	s := open(t, o)
	tx := sample("ghost", base, tccd.StateActive)
	tx.Version = 1
	wantCode(t, s.Update(context.Background(), tx, false), tccd.ENotFound)
}

func testConcurrentUpdates(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	tx := sample("race", base, tccd.StateActive)
	mustCreate(t, s, tx)
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			next := tx.Clone()
			next.State = tccd.StateConfirming
			if i%2 == 1 {
				next.State = tccd.StateCancelling
			}
			err := s.Update(ctx, next, true)
			if err == nil {
				mu.Lock()
				winners++
				mu.Unlock()
				return
			}
			if tccd.ErrorCode(err) != tccd.EConflict {
				t.Errorf("Update: %v", err)
			}
		}(i)
	}
	wg.Wait()
	if winners != 1 {
		t.Fatalf("%d concurrent updates won, want exactly 1", winners)
	}
	got, _ := s.Get(ctx, "race")
	if got.Version != 2 || got.State == tccd.StateActive {
		t.Fatalf("after race: version %d state %s", got.Version, got.State)
	}
}

func testConcurrentCreates(t *testing.T, o Opener) {
	s := open(t, o)
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Create(context.Background(), sample("once", base, tccd.StateConfirming), true)
			if err == nil {
				mu.Lock()
				winners++
				mu.Unlock()
			} else if tccd.ErrorCode(err) != tccd.EConflict {
				t.Errorf("Create: %v", err)
			}
		}()
	}
	wg.Wait()
	if winners != 1 {
		t.Fatalf("%d concurrent creates won, want exactly 1", winners)
	}
}

func ids(txs []*tccd.Transaction) []string {
	out := make([]string, len(txs))
	for i, tx := range txs {
		out[i] = tx.ID
	}
	return out
}

func testListPaged(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	var want []string
	for i := 0; i < 7; i++ {
		id := fmt.Sprintf("l%02d", i)
		mustCreate(t, s, sample(id, base.Add(time.Duration(i)*time.Millisecond), tccd.StateActive))
		want = append([]string{id}, want...)
	}
	// Same creation instant: ordered by id, descending.
	mustCreate(t, s, sample("l06b", base.Add(6*time.Millisecond), tccd.StateActive))
	want = append([]string{"l06b"}, want...)

	var got []string
	cursor := ""
	pages := 0
	for {
		txs, next, err := s.List(ctx, tccd.Filter{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, ids(txs)...)
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		cursor = next
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List order = %v, want %v", got, want)
	}
	if pages != 3 {
		t.Fatalf("pages = %d, want 3", pages)
	}
	// A limit equal to the count ends with no cursor.
	txs, next, err := s.List(ctx, tccd.Filter{Limit: len(want)})
	if err != nil || len(txs) != len(want) || next != "" {
		t.Fatalf("List(limit=%d) = %d items, next %q, err %v", len(want), len(txs), next, err)
	}
}

func testListByState(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	for i, st := range tccd.States {
		mustCreate(t, s, sample("st-"+string(st), base.Add(time.Duration(i)*time.Second), st))
	}
	tx := sample("moves", base.Add(time.Minute), tccd.StateActive)
	mustCreate(t, s, tx)
	tx.State = tccd.StateCancelling
	if err := s.Update(ctx, tx, false); err != nil {
		t.Fatal(err)
	}
	for _, st := range tccd.States {
		txs, _, err := s.List(ctx, tccd.Filter{State: st, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"st-" + string(st)}
		if st == tccd.StateCancelling {
			want = []string{"moves", "st-cancelling"}
		}
		if got := ids(txs); !reflect.DeepEqual(got, want) {
			t.Errorf("List(state=%s) = %v, want %v", st, got, want)
		}
	}
}

func testListBadInput(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	mustCreate(t, s, sample("x", base, tccd.StateActive))
	for _, f := range []tccd.Filter{
		{Limit: 0},
		{Limit: 5, State: "bogus"},
		{Limit: 5, Cursor: "!!!not base64"},
		{Limit: 5, Cursor: "AA"},
	} {
		_, _, err := s.List(ctx, f)
		wantCode(t, err, tccd.EInvalid)
	}
}

func testUnfinished(t *testing.T, o Opener) {
	s := open(t, o)
	for i, st := range tccd.States {
		mustCreate(t, s, sample("u-"+string(st), base.Add(time.Duration(i)*time.Second), st))
	}
	got := map[string]bool{}
	err := s.Unfinished(context.Background(), func(tx *tccd.Transaction) error {
		got[tx.ID] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, st := range tccd.States {
		if !st.Final() {
			want["u-"+string(st)] = true
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Unfinished = %v, want %v", got, want)
	}
	stop := fmt.Errorf("stop")
	calls := 0
	err = s.Unfinished(context.Background(), func(*tccd.Transaction) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("Unfinished did not stop on error: calls %d err %v", calls, err)
	}
}

// testPendingNotifications: a final transaction whose notification is
// pending is yielded by Unfinished (recovery resumes its delivery) until
// the notification is delivered or failed; a record keeps every field of
// its notification.
func testPendingNotifications(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	tx := sample("notify", base, tccd.StateConfirmed)
	tx.Notify = "https://shop.example/outcome"
	tx.Notification = tccd.Notification{State: tccd.NotificationPending, DeliveryID: "d-1", Attempts: 1, LastStatus: 503, LastError: "HTTP 503", LastAttemptAt: base.Add(time.Minute)}
	mustCreate(t, s, tx)
	quiet := sample("quiet", base, tccd.StateConfirmed)
	mustCreate(t, s, quiet)
	unfinished := func() map[string]bool {
		got := map[string]bool{}
		if err := s.Unfinished(ctx, func(tx *tccd.Transaction) error { got[tx.ID] = true; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := unfinished(); !reflect.DeepEqual(got, map[string]bool{"notify": true}) {
		t.Fatalf("Unfinished = %v, want the pending notification only", got)
	}
	got, err := s.Get(ctx, "notify")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, got, tx)
	for _, st := range []tccd.NotificationState{tccd.NotificationPending, tccd.NotificationDelivered} {
		got.Notification.State, got.Notification.Attempts = st, got.Notification.Attempts+1
		if err := s.Update(ctx, got, false); err != nil {
			t.Fatalf("record the notification %s: %v", st, err)
		}
	}
	if got := unfinished(); len(got) != 0 {
		t.Fatalf("Unfinished after delivery = %v, want none", got)
	}
	back, err := s.Get(ctx, "notify")
	if err != nil || back.Notification.State != tccd.NotificationDelivered || back.Notification.Attempts != 3 {
		t.Fatalf("after delivery: %+v, %v", back, err)
	}
}

func testPurge(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	// Finished at base+2s+i·1s for i in 0..4; one unfinished, old.
	for i := 0; i < 5; i++ {
		mustCreate(t, s, sample(fmt.Sprintf("p%d", i), base.Add(time.Duration(i)*time.Second), tccd.StateConfirmed))
	}
	mustCreate(t, s, sample("old-active", base.Add(-time.Hour), tccd.StateActive))
	cutoff := base.Add(4500 * time.Millisecond) // p0, p1, p2 finished before it
	n, err := s.Purge(ctx, cutoff, 2)
	if err != nil || n != 2 {
		t.Fatalf("Purge(limit 2) = %d, %v; want 2", n, err)
	}
	n, err = s.Purge(ctx, cutoff, 10)
	if err != nil || n != 1 {
		t.Fatalf("second Purge = %d, %v; want 1", n, err)
	}
	for _, id := range []string{"p0", "p1", "p2"} {
		_, err := s.Get(ctx, id)
		wantCode(t, err, tccd.ENotFound)
	}
	txs, _, _ := s.List(ctx, tccd.Filter{Limit: 10})
	if got, want := ids(txs), []string{"p4", "p3", "old-active"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("List after purge = %v, want %v", got, want)
	}
	txs, _, _ = s.List(ctx, tccd.Filter{Limit: 10, State: tccd.StateConfirmed})
	if got, want := ids(txs), []string{"p4", "p3"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("List(confirmed) after purge = %v, want %v", got, want)
	}
}

// testResolveHeuristic: an operator's resolution moves a heuristic
// transaction to confirmed or cancelled (the one way out of a final
// state), keeping its finish time; the indexes follow.
func testResolveHeuristic(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	for i, to := range []tccd.State{tccd.StateConfirmed, tccd.StateCancelled} {
		id := "resolve-" + string(to)
		tx := sample(id, base.Add(time.Duration(i)*time.Second), tccd.StateHeuristic)
		tx.Reason, tx.ResolvedBy, tx.ResolutionNote = tccd.ReasonMixedOutcome, "", ""
		mustCreate(t, s, tx)
		tx.State, tx.Reason = to, tccd.ReasonResolved
		tx.ResolvedBy, tx.ResolutionNote = "ops", "participant b confirmed by hand"
		tx.UpdatedAt = tx.UpdatedAt.Add(time.Hour)
		if err := s.Update(ctx, tx, true); err != nil {
			t.Fatalf("heuristic → %s: %v", to, err)
		}
		got, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, got, tx)
		// Final again: no way back to heuristic, nor on to the other outcome.
		for _, next := range []tccd.State{tccd.StateHeuristic, tccd.StateConfirmed, tccd.StateCancelled} {
			if next == to {
				continue
			}
			c := tx.Clone()
			c.State = next
			wantCode(t, s.Update(ctx, c, false), tccd.EConflict)
		}
	}
	txs, _, err := s.List(ctx, tccd.Filter{State: tccd.StateHeuristic, Limit: 10})
	if err != nil || len(txs) != 0 {
		t.Fatalf("List(heuristic) after resolving = %v, %v; want none", ids(txs), err)
	}
	for _, st := range []tccd.State{tccd.StateConfirmed, tccd.StateCancelled} {
		txs, _, err := s.List(ctx, tccd.Filter{State: st, Limit: 10})
		if got, want := ids(txs), []string{"resolve-" + string(st)}; err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("List(%s) = %v, %v; want %v", st, got, err, want)
		}
	}
	// The finished index still finds them, by their original finish time.
	n, err := s.Purge(ctx, base.Add(time.Minute), 10)
	if err != nil || n != 2 {
		t.Fatalf("Purge = %d, %v; want 2", n, err)
	}
	txs, _, _ = s.List(ctx, tccd.Filter{Limit: 10})
	if len(txs) != 0 {
		t.Fatalf("List after purge = %v, want none", ids(txs))
	}
}

func testReopen(t *testing.T, o Opener) {
	s, err := o()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx := sample("durable", base, tccd.StateActive)
	if err := s.Create(ctx, tx, false); err != nil {
		t.Fatal(err)
	}
	tx.State = tccd.StateConfirming
	if err := s.Update(ctx, tx, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, o)
	got, err := s.Get(ctx, "durable")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, got, tx)
	found := false
	_ = s.Unfinished(ctx, func(u *tccd.Transaction) error { found = found || u.ID == "durable"; return nil })
	if !found {
		t.Fatal("reopened store lost the unfinished index")
	}
}

// The cases below matter most for a store shared by several processes:
// many writers of one record, racing creators of one id, a new store on
// the same data, and recovery's scan while others write.

// testUpdatesEachVersionOnce: writers keep updating one transaction, each
// re-reading after a conflict. Every version is won by exactly one
// Update, the versions have no gaps, and the stored record is the last
// winner's.
func testUpdatesEachVersionOnce(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	tx := sample("contended", base, tccd.StateActive)
	mustCreate(t, s, tx)
	const writers, wins = 8, 6
	var mu sync.Mutex
	winner := map[uint64]*tccd.Transaction{} // version → what its winner wrote
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for won := 0; won < wins; {
				cur, err := s.Get(ctx, "contended")
				if err != nil {
					t.Errorf("Get: %v", err)
					return
				}
				cur.Name = fmt.Sprintf("writer %d, win %d", g, won)
				cur.Participants[0].Attempts++
				err = s.Update(ctx, cur, g%2 == 0)
				switch {
				case err == nil:
					won++
					mu.Lock()
					if prev := winner[cur.Version]; prev != nil {
						t.Errorf("version %d won twice: by %q and %q", cur.Version, prev.Name, cur.Name)
					}
					winner[cur.Version] = cur.Clone()
					mu.Unlock()
				case tccd.ErrorCode(err) != tccd.EConflict:
					t.Errorf("Update: %v", err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	last := uint64(1 + writers*wins)
	for v := uint64(2); v <= last; v++ {
		if winner[v] == nil {
			t.Fatalf("version %d was won by no update (versions up to %d)", v, last)
		}
	}
	got, err := s.Get(ctx, "contended")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != last {
		t.Fatalf("stored version %d, want %d", got.Version, last)
	}
	equal(t, got, winner[last])
	if got.Participants[0].Attempts != writers*wins {
		t.Fatalf("attempts %d, want %d: an update was lost", got.Participants[0].Attempts, writers*wins)
	}
}

// testCreatesKeepTheWinner: creators race on each of several ids with
// different records. One wins each id, the others get EConflict, and the
// stored record is the winner's.
func testCreatesKeepTheWinner(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	const ids, racers = 8, 8
	for i := 0; i < ids; i++ {
		id := fmt.Sprintf("raced-%d", i)
		var mu sync.Mutex
		var won []*tccd.Transaction
		var wg sync.WaitGroup
		for g := 0; g < racers; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				tx := sample(id, base.Add(time.Duration(g)*time.Millisecond), tccd.StateConfirming)
				tx.Name = fmt.Sprintf("racer %d", g)
				err := s.Create(ctx, tx, g%2 == 0)
				if err == nil {
					mu.Lock()
					won = append(won, tx)
					mu.Unlock()
				} else if tccd.ErrorCode(err) != tccd.EConflict {
					t.Errorf("Create: %v", err)
				}
			}(g)
		}
		wg.Wait()
		if len(won) != 1 {
			t.Fatalf("%s: %d creates won, want exactly 1", id, len(won))
		}
		got, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, got, won[0])
	}
}

// testReopenAfterConcurrentWrites: writers create and move transactions
// at once, durable or not; a final durable write stands for the caller's
// next decision. A store opened again on the same data sees every record
// as last acknowledged, in List and in Unfinished too.
func testReopenAfterConcurrentWrites(t *testing.T, o Opener) {
	s, err := o()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const writers, each = 8, 6
	var mu sync.Mutex
	acked := map[string]*tccd.Transaction{}
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				tx := sample(fmt.Sprintf("w%d-%d", g, i), base.Add(time.Duration(g*each+i)*time.Millisecond), tccd.StateActive)
				// Each ends in another place: active, confirming, confirmed.
				steps := []tccd.State{tccd.StateConfirming, tccd.StateConfirmed}[:i%3]
				if err := s.Create(ctx, tx, i%2 == 0); err != nil {
					t.Errorf("Create: %v", err)
					return
				}
				for _, st := range steps {
					tx.State = st
					if err := s.Update(ctx, tx, st == tccd.StateConfirming); err != nil {
						t.Errorf("Update to %s: %v", st, err)
						return
					}
				}
				mu.Lock()
				acked[tx.ID] = tx.Clone()
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	if t.Failed() {
		s.Close()
		return
	}
	last := sample("last", base.Add(time.Hour), tccd.StateConfirming)
	if err := s.Create(ctx, last, true); err != nil {
		t.Fatal(err)
	}
	acked[last.ID] = last
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, o)
	wantUnfinished := map[string]bool{}
	for id, want := range acked {
		got, err := s.Get(ctx, id)
		if err != nil {
			t.Fatalf("after reopening, Get(%s): %v", id, err)
		}
		equal(t, got, want)
		if !want.State.Final() {
			wantUnfinished[id] = true
		}
	}
	txs, _, err := s.List(ctx, tccd.Filter{Limit: 1000})
	if err != nil || len(txs) != len(acked) {
		t.Fatalf("after reopening, List = %d transactions, %v; want %d", len(txs), err, len(acked))
	}
	got := map[string]bool{}
	if err := s.Unfinished(ctx, func(tx *tccd.Transaction) error { got[tx.ID] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, wantUnfinished) {
		t.Fatalf("after reopening, Unfinished = %d transactions, want %d", len(got), len(wantUnfinished))
	}
}

// testUnfinishedDuringWrites: recovery's scan runs while others create,
// decide, finish and purge transactions (and fn itself reads the store,
// as the coordinator's does). No scan fails, and each yields every
// transaction that stayed unfinished throughout.
func testUnfinishedDuringWrites(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	stable := map[string]bool{}
	for i := 0; i < 40; i++ {
		tx := sample(fmt.Sprintf("stable-%02d", i), base.Add(time.Duration(i)*time.Millisecond), tccd.StateActive)
		mustCreate(t, s, tx)
		stable[tx.ID] = true
	}
	const writers, each = 4, 15
	var wg sync.WaitGroup
	var writing atomic.Int32
	writing.Store(writers)
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			defer writing.Add(-1)
			for i := 0; i < each; i++ {
				tx := sample(fmt.Sprintf("moving-%d-%02d", g, i), base.Add(-time.Hour), tccd.StateConfirming)
				if err := s.Create(ctx, tx, true); err != nil {
					t.Errorf("Create: %v", err)
					return
				}
				tx.State = tccd.StateConfirmed
				if err := s.Update(ctx, tx, false); err != nil {
					t.Errorf("Update: %v", err)
					return
				}
				if i%5 == 4 {
					if _, err := s.Purge(ctx, base.Add(time.Hour), 100); err != nil {
						t.Errorf("Purge: %v", err)
						return
					}
				}
			}
		}(g)
	}
	scans := 0
	for done := false; !done; scans++ {
		// Until a scan that starts after the writers are done.
		done = writing.Load() == 0
		seen := map[string]bool{}
		err := s.Unfinished(ctx, func(tx *tccd.Transaction) error {
			seen[tx.ID] = true
			if _, err := s.Get(ctx, tx.ID); err != nil && tccd.ErrorCode(err) != tccd.ENotFound {
				return err
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Unfinished during writes (scan %d): %v", scans, err)
		}
		for id := range stable {
			if !seen[id] {
				t.Fatalf("scan %d missed %s, unfinished throughout", scans, id)
			}
		}
	}
	wg.Wait()
	t.Logf("%d scans", scans)
}
