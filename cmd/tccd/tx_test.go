package main

import (
	"bytes"
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
	"github.com/tccd/tccd/pebble"
)

// adminEnv is a real coordinator with authentication on, served over
// HTTP on loopback: alice and bob are clients, ops an admin. Its
// participants answer PUT and DELETE of /ok/* with 204; /refuse/* refuses
// confirms with 400.
type adminEnv struct {
	url    string
	part   string
	broker *tccd.Broker
	tokens map[string]string // by name
	alice  *client.Client
}

func newAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	e := &adminEnv{tokens: map[string]string{}}
	var lines []string
	for _, p := range []struct{ name, role string }{{"alice", "client"}, {"bob", "client"}, {"ops", "admin"}} {
		tok, err := tccdhttp.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[p.name] = tok
		lines = append(lines, p.name+" "+p.role+" "+tccdhttp.HashToken(tok))
	}
	toks, err := tccdhttp.ParseTokens(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }
	mux.HandleFunc("PUT /ok/{n}", ok)
	mux.HandleFunc("DELETE /ok/{n}", ok)
	mux.HandleFunc("PUT /refuse/{n}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadRequest) })
	mux.HandleFunc("DELETE /refuse/{n}", ok)
	part := httptest.NewServer(mux)
	t.Cleanup(part.Close)
	e.part = part.URL

	store, err := pebble.Open(t.TempDir(), pebble.Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	caller := tccdhttp.NewCaller()
	t.Cleanup(caller.Close)
	e.broker = tccd.NewBroker(0, 0, nil)
	cfg := tccd.Config{RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, ConfirmWait: 5 * time.Second, Events: e.broker}
	coord := tccd.NewCoordinator(cfg, store, caller, nil, nil)
	if err := coord.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { coord.Close() })
	server := tccdhttp.NewServer(coord, tccdhttp.ServerConfig{Tokens: toks}, nil)
	srv := httptest.NewServer(server)
	t.Cleanup(func() {
		server.Shutdown(context.Background())
		srv.Close()
	})
	e.url = srv.URL
	if e.alice, err = client.New(e.url, client.WithHeader("Authorization", "Bearer "+e.tokens["alice"])); err != nil {
		t.Fatal(err)
	}
	return e
}

// begin begins a transaction of alice's with participants at paths.
func (e *adminEnv) begin(t *testing.T, paths ...string) *client.Tx {
	t.Helper()
	var links []client.Link
	for _, p := range paths {
		links = append(links, client.Link{URI: e.part + p, Expires: time.Now().Add(time.Minute)})
	}
	tx, err := e.alice.Begin(context.Background(), client.WithName("trip"), client.WithParticipants(links...))
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// get reads a path of the API as who, as it comes.
func (e *adminEnv) get(t *testing.T, who, path string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+e.tokens[who])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// cli runs tccd with args as who (a token's name, or "" for none), with
// the server in the environment.
func (e *adminEnv) cli(who string, args ...string) (stdout, stderr string, err error) {
	env := map[string]string{"TCCD_SERVER": e.url}
	if who != "" {
		env["TCCD_TOKEN"] = e.tokens[who]
	}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = run(ctx, args, &out, &errOut, fakeEnv(env))
	return out.String(), errOut.String(), err
}

// wantFailure checks a command that failed with the coordinator's
// message: exit 1, one line, nothing on stdout.
func wantFailure(t *testing.T, stdout string, err error, msg string) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("no error; stdout %q", stdout)
	case exitCode(err) != 1:
		t.Errorf("exit %d for %v", exitCode(err), err)
	case strings.Contains(err.Error(), "\n") || strings.HasPrefix(err.Error(), "tccd:"):
		t.Errorf("error %q: want one line, without the prefix main adds", err)
	case !strings.Contains(err.Error(), msg):
		t.Errorf("error %q, want %q", err, msg)
	}
	if stdout != "" {
		t.Errorf("stdout %q", stdout)
	}
}

func TestTxList(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	first := e.begin(t, "/ok/1")
	second := e.begin(t, "/ok/2", "/ok/3")
	if _, err := first.Cancel(context.Background()); err != nil {
		t.Fatal(err)
	}

	out, _, err := e.cli("ops", "tx", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") || !strings.HasPrefix(lines[1], second.ID()+"  active ") ||
		!strings.Contains(lines[1], "2 pending") || !strings.Contains(lines[2], "1 cancelled") {
		t.Fatalf("table:\n%s", out)
	}
	// Aligned columns: STATE starts at the same place on every line.
	col := strings.Index(lines[0], "STATE")
	for _, l := range lines[1:] {
		if l[col-2:col] != "  " || l[col] == ' ' {
			t.Errorf("column STATE at %d, line %q", col, l)
		}
	}

	out, _, err = e.cli("ops", "tx", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if raw := e.get(t, "ops", "/api/v1/transactions"); out != strings.TrimSuffix(string(raw), "\n")+"\n" {
		t.Fatalf("--json %q, the API %q", out, raw)
	}

	out, stderr, err := e.cli("ops", "tx", "list", "--limit", "1")
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(out, second.ID()) || !strings.HasPrefix(stderr, "more: tccd tx list --cursor ") {
		t.Fatalf("--limit 1: %v\n%s%s", err, out, stderr)
	}
	cursor := strings.TrimSpace(strings.TrimPrefix(stderr, "more: tccd tx list --cursor "))
	out, _, err = e.cli("ops", "tx", "list", "--limit", "1", "--cursor", cursor)
	if err != nil || !strings.Contains(out, first.ID()) {
		t.Fatalf("--cursor: %v\n%s", err, out)
	}
	out, _, err = e.cli("ops", "tx", "list", "--state", "heuristic")
	if err != nil || out != "no transactions\n" {
		t.Fatalf("none: %v %q", err, out)
	}

	// Errors: the coordinator's message on one line, exit 1.
	out, _, err = e.cli("alice", "tx", "list")
	wantFailure(t, out, err, "(403 forbidden)")
	out, _, err = e.cli("", "tx", "list")
	wantFailure(t, out, err, "(401 unauthorized)")
	out, _, err = e.cli("ops", "tx", "list", "--state", "finished")
	wantFailure(t, out, err, "(400 invalid)")
	out, _, err = e.cli("ops", "tx", "list", "--server", "http://127.0.0.1:1")
	wantFailure(t, out, err, "cannot reach the coordinator at http://127.0.0.1:1: dial tcp")
}

func TestTxShowConfirmCancel(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	tx := e.begin(t, "/ok/1", "/ok/2")

	// The ID may come before or after the flags.
	out, _, err := e.cli("alice", "tx", "show", "--timeout", "10s", tx.ID())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Transaction  " + tx.ID() + "\n", "State        active\n", "Name         trip\n", "Created      ", " by alice\n",
		"PARTICIPANT", e.part + "/ok/1  pending"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	out, _, err = e.cli("alice", "tx", "show", tx.ID(), "--json")
	if err != nil || out != string(bytes.TrimSuffix(e.get(t, "alice", "/api/v1/transactions/"+tx.ID()), []byte("\n")))+"\n" {
		t.Fatalf("show --json: %v %q", err, out)
	}

	out, _, err = e.cli("bob", "tx", "show", tx.ID())
	wantFailure(t, out, err, "(404 not_found)")
	out, _, err = e.cli("ops", "tx", "show", "nope")
	wantFailure(t, out, err, "(404 not_found)")

	out, _, err = e.cli("alice", "tx", "confirm", tx.ID())
	if err != nil || !strings.Contains(out, "State        confirmed") || !strings.Contains(out, e.part+"/ok/2  confirmed  1 ") {
		t.Fatalf("confirm: %v\n%s", err, out)
	}
	out, _, err = e.cli("ops", "tx", "confirm", tx.ID(), "--json")
	var got api.Transaction
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.State != "confirmed" || strings.Count(out, "\n") != 1 {
		t.Fatalf("confirm again --json: %v %q", err, out)
	}
	out, _, err = e.cli("alice", "tx", "cancel", tx.ID())
	wantFailure(t, out, err, "state confirmed")
	var ce *client.ConflictError
	if !errors.As(err, &ce) {
		t.Errorf("cancel of a confirmed transaction: %T", err)
	}

	other := e.begin(t, "/ok/3")
	out, _, err = e.cli("alice", "tx", "cancel", other.ID())
	if err != nil || !strings.Contains(out, "State        cancelled") {
		t.Fatalf("cancel: %v\n%s", err, out)
	}
}

func TestTxResolveAndPurge(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	tx := e.begin(t, "/ok/1", "/refuse/1")
	out, _, err := e.cli("alice", "tx", "confirm", tx.ID())
	wantFailure(t, out, err, "participants: ")
	if !errors.Is(err, client.ErrHeuristic) {
		t.Fatalf("confirm: %v", err)
	}

	out, _, err = e.cli("alice", "tx", "resolve", tx.ID(), "--state", "cancelled")
	wantFailure(t, out, err, "(403 forbidden)")
	out, _, err = e.cli("ops", "tx", "resolve", tx.ID(), "--state", "cancelled", "--note", "refunded ok/1 by hand")
	if err != nil || !strings.Contains(out, "State        cancelled (resolved)") || !strings.Contains(out, "Resolved     by ops: refunded ok/1 by hand") {
		t.Fatalf("resolve: %v\n%s", err, out)
	}
	out, _, err = e.cli("ops", "tx", "resolve", tx.ID(), "--state", "confirmed")
	wantFailure(t, out, err, "(409 conflict)")

	out, _, err = e.cli("ops", "purge")
	if err != nil || out != "purged 0 transactions\n" {
		t.Fatalf("purge: %v %q", err, out)
	}
	out, _, err = e.cli("ops", "purge", "--json")
	if err != nil || out != `{"purged":0}`+"\n" {
		t.Fatalf("purge --json: %v %q", err, out)
	}
	out, _, err = e.cli("bob", "purge")
	wantFailure(t, out, err, "(403 forbidden)")
}

// syncBuffer is a bytes.Buffer for a writer and a reader in different
// goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// watch runs tccd tx watch until the returned stop is called; stop
// returns its error.
func (e *adminEnv) watch(t *testing.T, who string, args ...string) (out, errOut *syncBuffer, stop func() error) {
	t.Helper()
	out, errOut = &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	env := map[string]string{"TCCD_SERVER": e.url, "TCCD_TOKEN": e.tokens[who]}
	go func() { done <- run(ctx, append([]string{"tx", "watch"}, args...), out, errOut, fakeEnv(env)) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return out, errOut, stop
}

func TestTxWatch(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	all, _, stopAll := e.watch(t, "ops")
	states, _, stopStates := e.watch(t, "ops", "--type", "state", "--json")
	waitFor(t, "two subscribers", func() bool { return e.broker.Subscribers() == 2 })

	tx := e.begin(t, "/ok/1")
	if _, err := tx.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the confirmed line", func() bool { return strings.Contains(all.String(), "confirming → confirmed") })
	waitFor(t, "the confirmed event", func() bool { return strings.Contains(states.String(), `"state":"confirmed"`) })
	if err := stopAll(); err != nil {
		t.Fatalf("interrupted watch: %v", err)
	}
	if err := stopStates(); err != nil {
		t.Fatalf("interrupted watch: %v", err)
	}
	for _, want := range []string{tx.ID() + "  state    active\n", "state    active → confirming (requested)", "attempt  confirm #1 " + e.part + "/ok/1 → 204"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("watch lacks %q:\n%s", want, all)
		}
	}
	var first api.Event
	lines := strings.Split(strings.TrimSpace(states.String()), "\n")
	for _, l := range lines {
		var ev api.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Type != api.EventState {
			t.Fatalf("--json line %q: %v", l, err)
		}
		if first.Seq == 0 {
			first = ev
		}
	}
	if len(lines) != 3 {
		t.Errorf("state events:\n%s", states)
	}

	// --since replays what the coordinator keeps after a seq.
	since, _, stopSince := e.watch(t, "ops", "--transaction", tx.ID(), "--since", "1", "--type", "state")
	waitFor(t, "the replay", func() bool { return strings.Contains(since.String(), "confirming → confirmed") })
	stopSince()
	if strings.Contains(since.String(), "state    active\n") || !strings.Contains(since.String(), "active → confirming") {
		t.Errorf("replay after seq 1:\n%s", since)
	}

	// A client sees only its own transactions.
	bobs, _, stopBob := e.watch(t, "bob")
	waitFor(t, "bob's subscription", func() bool { return e.broker.Subscribers() == 1 })
	if _, err := e.begin(t, "/ok/2").Cancel(context.Background()); err != nil {
		t.Fatal(err)
	}
	ops, _, stopOps := e.watch(t, "ops", "--since", "1")
	waitFor(t, "the cancel, seen by ops", func() bool { return strings.Contains(ops.String(), "cancelling → cancelled") })
	stopOps()
	stopBob()
	if bobs.String() != "" {
		t.Errorf("bob saw alice's events:\n%s", bobs)
	}

	_, _, err := e.cli("ops", "tx", "watch", "--type", "everything")
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "--type must be state or attempt") {
		t.Errorf("bad type: %v", err)
	}
	out, _, err := e.cli("ops", "tx", "watch", "--state", "finished")
	wantFailure(t, out, err, "(400 invalid)")
	out, _, err = e.cli("ops", "tx", "watch", "--server", "http://127.0.0.1:1")
	wantFailure(t, out, err, "cannot reach the coordinator")
}

// TestTxWatchResumes: when the stream ends, watch opens it again after
// the last event it printed.
func TestTxWatchResumes(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var lastIDs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastIDs = append(lastIDs, r.Header.Get(api.HeaderLastEventID))
		n := len(lastIDs)
		mu.Unlock()
		w.Header().Set("Content-Type", api.MediaEventStream)
		if n == 1 {
			io.WriteString(w, "id: 7\nevent: state\ndata: {\"seq\":7,\"type\":\"state\",\"transaction\":\"T1\",\"state\":\"active\",\"previous\":\"\"}\n\n")
			return // the stream ends
		}
		io.WriteString(w, "id: 8\nevent: state\ndata: {\"seq\":8,\"type\":\"state\",\"transaction\":\"T1\",\"state\":\"confirming\",\"previous\":\"active\"}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	e := &adminEnv{url: srv.URL, tokens: map[string]string{}}
	out, errOut, stop := e.watch(t, "")
	waitFor(t, "the second event", func() bool { return strings.Contains(out.String(), "active → confirming") })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(lastIDs, ",") != ",7" || !strings.Contains(errOut.String(), "opening it again") {
		t.Fatalf("Last-Event-IDs %q, stderr %q", lastIDs, errOut)
	}
}
