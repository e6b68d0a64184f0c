package tccd_test

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/pebble"
)

func as(name string, role tccd.Role) context.Context {
	return tccd.WithPrincipal(context.Background(), tccd.Principal{Name: name, Role: role})
}

// TestOwnership: a client principal sees and acts on its own transactions
// only; another client's look exactly like missing ones. An admin, and a
// context without a principal (authentication off), see everything.
func TestOwnership(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	alice, bob, ops := as("alice", tccd.RoleClient), as("bob", tccd.RoleClient), as("ops", tccd.RoleAdmin)

	tx, err := e.coord.Begin(alice, tccd.BeginRequest{Participants: []tccd.Link{e.parts[0].link(0)}})
	if err != nil {
		t.Fatal(err)
	}
	if tx.CreatedBy != "alice" {
		t.Fatalf("CreatedBy = %q, want alice", tx.CreatedBy)
	}
	if got, err := e.coord.Get(alice, tx.ID); err != nil || got.CreatedBy != "alice" {
		t.Fatalf("owner Get = %v, %v", got, err)
	}
	_, missing := e.coord.Get(bob, "01NOSUCHTRANSACTION0000000")
	wantCode(t, missing, tccd.ENotFound)
	same := func(err error) {
		t.Helper()
		wantCode(t, err, tccd.ENotFound)
		if want := strings.ReplaceAll(tccd.ErrorMessage(missing), "01NOSUCHTRANSACTION0000000", tx.ID); tccd.ErrorMessage(err) != want {
			t.Errorf("message %q, want the missing-transaction message %q", tccd.ErrorMessage(err), want)
		}
		if tccd.ErrorTx(err) != nil {
			t.Error("the error carries the transaction")
		}
	}
	_, err = e.coord.Get(bob, tx.ID)
	same(err)
	_, _, err = e.coord.Enlist(bob, tx.ID, e.parts[1].link(0))
	same(err)
	_, err = e.coord.Confirm(bob, tx.ID, nil)
	same(err)
	_, err = e.coord.Cancel(bob, tx.ID)
	same(err)
	_, err = e.coord.Resolve(bob, tx.ID, tccd.StateConfirmed, "")
	same(err)
	got, err := e.coord.Get(ops, tx.ID)
	if err != nil || got.State != tccd.StateActive || len(got.Participants) != 1 || got.Version != tx.Version {
		t.Fatalf("after bob's attempts: %+v, %v; want it untouched", got, err)
	}
	if _, err := e.coord.Get(context.Background(), tx.ID); err != nil {
		t.Fatalf("Get without a principal: %v", err)
	}
	if _, added, err := e.coord.Enlist(ops, tx.ID, e.parts[1].link(0)); err != nil || !added {
		t.Fatalf("admin Enlist = %v, %v", added, err)
	}
	if got, err := e.coord.Confirm(alice, tx.ID, nil); err != nil || got.State != tccd.StateConfirmed {
		t.Fatalf("owner Confirm = %v, %v", got, err)
	}

	// Atomikos: the link set is the transaction; another client's set is
	// refused (403), its owner may repeat it.
	links := []tccd.Link{e.parts[0].link(0), e.parts[1].link(0)}
	one, err := e.coord.ConfirmLinks(alice, links, atomikos(links))
	if err != nil || one.CreatedBy != "alice" || one.State != tccd.StateConfirmed {
		t.Fatalf("ConfirmLinks = %+v, %v", one, err)
	}
	_, err = e.coord.ConfirmLinks(bob, links, atomikos(links))
	wantCode(t, err, tccd.EForbidden)
	_, err = e.coord.CancelLinks(bob, links, atomikos(links))
	wantCode(t, err, tccd.EForbidden)
	if _, err := e.coord.ConfirmLinks(alice, links, atomikos(links)); err != nil {
		t.Fatalf("owner repeats ConfirmLinks: %v", err)
	}
	if _, err := e.coord.CancelLinks(ops, links, atomikos(links)); err != nil {
		t.Fatalf("admin CancelLinks: %v", err)
	}
	fresh := []tccd.Link{e.parts[0].link(0)}
	c, err := e.coord.CancelLinks(bob, fresh, atomikos(fresh))
	if err != nil || c.CreatedBy != "bob" || c.State != tccd.StateCancelled {
		t.Fatalf("CancelLinks of a new set = %+v, %v", c, err)
	}
}

// TestResolveHeuristic: an operator resolves a heuristic transaction; the
// record changes, the participants hear nothing.
func TestResolveHeuristic(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	alice, ops := as("alice", tccd.RoleClient), as("ops", tccd.RoleAdmin)
	a, b := e.parts[0].link(0), e.parts[1].link(0)
	e.parts[1].svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 400, Delay: "200ms"})
	tx, err := e.coord.Begin(alice, tccd.BeginRequest{Participants: []tccd.Link{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	active, err := e.coord.Begin(alice, tccd.BeginRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.coord.Confirm(alice, tx.ID, nil)
	wantCode(t, err, tccd.EHeuristic)
	heur := tccd.ErrorTx(err)
	calls := e.parts[0].stats().ConfirmCalls + e.parts[1].stats().ConfirmCalls + e.parts[0].stats().CancelCalls + e.parts[1].stats().CancelCalls

	for _, bad := range []struct {
		to   tccd.State
		note string
		code tccd.Code
	}{
		{tccd.StateHeuristic, "", tccd.EInvalid},
		{tccd.StateActive, "", tccd.EInvalid},
		{tccd.StateConfirmed, strings.Repeat("x", tccd.MaxNoteLength+1), tccd.EInvalid},
	} {
		_, err := e.coord.Resolve(ops, tx.ID, bad.to, bad.note)
		wantCode(t, err, bad.code)
	}
	_, err = e.coord.Resolve(ops, active.ID, tccd.StateCancelled, "")
	wantCode(t, err, tccd.EConflict)

	got, err := e.coord.Resolve(ops, tx.ID, tccd.StateConfirmed, "b confirmed by phone")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != tccd.StateConfirmed || got.Reason != tccd.ReasonResolved || got.ResolvedBy != "ops" ||
		got.ResolutionNote != "b confirmed by phone" || got.CreatedBy != "alice" {
		t.Fatalf("resolved: %+v", got)
	}
	if !got.FinishedAt.Equal(heur.FinishedAt) || !got.DecidedAt.Equal(heur.DecidedAt) {
		t.Errorf("finished %v decided %v, want them kept (%v, %v)", got.FinishedAt, got.DecidedAt, heur.FinishedAt, heur.DecidedAt)
	}
	if got.Participants[1].State != tccd.ParticipantFailed {
		t.Errorf("participant b recorded as %s, want it kept failed", got.Participants[1].State)
	}
	// Repeating is a no-op; the other outcome is a conflict.
	again, err := e.coord.Resolve(ops, tx.ID, tccd.StateConfirmed, "other note")
	if err != nil || again.Version != got.Version || again.ResolutionNote != got.ResolutionNote {
		t.Fatalf("repeat = %+v, %v", again, err)
	}
	_, err = e.coord.Resolve(ops, tx.ID, tccd.StateCancelled, "")
	wantCode(t, err, tccd.EConflict)
	// The owner now reads it as confirmed.
	if c, err := e.coord.Confirm(alice, tx.ID, nil); err != nil || c.State != tccd.StateConfirmed {
		t.Fatalf("confirm after resolution = %v, %v", c, err)
	}
	now := e.parts[0].stats().ConfirmCalls + e.parts[1].stats().ConfirmCalls + e.parts[0].stats().CancelCalls + e.parts[1].stats().CancelCalls
	if now != calls {
		t.Errorf("participants got %d calls after the heuristic outcome, want none", now-calls)
	}
	// It survives a restart, and the heuristic list is empty.
	e.close()
	e.open()
	if st, err := e.coord.Get(ops, tx.ID); err != nil || st.State != tccd.StateConfirmed || st.ResolvedBy != "ops" {
		t.Fatalf("after restart: %+v, %v", st, err)
	}
	if list, _, err := e.coord.List(ops, tccd.Filter{State: tccd.StateHeuristic, Limit: 10}); err != nil || len(list) != 0 {
		t.Fatalf("heuristic list = %d, %v", len(list), err)
	}
}

// TestLinkPolicy: links the allowlist refuses are answered EInvalid
// wherever they come in, and nothing is stored.
func TestLinkPolicy(t *testing.T) {
	allow, err := tccd.ParseAllowlist([]string{"http://127.0.0.1:*"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Links = allow
	e := newEnv(t, cfg, 1)
	ctx := context.Background()
	ok := e.parts[0].link(0)
	exp := time.Now().Add(time.Hour)
	for _, uri := range []string{
		"http://169.254.169.254/latest/meta-data/iam",
		"http://metadata.google.internal/computeMetadata/v1/",
		"https://127.0.0.1:1/r/1", // scheme
		"http://[::1]:1/r/1",      // host
	} {
		bad := tccd.Link{URI: uri, Expires: exp}
		_, err := e.coord.Begin(ctx, tccd.BeginRequest{Participants: []tccd.Link{ok, bad}})
		wantCode(t, err, tccd.EInvalid)
		if !strings.Contains(tccd.ErrorMessage(err), "not an allowed destination") {
			t.Errorf("message %q does not say why", tccd.ErrorMessage(err))
		}
		_, err = e.coord.ConfirmLinks(ctx, []tccd.Link{ok, bad}, atomikos([]tccd.Link{ok, bad}))
		wantCode(t, err, tccd.EInvalid)
		_, err = e.coord.CancelLinks(ctx, []tccd.Link{bad}, atomikos([]tccd.Link{bad}))
		wantCode(t, err, tccd.EInvalid)
	}
	if list, _, _ := e.coord.List(ctx, tccd.Filter{Limit: 10}); len(list) != 0 {
		t.Fatalf("%d transactions stored from refused links", len(list))
	}
	tx := e.begin(time.Minute, ok)
	bad := tccd.Link{URI: "http://169.254.169.254/x", Expires: exp}
	_, _, err = e.coord.Enlist(ctx, tx.ID, bad)
	wantCode(t, err, tccd.EInvalid)
	_, err = e.coord.Confirm(ctx, tx.ID, []tccd.Link{bad})
	wantCode(t, err, tccd.EInvalid)
	got, _ := e.coord.Get(ctx, tx.ID)
	if got.Version != tx.Version || got.State != tccd.StateActive || len(got.Participants) != 1 {
		t.Fatalf("transaction changed by refused links: %+v", got)
	}
	if e.parts[0].stats().ConfirmCalls != 0 {
		t.Error("a participant was called")
	}
}

// TestDialRefusalIsPermanent: a link accepted by name whose address the
// allowlist refuses at dial time fails for good at the first attempt (it
// is not retried until it expires), is recorded on the participant, and
// nothing reaches the participant.
func TestDialRefusalIsPermanent(t *testing.T) {
	// localhost resolves to 127.0.0.1 (and maybe ::1); only 127.0.0.2 is
	// allowed. The link names a host, so the link-time check lets it pass
	// for the dial-time check to decide.
	allow, err := tccd.ParseAllowlist([]string{"127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	svc := testpart.NewTest(t, time.Minute)
	srv := httptest.NewServer(svc)
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().String()
	port = port[strings.LastIndex(port, ":")+1:]
	if _, err := strconv.Atoi(port); err != nil {
		t.Fatal(port)
	}
	store, err := pebble.Open(t.TempDir(), pebble.Options{CacheSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	caller := tccdhttp.NewCallerWith(tccdhttp.CallerConfig{Allow: allow})
	t.Cleanup(caller.Close)
	cfg := testConfig()
	cfg.Links = allow
	coord := tccd.NewCoordinator(cfg, store, caller, nil, nil)
	if err := coord.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { coord.Close() })

	r, err := svc.Try(context.Background(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	link := tccd.Link{URI: "http://localhost:" + port + "/reservations/" + r.ID, Expires: r.Expires}
	tx, err := coord.Begin(context.Background(), tccd.BeginRequest{Participants: []tccd.Link{link}})
	if err != nil {
		t.Fatalf("the link-time check refused a name: %v", err)
	}
	start := time.Now()
	_, err = coord.Confirm(context.Background(), tx.ID, nil)
	wantCode(t, err, tccd.ETimedOut)
	got := tccd.ErrorTx(err)
	if got.State != tccd.StateCancelled || got.Reason != tccd.ReasonParticipant {
		t.Fatalf("transaction %s/%s, want cancelled/participant", got.State, got.Reason)
	}
	p := got.Participants[0]
	if p.State != tccd.ParticipantFailed || p.Attempts != 1 || p.LastStatus != 0 || !strings.Contains(p.LastError, "not allowed") {
		t.Fatalf("participant recorded as %+v; want failed after one attempt, saying why", p)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("confirm took %v: the refusal was retried", d)
	}
	if st, err := svc.Stats(context.Background()); err != nil || st.ConfirmCalls != 0 || st.CancelCalls != 0 {
		t.Fatalf("the participant got %d confirms and %d cancels, want none", st.ConfirmCalls, st.CancelCalls)
	}
}
