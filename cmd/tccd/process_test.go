package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
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
// and cancelled.
func TestCrashRecoverySIGKILL(t *testing.T) {
	const n = 400
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

	var acked atomic.Int64
	killed := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	work := make(chan *txn)
	for w := 0; w < 200; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tx := range work {
				ok, _ := confirm(co.URL(), tx)
				select {
				case <-killed:
					continue // an answer racing the kill is not counted
				default:
				}
				if ok {
					tx.acked = true
					if acked.Add(1) == n/4 {
						once.Do(func() { co.Kill(); close(killed) })
					}
				}
			}
		}()
	}
	for _, tx := range txns {
		work <- tx
	}
	close(work)
	wg.Wait()
	once.Do(func() { co.Kill(); close(killed) })
	t.Logf("acknowledged before the kill: %d of %d", acked.Load(), n)

	co = testproc.StartTccd(t, bins["tccd"], flags...)
	var resumed int
	for _, line := range strings.Split(co.Log(), "\n") {
		var rec struct {
			Msg    string `json:"msg"`
			Resume int    `json:"resume"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "recovery scheduled" {
			resumed = rec.Resume
		}
	}
	t.Logf("decided transactions resumed by recovery: %d", resumed)
	if resumed == 0 {
		t.Error("no transaction was mid-confirm at the kill: the test did not test recovery")
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
