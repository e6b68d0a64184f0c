package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/internal/testproc"
)

// bins are the binaries the process tests run ("tccd", "testpart"), built
// once in TestMain.
var bins = map[string]string{}

func TestMain(m *testing.M) {
	testproc.Main(m, bins, "github.com/tccd/tccd/cmd/tccd", "github.com/tccd/tccd/internal/testpart/cmd/testpart")
}

// link is a participant link as the participant's try returns it.
type link struct {
	URI     string `json:"uri"`
	Expires string `json:"expires"`
}

func try(t *testing.T, c *http.Client, base string) (link, error) {
	resp, err := c.Post(base+"/reservations?ttl=5m", "application/json", nil)
	if err != nil {
		return link{}, err
	}
	defer resp.Body.Close()
	var body struct {
		ParticipantLink link `json:"participantLink"`
	}
	if resp.StatusCode != http.StatusCreated {
		return link{}, fmt.Errorf("try: %s", resp.Status)
	}
	return body.ParticipantLink, json.NewDecoder(resp.Body).Decode(&body)
}

func do(c *http.Client, method, url, ctype string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func reservationState(t *testing.T, c *http.Client, uri string) testpart.State {
	t.Helper()
	code, body, err := do(c, "GET", uri, "", nil)
	if err != nil || code != 200 {
		t.Fatalf("GET %s: %d %v", uri, code, err)
	}
	var r testpart.Reservation
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	return r.State
}

func participantStats(t *testing.T, c *http.Client, base string) testpart.Stats {
	t.Helper()
	_, body, err := do(c, "GET", base+"/stats", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var s testpart.Stats
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCrashRecoverySIGKILL kills the real tccd process with SIGKILL while
// hundreds of transactions are mid-confirm against real participant
// processes, restarts it on the same data directory, and checks that every
// transaction settles, none is lost, and no participant is both confirmed
// and cancelled. The participants hold the confirm calls of the later
// transactions until the kill, so that many are decided and unsettled when
// it lands, however slow the machine.
func TestCrashRecoverySIGKILL(t *testing.T) {
	const (
		n    = 400
		done = n / 4 // confirmed before the participants start holding
		// held is how many transactions must be mid-confirm at the kill:
		// decided, with their calls held at the participants.
		held = n / 8
	)
	p1 := testproc.StartParticipant(t, bins["testpart"], "--latency", "20ms")
	p2 := testproc.StartParticipant(t, bins["testpart"], "--latency", "20ms")
	data := t.TempDir()
	flags := []string{"--data", data, "--retry-min", "10ms", "--retry-max", "200ms", "--shutdown-grace", "1s"}
	co := testproc.StartTccd(t, bins["tccd"], flags...)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512}}

	type txn struct {
		native bool
		links  [2]link
		id     string // native only
		acked  bool   // the coordinator answered "confirmed" before the kill
	}
	txns := make([]*txn, n)
	for i := range txns {
		tx := &txn{native: i%2 == 1}
		for j, p := range []*testproc.Proc{p1, p2} {
			l, err := try(t, client, p.URL())
			if err != nil {
				t.Fatal(err)
			}
			tx.links[j] = l
		}
		txns[i] = tx
	}

	confirm := func(base string, tx *txn) (bool, error) {
		links := []link{tx.links[0], tx.links[1]}
		if !tx.native {
			code, _, err := do(client, "PUT", base+"/coordinator/confirm", "application/tcc+json", map[string]any{"participantLinks": links})
			return code == http.StatusNoContent, err
		}
		if tx.id == "" {
			code, body, err := do(client, "POST", base+"/api/v1/transactions", "application/json", map[string]any{"timeout": "5m", "participants": links})
			if err != nil || code != http.StatusCreated {
				return false, fmt.Errorf("begin: %d %v", code, err)
			}
			var got struct{ ID string }
			json.Unmarshal(body, &got)
			tx.id = got.ID
		}
		code, _, err := do(client, "PUT", base+"/api/v1/transactions/"+tx.id+"/confirm", "", nil)
		return code == http.StatusOK, err
	}
	// confirmAll confirms txs from 200 clients at once and returns when
	// every request has been answered or failed.
	confirmAll := func(txs []*txn) {
		var wg sync.WaitGroup
		work := make(chan *txn)
		for w := 0; w < 200; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for tx := range work {
					ok, _ := confirm(co.URL(), tx)
					tx.acked = ok
				}
			}()
		}
		for _, tx := range txs {
			work <- tx
		}
		close(work)
		wg.Wait()
	}
	holding := func(p *testproc.Proc) int64 { return participantStats(t, client, p.URL()).Held }

	// The first quarter confirms undisturbed.
	confirmAll(txns[:done])
	var acked int
	for _, tx := range txns[:done] {
		if tx.acked {
			acked++
		}
	}
	if acked != done {
		t.Fatalf("%d of the first %d transactions confirmed", acked, done)
	}
	// Then the participants hold every confirm call until the kill: the
	// rest of the transactions are decided and none can settle.
	for _, p := range []*testproc.Proc{p1, p2} {
		if code, _, err := do(client, "POST", p.URL()+"/faults", "application/json", testpart.Fault{Op: "confirm", Count: -1, Hold: true}); err != nil || code != http.StatusNoContent {
			t.Fatalf("install the hold at %s: %d %v", p.Addr, code, err)
		}
	}
	rest := make(chan struct{})
	go func() {
		defer close(rest)
		confirmAll(txns[done:])
	}()
	// A held call at p1 is a decided transaction (the decision is synced
	// before any call). Waiting on a condition: the calls are held, so the
	// count only grows until the kill.
	deadline := time.Now().Add(60 * time.Second)
	for holding(p1) < held {
		if time.Now().After(deadline) {
			t.Fatalf("only %d calls held at %s, want %d", holding(p1), p1.Addr, held)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Read before the kill: a held call ends when its caller dies. Until
	// the kill the count only grows (a participant never gets two calls of
	// one transaction at once), so each is a distinct decided transaction.
	heldAtKill := holding(p1)
	co.Kill()
	// The requests in flight fail with the process; what was held is let
	// go (a held call whose caller is gone ends undone) and the recovery's
	// calls will not be held.
	<-rest
	for _, p := range []*testproc.Proc{p1, p2} {
		if code, _, err := do(client, "DELETE", p.URL()+"/faults", "", nil); err != nil || code != http.StatusNoContent {
			t.Fatalf("clear the hold at %s: %d %v", p.Addr, code, err)
		}
	}
	for _, tx := range txns[done:] {
		if tx.acked {
			t.Fatalf("transaction %v confirmed while its participants held every confirm", tx.links)
		}
	}
	t.Logf("acknowledged before the kill: %d of %d; calls held at the kill: %d", acked, n, heldAtKill)

	co = testproc.StartTccd(t, bins["tccd"], flags...)
	// The line is written before the server is ready, but may reach the
	// test's copy of the log a little later.
	resumed := -1
	waitFor(t, "the recovery's log line", func() bool {
		for _, line := range strings.Split(co.Log(), "\n") {
			var rec struct {
				Msg    string `json:"msg"`
				Resume int    `json:"resume"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "recovery scheduled" {
				resumed = rec.Resume
			}
		}
		return resumed >= 0
	})
	t.Logf("decided transactions resumed by recovery: %d", resumed)
	if int64(resumed) < heldAtKill {
		t.Errorf("recovery resumed %d transactions, but %d were decided and held at the kill", resumed, heldAtKill)
	}

	// The clients repeat every confirm that got no definite answer.
	// A native transaction whose begin was lost in the crash (404) is
	// abandoned: its reservations must never be confirmed.
	abandoned := map[*txn]bool{}
	for _, tx := range txns {
		if tx.acked {
			continue
		}
		ok, err := confirm(co.URL(), tx)
		if err != nil {
			t.Fatalf("confirm after restart: %v", err)
		}
		if !ok {
			if !tx.native {
				t.Fatalf("Atomikos confirm of %v after restart failed", tx.links)
			}
			code, _, _ := do(client, "GET", co.URL()+"/api/v1/transactions/"+tx.id, "", nil)
			if code != http.StatusNotFound {
				t.Fatalf("native confirm of %s after restart failed with the transaction still known (%d)", tx.id, code)
			}
			abandoned[tx] = true
		}
	}
	t.Logf("abandoned (begin lost in the crash, never decided): %d", len(abandoned))

	// Every transaction settles: nothing left confirming or cancelling.
	for _, st := range []string{"confirming", "cancelling", "heuristic"} {
		_, body, err := do(client, "GET", co.URL()+"/api/v1/transactions?limit=1000&state="+st, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		var list struct{ Transactions []json.RawMessage }
		json.Unmarshal(body, &list)
		if len(list.Transactions) != 0 {
			t.Errorf("%d transactions %s after recovery", len(list.Transactions), st)
		}
	}
	for _, tx := range txns {
		s1, s2 := reservationState(t, client, tx.links[0].URI), reservationState(t, client, tx.links[1].URI)
		want := testpart.Confirmed
		if abandoned[tx] {
			if tx.acked {
				t.Fatalf("acknowledged transaction %s was lost", tx.id)
			}
			want = testpart.Tried // left to expire at the participant
		}
		if s1 != want || s2 != want {
			t.Errorf("transaction %v (acked %v): participants %s and %s, want %s", tx.links, tx.acked, s1, s2, want)
		}
	}
	for _, p := range []*testproc.Proc{p1, p2} {
		st := participantStats(t, client, p.URL())
		if st.CancelAfterConfirm != 0 || st.Cancelled != 0 {
			t.Errorf("participant %s: %+v", p.Addr, st)
		}
		if st.Confirmed != n-len(abandoned) {
			t.Errorf("participant %s: %d confirmed, want %d", p.Addr, st.Confirmed, n-len(abandoned))
		}
	}
	if err := co.Stop(); err != nil {
		t.Errorf("graceful stop: %v", err)
	}
}

// TestGracefulShutdown checks SIGTERM: the process exits 0, and a
// transaction whose participant is down resumes after the restart.
func TestGracefulShutdown(t *testing.T) {
	p := testproc.StartParticipant(t, bins["testpart"])
	data := t.TempDir()
	flags := []string{"--data", data, "--retry-min", "10ms", "--retry-max", "50ms", "--shutdown-grace", "200ms", "--confirm-wait", "300ms"}
	co := testproc.StartTccd(t, bins["tccd"], flags...)
	client := &http.Client{Timeout: 10 * time.Second}

	code, body, _ := do(client, "GET", co.URL()+"/healthz", "", nil)
	if code != 200 || !strings.Contains(string(body), "ok") {
		t.Fatalf("healthz: %d %s", code, body)
	}
	l, err := try(t, client, p.URL())
	if err != nil {
		t.Fatal(err)
	}
	do(client, "POST", p.URL()+"/faults", "application/json", testpart.Fault{Op: "confirm", Count: -1, Status: 503})
	code, body, _ = do(client, "PUT", co.URL()+"/coordinator/confirm", "application/tcc+json", map[string]any{"participantLinks": []link{l}})
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "in progress") {
		t.Fatalf("confirm with the participant down: %d %s", code, body)
	}
	if err := co.Stop(); err != nil {
		t.Fatalf("SIGTERM exit: %v\n%s", err, co.Log())
	}
	if !strings.Contains(co.Log(), `"msg":"stopped"`) {
		t.Errorf("no clean stop logged:\n%s", co.Log())
	}
	do(client, "DELETE", p.URL()+"/faults", "", nil)
	co = testproc.StartTccd(t, bins["tccd"], flags...)
	deadline := time.Now().Add(10 * time.Second)
	for reservationState(t, client, l.URI) != testpart.Confirmed {
		if time.Now().After(deadline) {
			t.Fatal("the confirm did not resume after restart")
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, _, _ = do(client, "PUT", co.URL()+"/coordinator/confirm", "application/tcc+json", map[string]any{"participantLinks": []link{l}})
	if code != http.StatusNoContent {
		t.Errorf("repeat confirm after recovery: %d", code)
	}
}

// TestSecondProcessOnSameData: a second tccd on the data directory of a
// running one exits at once saying so — also when the LOCK file was
// deleted meanwhile, which Pebble's lock alone does not survive — and the
// first goes on serving.
func TestSecondProcessOnSameData(t *testing.T) {
	data := t.TempDir()
	first := testproc.StartTccd(t, bins["tccd"], "--data", data)
	second := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bins["tccd"], "serve", "--listen", "127.0.0.1:0", "--data", data).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("second tccd on the same data: %v\n%s", err, out)
		}
		return string(out)
	}
	lock := filepath.Join(data, "LOCK")
	want := fmt.Sprintf("data directory %s is in use by another tccd (lock %s)", data, lock)
	if out := second(); !strings.Contains(out, want) {
		t.Fatalf("second tccd said:\n%s\nwant %q", out, want)
	}
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	want = fmt.Sprintf("data directory %s is in use by another tccd (lock %s): its LOCK file was deleted", data, data)
	if out := second(); !strings.Contains(out, want) {
		t.Fatalf("second tccd, LOCK deleted, said:\n%s\nwant %q", out, want)
	}
	testproc.WaitReady(t, first.URL())
	if err := first.Stop(); err != nil {
		t.Errorf("first tccd: %v", err)
	}
}
