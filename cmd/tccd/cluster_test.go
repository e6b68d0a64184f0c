package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tccd/tccd/internal/pgtest"
	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/internal/testproc"
)

// The failover tests run three real tccd processes on one PostgreSQL
// database (a fresh one per test), with real participant processes, all
// on loopback. The lease TTL is short (clusterTTL) so that takeovers come
// quickly; every wait is on a condition, with bounds far above what the
// machine needs.

const clusterTTL = 2 * time.Second

// cluster is a set of tccd nodes sharing one database.
type cluster struct {
	t     *testing.T
	dsn   string
	nodes []*testproc.Proc
	flags [][]string
}

func startCluster(t *testing.T, dsn string, n int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, dsn: dsn}
	for i := 0; i < n; i++ {
		flags := append([]string{"--store", dsn, "--node-id", fmt.Sprintf("node-%d", i), "--lease-ttl", clusterTTL.String(),
			"--retry-min", "10ms", "--retry-max", "200ms", "--shutdown-grace", "500ms", "--confirm-wait", "10s"}, extra...)
		c.flags = append(c.flags, flags)
		c.nodes = append(c.nodes, testproc.StartTccd(t, bins["tccd"], flags...))
	}
	return c
}

func (c *cluster) url(i int) string { return c.nodes[i].URL() }

// row is what the database holds of a transaction's ownership.
type row struct {
	state, owner string
	epoch        int64
}

// rows reads every transaction's state, owner and epoch from the
// database the nodes share.
func (c *cluster) rows() (map[string]row, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rs, err := conn.Query(ctx, "SELECT id, state, owner, epoch FROM tccd_transactions")
	if err != nil {
		return nil, err
	}
	out := map[string]row{}
	for rs.Next() {
		var id string
		var r row
		if err := rs.Scan(&id, &r.state, &r.owner, &r.epoch); err != nil {
			return nil, err
		}
		out[id] = r
	}
	return out, rs.Err()
}

// unfinished counts the transactions not final in the database, and
// those of them owned by node (when given).
func (c *cluster) unfinished(node string) (all, owned int) {
	rows, err := c.rows()
	if err != nil {
		return -1, -1
	}
	for _, r := range rows {
		switch r.state {
		case "active", "confirming", "cancelling", "compensating":
			all++
			if r.owner == node {
				owned++
			}
		}
	}
	return all, owned
}

// logRecords returns a node's JSON log records whose message starts with msg.
func logRecords(p *testproc.Proc, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(p.Log(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(fmt.Sprint(rec["msg"]), msg) {
			out = append(out, rec)
		}
	}
	return out
}

// logCount sums the "count" field of a node's records of msg.
func logCount(p *testproc.Proc, msg string) int {
	n := 0
	for _, rec := range logRecords(p, msg) {
		if v, ok := rec["count"].(float64); ok {
			n += int(v)
		}
	}
	return n
}

func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func setFault(t *testing.T, c *http.Client, p *testproc.Proc, f *testpart.Fault) {
	t.Helper()
	method, body := "DELETE", any(nil)
	if f != nil {
		method, body = "POST", *f
	}
	if code, _, err := do(c, method, p.URL()+"/faults", "application/json", body); err != nil || code != http.StatusNoContent {
		t.Fatalf("%s %s/faults: %d %v", method, p.Addr, code, err)
	}
}

// reservations lists a participant's reservations by URI.
func reservations(t *testing.T, c *http.Client, p *testproc.Proc) map[string]testpart.Reservation {
	t.Helper()
	code, body, err := do(c, "GET", p.URL()+"/reservations", "", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s/reservations: %d %v", p.Addr, code, err)
	}
	var list []testpart.Reservation
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("reservations of %s: %v", p.Addr, err)
	}
	out := map[string]testpart.Reservation{}
	for _, r := range list {
		out[p.URL()+"/reservations/"+r.ID] = r
	}
	return out
}

// clusterTx is one transaction of a failover test.
type clusterTx struct {
	links  []link
	id     string // native only
	native bool
	answer int // the status of the client's last confirm, 0 if none came
}

// beginAt begins a native transaction at base.
func beginAt(c *http.Client, base string, links []link, timeout string) (string, error) {
	code, body, err := do(c, "POST", base+"/api/v1/transactions", "application/json", map[string]any{"timeout": timeout, "participants": links})
	if err != nil || code != http.StatusCreated {
		return "", fmt.Errorf("begin at %s: %d %v %s", base, code, err, body)
	}
	var got struct{ ID string }
	err = json.Unmarshal(body, &got)
	return got.ID, err
}

// confirmAt confirms tx at base, once: Atomikos one-shot, or native.
func confirmAt(c *http.Client, base string, tx *clusterTx) (int, []byte, error) {
	if tx.native {
		return do(c, "PUT", base+"/api/v1/transactions/"+tx.id+"/confirm", "", nil)
	}
	return do(c, "PUT", base+"/coordinator/confirm", "application/tcc+json", map[string]any{"participantLinks": tx.links})
}

// tries makes a reservation at each participant.
func tries(t *testing.T, c *http.Client, ps ...*testproc.Proc) []link {
	t.Helper()
	var out []link
	for _, p := range ps {
		l, err := try(t, c, p.URL())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

// idsByLink maps each participant URI to its transaction's id, from the
// list of every transaction at base.
func idsByLink(t *testing.T, c *http.Client, base string) map[string]string {
	t.Helper()
	out := map[string]string{}
	cursor := ""
	for {
		code, body, err := do(c, "GET", base+"/api/v1/transactions?limit=1000&cursor="+cursor, "", nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("list: %d %v", code, err)
		}
		var l struct {
			Transactions []struct {
				ID           string
				Participants []struct{ URI string }
			}
			NextCursor string `json:"next_cursor"`
		}
		json.Unmarshal(body, &l)
		for _, tx := range l.Transactions {
			for _, p := range tx.Participants {
				out[p.URI] = tx.ID
			}
		}
		if l.NextCursor == "" {
			return out
		}
		cursor = l.NextCursor
	}
}

// TestClusterSIGKILL: node-0 drives 100 confirms (one-shot ones it
// created, native ones begun at the other nodes and confirmed at it)
// whose participants hold every call, then is killed with SIGKILL. The
// other nodes take every transaction over once its lease expires and
// confirm it, within the lease TTL and a few seconds; nothing is
// cancelled, no participant gets a cancel, and the records name the
// survivors as owners at a raised epoch.
func TestClusterSIGKILL(t *testing.T) {
	const n = 100
	dsn := pgtest.NewDatabase(t)
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	p1 := testproc.StartParticipant(t, bins["testpart"], "--latency", "100ms")
	p2 := testproc.StartParticipant(t, bins["testpart"], "--latency", "100ms")
	c := startCluster(t, dsn, 3)

	txs := make([]*clusterTx, n)
	for i := range txs {
		tx := &clusterTx{links: tries(t, client, p1, p2), native: i%2 == 1}
		if tx.native {
			id, err := beginAt(client, c.url(1+i%2), tx.links, "5m")
			if err != nil {
				t.Fatal(err)
			}
			tx.id = id
		}
		txs[i] = tx
	}
	// Every confirm call is held at the participants: when all 2 × 100
	// are, every transaction is decided at node-0 and mid-confirm.
	hold := &testpart.Fault{Op: "confirm", Count: -1, Hold: true}
	setFault(t, client, p1, hold)
	setFault(t, client, p2, hold)
	var wg sync.WaitGroup
	for _, tx := range txs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			confirmAt(client, c.url(0), tx) // ends with node-0
		}()
	}
	waitUntil(t, "every confirm to be held at both participants", time.Minute, func() bool {
		return participantStats(t, client, p1.URL()).Held == n && participantStats(t, client, p2.URL()).Held == n
	})
	if _, owned := c.unfinished("node-0"); owned != n {
		t.Fatalf("node-0 owns %d unfinished transactions, want %d", owned, n)
	}
	c.nodes[0].Kill()
	killed := time.Now()
	wg.Wait()
	// The held calls ended with their caller; the survivors' are not held.
	setFault(t, client, p1, nil)
	setFault(t, client, p2, nil)

	waitUntil(t, "the survivors to confirm every transaction", clusterTTL+30*time.Second, func() bool {
		all, _ := c.unfinished("")
		return all == 0 && participantStats(t, client, p1.URL()).Confirmed == n && participantStats(t, client, p2.URL()).Confirmed == n
	})
	took := time.Since(killed)
	t.Logf("all %d confirmed %v after the kill (lease TTL %v)", n, took.Round(10*time.Millisecond), clusterTTL)
	if limit := clusterTTL + 8*time.Second; took > limit {
		t.Errorf("the survivors took %v to finish node-0's confirms; want within the lease TTL and a few seconds (%v)", took, limit)
	}
	rows, err := c.rows()
	if err != nil {
		t.Fatal(err)
	}
	for id, r := range rows {
		if r.state != "confirmed" || r.owner == "node-0" || r.owner == "" || r.epoch < 2 {
			t.Errorf("transaction %s: %+v; want confirmed by a survivor after a takeover (epoch ≥ 2)", id, r)
		}
	}
	if len(rows) != n {
		t.Errorf("%d transactions stored, want %d", len(rows), n)
	}
	if got := logCount(c.nodes[1], "took over") + logCount(c.nodes[2], "took over"); got != n {
		t.Errorf("the survivors logged %d takeovers, want %d", got, n)
	}
	for _, p := range []*testproc.Proc{p1, p2} {
		st := participantStats(t, client, p.URL())
		if st.CancelCalls != 0 || st.Cancelled != 0 || st.CancelAfterConfirm != 0 {
			t.Errorf("participant %s got cancels: %+v", p.Addr, st)
		}
	}
	// The clients repeat their confirms at the survivors: confirmed.
	for i, tx := range txs {
		code, body, err := confirmAt(client, c.url(1+i%2), tx)
		if err != nil || (code != http.StatusOK && code != http.StatusNoContent) {
			t.Fatalf("repeated confirm at a survivor: %d %v %s", code, err, body)
		}
	}
}

// TestClusterSIGSTOP: node-0 is paused (SIGSTOP) while it drives
// confirms held at the participants, times transactions that will time
// out during the pause, and times others that clients confirm at other
// nodes during the pause, some of them racing their timeout. The other
// nodes take everything over once the leases expire and settle it. Then
// node-0 resumes (SIGCONT): it must log that it lost its leases and send
// nothing that contradicts its successors — no participant gets both a
// confirm and a cancel, every record agrees with its participants, and
// every answer a client got agrees with the record.
func TestClusterSIGSTOP(t *testing.T) {
	const (
		held     = 30 // one-shot confirms at node-0, held at the participants when it pauses
		timeouts = 15 // native, begun at node-0, 3 s timeout, never confirmed
		moved    = 15 // native, begun at node-0, confirmed at node-1 during the pause
		racing   = 15 // native, begun at node-0, 3 s timeout, confirmed at node-2 around the timeout
	)
	dsn := pgtest.NewDatabase(t)
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	p1 := testproc.StartParticipant(t, bins["testpart"], "--latency", "20ms")
	p2 := testproc.StartParticipant(t, bins["testpart"], "--latency", "20ms")
	c := startCluster(t, dsn, 3)
	a := c.nodes[0]

	var all []*clusterTx
	mk := func(k int, native bool, timeout string) []*clusterTx {
		var out []*clusterTx
		for i := 0; i < k; i++ {
			tx := &clusterTx{links: tries(t, client, p1, p2), native: native}
			if native {
				id, err := beginAt(client, a.URL(), tx.links, timeout)
				if err != nil {
					t.Fatal(err)
				}
				tx.id = id
			}
			out = append(out, tx)
			all = append(all, tx)
		}
		return out
	}
	heldTxs := mk(held, false, "")
	movedTxs := mk(moved, true, "1m")
	hold := &testpart.Fault{Op: "confirm", Count: -1, Hold: true}
	setFault(t, client, p1, hold)
	setFault(t, client, p2, hold)
	var wg sync.WaitGroup
	var mu sync.Mutex
	answer := func(tx *clusterTx, base string) {
		code, _, err := confirmAt(client, base, tx)
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			tx.answer = code
		}
	}
	for _, tx := range heldTxs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answer(tx, a.URL()) // answered after node-0 resumes
		}()
	}
	waitUntil(t, "node-0's confirms to be held at both participants", time.Minute, func() bool {
		return participantStats(t, client, p1.URL()).Held == held && participantStats(t, client, p2.URL()).Held == held
	})
	timeoutTxs := mk(timeouts, true, "3s")
	racingTxs := mk(racing, true, "3s")
	racingBegun := time.Now()

	a.Pause()
	paused := time.Now()
	t.Cleanup(a.Resume) // a failed test must not leave it stopped
	// The held confirms are carried out now, unknown to node-0.
	setFault(t, client, p1, nil)
	setFault(t, client, p2, nil)
	for _, tx := range movedTxs {
		answer(tx, c.url(1))
		if tx.answer != http.StatusOK {
			t.Fatalf("confirm at node-1 of a transaction begun at paused node-0: %d", tx.answer)
		}
	}
	for i, tx := range racingTxs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread over the second around the timeout.
			time.Sleep(time.Until(racingBegun.Add(2500*time.Millisecond + time.Duration(i)*time.Second/racing)))
			answer(tx, c.url(2))
		}()
	}
	waitUntil(t, "the other nodes to take over and settle everything node-0 held", time.Minute, func() bool {
		all, owned := c.unfinished("node-0")
		return all == 0 && owned == 0
	})
	t.Logf("node-0 paused for %v", time.Since(paused).Round(10*time.Millisecond))
	// Everything is settled: from here the participants must get no
	// call, though node-0 resumes with drivers mid-call, timers overdue
	// and leases it believes it holds.
	before := [2]testpart.Stats{participantStats(t, client, p1.URL()), participantStats(t, client, p2.URL())}
	a.Resume()
	waitUntil(t, "node-0 to log that it lost its leases", 30*time.Second, func() bool {
		return logCount(a, "lost leases") > 0
	})
	wg.Wait() // node-0 answers the confirms that waited on it
	t.Logf("node-0 logged %d leases lost", logCount(a, "lost leases"))
	testproc.WaitReady(t, a.URL())
	// A window for node-0 to do anything wrong: its overdue timers fire
	// at once, its call loops wake, its next renewals and takeovers run
	// within the TTL.
	time.Sleep(2 * clusterTTL)
	for i, p := range []*testproc.Proc{p1, p2} {
		st := participantStats(t, client, p.URL())
		if st.ConfirmCalls != before[i].ConfirmCalls || st.CancelCalls != before[i].CancelCalls {
			t.Errorf("participant %s got calls after everything was settled: %+v, then %+v", p.Addr, before[i], st)
		}
	}

	if all, _ := c.unfinished(""); all != 0 {
		t.Fatalf("%d transactions unfinished", all)
	}
	rows, err := c.rows()
	if err != nil {
		t.Fatal(err)
	}
	byLink := idsByLink(t, client, c.url(1))
	res := [2]map[string]testpart.Reservation{reservations(t, client, p1), reservations(t, client, p2)}
	for _, p := range []*testproc.Proc{p1, p2} {
		if st := participantStats(t, client, p.URL()); st.CancelAfterConfirm != 0 {
			t.Errorf("participant %s refused %d cancels of confirmed reservations", p.Addr, st.CancelAfterConfirm)
		}
	}
	kinds := map[*clusterTx]string{}
	for _, tx := range heldTxs {
		kinds[tx] = "held"
	}
	for _, tx := range timeoutTxs {
		kinds[tx] = "timeout"
	}
	for _, tx := range movedTxs {
		kinds[tx] = "moved"
	}
	for _, tx := range racingTxs {
		kinds[tx] = "racing"
	}
	outcomes := map[string]int{}
	for _, tx := range all {
		id := byLink[tx.links[0].URI]
		r, ok := rows[id]
		if !ok {
			t.Errorf("%s transaction of %s not stored", kinds[tx], tx.links[0].URI)
			continue
		}
		outcomes[kinds[tx]+" "+r.state]++
		for j, l := range tx.links {
			rv := res[j][l.URI]
			if rv.Confirms > 0 && rv.Cancels > 0 {
				t.Errorf("%s transaction %s: participant %d got %d confirms and %d cancels", kinds[tx], id, j+1, rv.Confirms, rv.Cancels)
			}
			want := testpart.Cancelled
			if r.state == "confirmed" {
				want = testpart.Confirmed
			}
			if rv.State != want && !(want == testpart.Cancelled && rv.State == testpart.Expired) {
				t.Errorf("%s transaction %s is %s, but participant %d's reservation is %s", kinds[tx], id, r.state, j+1, rv.State)
			}
		}
		wantState := map[string][]string{"held": {"confirmed"}, "moved": {"confirmed"}, "timeout": {"cancelled"}, "racing": {"confirmed", "cancelled"}}[kinds[tx]]
		if !strings.Contains(strings.Join(wantState, " "), r.state) {
			t.Errorf("%s transaction %s ended %s, want %v", kinds[tx], id, r.state, wantState)
		}
		switch tx.answer {
		case 0:
		case http.StatusOK, http.StatusNoContent:
			if r.state != "confirmed" {
				t.Errorf("%s transaction %s: the client was told confirmed (%d), the record says %s", kinds[tx], id, tx.answer, r.state)
			}
		case http.StatusConflict, http.StatusNotFound:
			if r.state != "cancelled" {
				t.Errorf("%s transaction %s: the client was told cancelled (%d), the record says %s", kinds[tx], id, tx.answer, r.state)
			}
		case http.StatusAccepted, http.StatusServiceUnavailable:
			// in progress when asked
		default:
			t.Errorf("%s transaction %s: unexpected answer %d", kinds[tx], id, tx.answer)
		}
	}
	t.Logf("outcomes: %v", outcomes)
}

// TestClusterPostgresRestart restarts this machine's PostgreSQL server
// while three nodes take confirms (one-shot and native) from clients
// spread over them.
// While it is away, requests get 503 with a problem document; every
// confirm acknowledged before, during or after is confirmed at both
// participants; and the nodes resume by themselves — new confirms succeed,
// and every transaction decided before the outage is settled — without a
// restart of tccd. It disturbs every other test using the server, so it
// runs only with TCCD_TEST_PG_RESTART=1 (CI runs it alone, after the
// others):
//
//	TCCD_TEST_PG_RESTART=1 go test -run '^TestClusterPostgresRestart$' ./cmd/tccd/
func TestClusterPostgresRestart(t *testing.T) {
	if os.Getenv("TCCD_TEST_PG_RESTART") != "1" {
		t.Skip("restarts this machine's PostgreSQL server: set TCCD_TEST_PG_RESTART=1 to run it (alone)")
	}
	version := pgVersion(t)
	dsn := pgtest.NewDatabase(t)
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	p1 := testproc.StartParticipant(t, bins["testpart"], "--latency", "20ms")
	p2 := testproc.StartParticipant(t, bins["testpart"], "--latency", "20ms")
	c := startCluster(t, dsn, 3)

	var (
		mu       sync.Mutex
		acked    []*clusterTx
		problems atomic.Int64 // 503 problem documents while the server was away
		others   []string     // answers that are neither
		down     atomic.Bool
	)
	ctx, stop := context.WithCancel(context.Background())
	// served sorts an answer: a definite one, or a 503 to ask again after
	// — a problem document on the native API, plain text on Atomikos'.
	served := func(resp *http.Response, native bool) (done, again bool) {
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusOK:
			return true, false
		case resp.StatusCode == http.StatusAccepted:
			return false, true // in progress
		case resp.StatusCode == http.StatusServiceUnavailable && (!native || resp.Header.Get("Content-Type") == "application/problem+json"):
			if down.Load() && native {
				problems.Add(1)
			}
			return false, true
		}
		mu.Lock()
		others = append(others, resp.Status)
		mu.Unlock()
		return false, false
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			native := w%2 == 1
			for ctx.Err() == nil {
				tx := &clusterTx{native: native}
				for _, p := range []*testproc.Proc{p1, p2} {
					l, err := try(t, client, p.URL())
					if err != nil {
						return
					}
					tx.links = append(tx.links, l)
				}
				if native {
					// A begin that fails is not repeated (it is not
					// idempotent): if it happened after all, the
					// transaction times out and is cancelled.
					b, _ := json.Marshal(map[string]any{"timeout": "5s", "participants": tx.links})
					req, _ := http.NewRequest("POST", c.url(w%3)+"/api/v1/transactions", strings.NewReader(string(b)))
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						continue
					}
					if resp.StatusCode != http.StatusCreated {
						served(resp, true)
						time.Sleep(50 * time.Millisecond)
						continue
					}
					var got struct{ ID string }
					json.NewDecoder(resp.Body).Decode(&got)
					resp.Body.Close()
					tx.id = got.ID
				}
				// Like a client behind a load balancer: each request to
				// any node, repeated until a definite answer.
				for attempt := 0; ctx.Err() == nil || attempt < 200; attempt++ {
					base := c.url((w + attempt) % 3)
					req := atomikosConfirm(base, tx.links)
					if native {
						req, _ = http.NewRequest("PUT", base+"/api/v1/transactions/"+tx.id+"/confirm", nil)
					}
					resp, err := client.Do(req)
					if err != nil {
						mu.Lock()
						others = append(others, err.Error())
						mu.Unlock()
						break
					}
					done, again := served(resp, native)
					if done {
						mu.Lock()
						acked = append(acked, tx)
						mu.Unlock()
					}
					if !again {
						break
					}
					time.Sleep(50 * time.Millisecond) // back off, then ask again
				}
			}
		}()
	}
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	waitUntil(t, "confirms before the outage", time.Minute, func() bool { return ackedCount() >= 100 })
	before := ackedCount()

	pgctl(t, version, "stop")
	down.Store(true)
	t.Cleanup(func() { pgctl(t, version, "start") }) // a failed test leaves the server up
	waitUntil(t, "a 503 problem document while PostgreSQL is away", 30*time.Second, func() bool { return problems.Load() > 0 })
	for _, path := range []string{"/healthz", "/readyz"} {
		code, body, err := do(client, "GET", c.url(0)+path, "", nil)
		t.Logf("while PostgreSQL is away: GET %s = %d %s %v", path, code, strings.TrimSpace(string(body)), err)
	}
	// Away longer than the leases: every node's leases lapse.
	time.Sleep(clusterTTL + time.Second)
	pgctl(t, version, "start")
	down.Store(false)
	ackedBack := ackedCount()
	again := waitUntil(t, "new confirms to be acknowledged", time.Minute, func() bool { return ackedCount() >= ackedBack+50 })
	t.Logf("%d acknowledged before the outage; %d 503 problem documents during it; 50 more acknowledged %v after the server's return",
		before, problems.Load(), again.Round(10*time.Millisecond))
	stop()
	wg.Wait()
	// Every transaction settles by itself, before a re-drive (30 s) would
	// pick up what a node stopped driving.
	waitUntil(t, "every transaction to be settled", 25*time.Second, func() bool {
		all, _ := c.unfinished("")
		return all == 0
	})
	for _, o := range others {
		t.Errorf("an answer neither 204 nor a 503 problem document: %s", o)
	}
	res := [2]map[string]testpart.Reservation{reservations(t, client, p1), reservations(t, client, p2)}
	for _, tx := range acked {
		for j, l := range tx.links {
			if rv := res[j][l.URI]; rv.State != testpart.Confirmed {
				t.Errorf("acknowledged confirm of %v: participant %d's reservation is %s", tx.links, j+1, rv.State)
			}
		}
	}
	for j, r := range res {
		for uri, rv := range r {
			if rv.Confirms > 0 && rv.Cancels > 0 {
				t.Errorf("participant %d: %s got confirms and cancels", j+1, uri)
			}
		}
	}
	rows, err := c.rows()
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for _, r := range rows {
		states[r.state]++
	}
	t.Logf("transactions stored: %v", states)
	if states["confirmed"] < len(acked) || states["confirmed"]+states["cancelled"] != len(rows) {
		t.Errorf("stored %v; want at least the %d acknowledged confirmed, the rest (begins whose answer was lost) cancelled", states, len(acked))
	}
}

func atomikosConfirm(base string, links []link) *http.Request {
	b, _ := json.Marshal(map[string]any{"participantLinks": links})
	req, _ := http.NewRequest("PUT", base+"/coordinator/confirm", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/tcc+json")
	return req
}

// pgVersion is the version of this machine's PostgreSQL cluster, the one
// the tests use (/etc/postgresql/<version>/main).
func pgVersion(t *testing.T) string {
	t.Helper()
	entries, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(entries) == 0 {
		t.Fatalf("no PostgreSQL cluster in /etc/postgresql to restart: %v", err)
	}
	return entries[0].Name()
}

// pgctl stops or starts this machine's PostgreSQL server, as its
// services are managed here.
func pgctl(t *testing.T, version, action string) {
	t.Helper()
	out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action).CombinedOutput()
	if err != nil && !(action == "start" && strings.Contains(string(out), "already running")) {
		t.Fatalf("pg_ctlcluster %s %s: %v\n%s", version, action, err, out)
	}
}
