// Package chaos is tccd's fault campaign: the real tccd binary and real
// bank participant processes on loopback, a bank-transfer workload, and
// faults injected while it runs. At the end it waits for quiescence and
// checks the invariants; see docs/RELIABILITY.md.
//
//	go test ./tests/chaos/ -v                                  # the short runs CI does (~1.5 min): one node, and a 3-node cluster
//	go test ./tests/chaos/ -v -run '^TestFaultCampaign$' -timeout 0 -chaos.duration 30m   # a long run
//	go test ./tests/chaos/ -v -run '^TestFaultCampaign$' -timeout 0 -chaos.duration 10m -chaos.store postgres -chaos.cluster 3
//
// The cluster runs need PostgreSQL (TCCD_TEST_POSTGRES): a fresh database
// per run.
package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/bankpart"
	"github.com/tccd/tccd/internal/natstest"
	"github.com/tccd/tccd/internal/pgtest"
	"github.com/tccd/tccd/internal/testproc"
)

var (
	flagDuration = flag.Duration("chaos.duration", 40*time.Second, "how long the workload runs under faults")
	flagSeed     = flag.Uint64("chaos.seed", 0, "random seed (0: from the clock); printed in the summary")
	flagBanks    = flag.Int("chaos.banks", 3, "bank participant processes")
	flagWorkers  = flag.Int("chaos.workers", 12, "concurrent initiators")
	flagAccounts = flag.Int("chaos.accounts", 20, "accounts per bank")
	flagStore    = flag.String("chaos.store", "pebble", "TestFaultCampaign's store: pebble (the embedded log) or postgres (a fresh database on TCCD_TEST_POSTGRES's server)")
	flagCluster  = flag.Int("chaos.cluster", 1, "TestFaultCampaign's tccd nodes; more than 1 needs -chaos.store postgres")
	flagClusterD = flag.Duration("chaos.cluster-duration", 40*time.Second, "how long TestFaultCampaignCluster (3 nodes on PostgreSQL) runs under faults")
)

// clusterTTL is the nodes' lease TTL in a cluster run: short, so that
// takeovers happen within the run.
const clusterTTL = 2 * time.Second

// bins are the binaries the campaign runs ("tccd", "bankpart").
var bins = map[string]string{}

func TestMain(m *testing.M) {
	flag.Parse()
	testproc.Main(m, bins, "github.com/tccd/tccd/cmd/tccd", "github.com/tccd/tccd/internal/bankpart/cmd/bankpart")
}

// outcome of a transfer as its initiator saw it.
type outcome string

const (
	confirmed  outcome = "confirmed" // the coordinator acknowledged: confirmed
	timedOut   outcome = "timed_out" // the coordinator answered: cancelled instead
	heuristic  outcome = "heuristic" // the coordinator answered: partial
	abandoned  outcome = "abandoned" // the initiator gave up before deciding (try failed; begin lost)
	refusedLog outcome = "refused"   // the coordinator refused to decide (503: log unavailable)
	unknown    outcome = "unknown"   // no definite answer (yet)
)

// transfer is one bank-transfer transaction.
type transfer struct {
	native  bool
	amount  int64
	debit   link
	credit  link
	id      string // native only
	outcome outcome
	// ackedAt is when the coordinator acknowledged a confirm.
	ackedAt time.Time
	// msgAcked: a native transfer enlisted a message (its "transfer
	// done" notice) and the coordinator answered 201.
	msgAcked bool
}

type link struct {
	URI     string `json:"uri"`
	Expires string `json:"expires"`
}

// harness holds the processes and the record of the run.
type harness struct {
	t      *testing.T
	rnd    *rand.Rand
	rndMu  sync.Mutex
	client *http.Client
	dir    string

	mu        sync.Mutex // guards the bank processes below
	nodes     []*node    // the tccd processes: one, or a cluster's
	store     string     // "" (each node's embedded log) or a PostgreSQL URL
	banks     []*testproc.Proc
	bankAddrs []string
	bankDBs   []string

	diskDir  string // the coordinator's data directory, on a small tmpfs
	diskFull atomic.Bool

	faults    sync.Map // kind → *atomic.Int64
	transfers []*transfer
	tmu       sync.Mutex
	refusals  atomic.Int64 // confirms refused while the disk was full
	// attributed counts the heuristic outcomes by the fault that caused them.
	attributed counter
	// diskAnomalies counts disk-full faults the coordinator mishandled.
	diskAnomalies atomic.Int64
	// downtimes are the windows in which a coordinator could not drive
	// what it owned: from its kill (or pause) to its return — and, in a
	// cluster, until another node could have taken its transactions over.
	downMu    sync.Mutex
	downtimes [][2]time.Time
	// lastAnswer describes the last answer that gave no outcome, for errors.
	lastAnswer atomic.Value
	// stream is the JetStream stream the coordinators publish the
	// transfers' messages to (nil: messages left out of the run).
	stream *natstest.Stream
	// messages counts the messages found published, once each.
	messages int
}

func (h *harness) intn(n int) int {
	h.rndMu.Lock()
	defer h.rndMu.Unlock()
	return h.rnd.IntN(n)
}

func (h *harness) count(kind string) {
	v, _ := h.faults.LoadOrStore(kind, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// node is one tccd process of the run, restarted in place by faults.
type node struct {
	mu    sync.Mutex
	proc  *testproc.Proc
	addr  string
	flags []string
	// up is false while the node is killed and not yet restarted.
	up atomic.Bool
}

func (n *node) current() *testproc.Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// TestFaultCampaign runs the campaign as the flags say: by default one
// node on its embedded log, for -chaos.duration.
func TestFaultCampaign(t *testing.T) {
	if *flagCluster < 1 || (*flagCluster > 1 && *flagStore != "postgres") || (*flagStore != "pebble" && *flagStore != "postgres") {
		t.Fatalf("-chaos.store %q -chaos.cluster %d: a cluster needs -chaos.store postgres", *flagStore, *flagCluster)
	}
	campaign(t, *flagCluster, *flagStore == "postgres", *flagDuration)
}

// TestFaultCampaignCluster is the campaign against three nodes sharing
// one PostgreSQL database, with node kills and pauses among the faults,
// for -chaos.cluster-duration. It is the CI-sized cluster run; a long one
// is TestFaultCampaign with -chaos.store postgres -chaos.cluster 3.
func TestFaultCampaignCluster(t *testing.T) {
	campaign(t, 3, true, *flagClusterD)
}

func campaign(t *testing.T, nodes int, postgres bool, duration time.Duration) {
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	h := &harness{
		t: t, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), dir: t.TempDir(),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	if postgres {
		h.store = pgtest.NewDatabase(t)
	}
	// The message participant: native transfers enlist a message,
	// published by the coordinator if and only if the transfer confirms.
	// It needs NATS with JetStream (TCCD_TEST_NATS); under CI=true the
	// campaign fails without it.
	if os.Getenv(natstest.Env) != "" || os.Getenv("CI") == "true" {
		h.stream = natstest.NewStream(t, natstest.URL(t), 0)
	} else {
		t.Logf("%s is not set: the message participant is left out of this run", natstest.Env)
	}
	t.Logf("seed %d (rerun with -chaos.seed %d)", seed, seed)
	if !postgres {
		h.mountDisk()
	}
	h.startAll(nodes)

	ctx, stop := context.WithTimeout(context.Background(), duration)
	var wg sync.WaitGroup
	for w := 0; w < *flagWorkers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			h.workload(ctx, w)
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.inject(ctx)
	}()
	wg.Wait()
	stop()

	h.quiesce()
	anomalies := h.check()
	h.summary(seed, duration, anomalies)
	if len(anomalies) > 0 {
		t.Fatalf("%d anomalies", len(anomalies))
	}
}

// mountDisk puts the coordinator's data directory on a 512 MiB tmpfs, so
// that the campaign can fill the disk for real. Mounting needs root; under
// CI it must work.
func (h *harness) mountDisk() {
	dir := filepath.Join(h.dir, "disk")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			h.t.Fatalf("cannot mount a tmpfs for the disk-full fault (needs root): %v %s", err, out)
		}
		h.t.Logf("no tmpfs (%v %s): the disk-full fault is left out of this run", err, strings.TrimSpace(string(out)))
		h.diskDir = ""
		return
	}
	h.t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	h.diskDir = dir
}

func (h *harness) dataDir() string {
	if h.diskDir != "" {
		return filepath.Join(h.diskDir, "data")
	}
	return filepath.Join(h.dir, "data")
}

func (h *harness) startAll(nodes int) {
	for i := 0; i < *flagBanks; i++ {
		db := filepath.Join(h.dir, fmt.Sprintf("bank%d.db", i))
		p := testproc.StartParticipant(h.t, bins["bankpart"], "--db", db, "--accounts", fmt.Sprint(*flagAccounts), "--initial", "1000")
		h.banks = append(h.banks, p)
		h.bankAddrs = append(h.bankAddrs, p.Addr)
		h.bankDBs = append(h.bankDBs, db)
	}
	common := []string{
		"--call-timeout", "1s", "--retry-min", "20ms", "--retry-max", "300ms",
		"--confirm-wait", "3s", "--shutdown-grace", "500ms", "--margin-floor", "300ms",
		"--redrive-interval", "1s",
		// Finished transactions are purged after a while, so that a long
		// run's log does not fill the small disk by itself; long after any
		// client repeats a confirm (a repeat is answered from the record).
		"--retention", "5m", "--purge-interval", "10s",
	}
	if h.stream != nil {
		common = append(common, "--nats-url", os.Getenv(natstest.Env))
	}
	for i := 0; i < nodes; i++ {
		flags := append([]string{"--data", h.dataDir(), "--min-free-space", "8MiB"}, common...)
		if h.store != "" {
			flags = append([]string{"--store", h.store, "--node-id", fmt.Sprintf("node-%d", i), "--lease-ttl", clusterTTL.String()}, common...)
		}
		p := testproc.StartTccd(h.t, bins["tccd"], flags...)
		n := &node{proc: p, addr: p.Addr, flags: flags}
		n.up.Store(true)
		h.nodes = append(h.nodes, n)
	}
}

// coordURL is the base URL of a node to send a request to: any node not
// known to be down, as a load balancer would pick (a paused node is
// picked too: nothing outside it can tell it is paused).
func (h *harness) coordURL() string {
	var up []*node
	for _, n := range h.nodes {
		if n.up.Load() {
			up = append(up, n)
		}
	}
	if len(up) == 0 {
		return "http://" + h.nodes[0].addr // refused: the client asks again later
	}
	return "http://" + up[h.intn(len(up))].addr
}

func (h *harness) cluster() bool { return len(h.nodes) > 1 }

// takeoverTime is how long after a node stops acting another node surely
// has taken its transactions over: its lease runs out, and a takeover
// round follows within half a TTL (plus the machine's slack).
func (h *harness) takeoverTime() time.Duration {
	if !h.cluster() {
		return 0
	}
	return clusterTTL + clusterTTL/2 + time.Second
}

func (h *harness) noteDown(start, end time.Time) {
	h.downMu.Lock()
	h.downtimes = append(h.downtimes, [2]time.Time{start, end})
	h.downMu.Unlock()
}

// restartCoordinator kills a node with SIGKILL, waits, and starts it
// again on the same address and data directory (or database and node id).
func (h *harness) restartCoordinator(down time.Duration) {
	h.restart(h.intn(len(h.nodes)), down, false)
}

// restart stops node i — with SIGTERM when graceful, which lets
// participant calls in flight finish within the shutdown grace and
// answers the requests waiting for them; with SIGKILL otherwise — waits,
// and starts it again on the same address and data directory.
func (h *harness) restart(i int, down time.Duration, graceful bool) {
	n := h.nodes[i]
	start := time.Now()
	n.up.Store(false)
	n.mu.Lock()
	if graceful {
		if err := n.proc.Stop(); err != nil {
			h.t.Errorf("coordinator did not stop cleanly on SIGTERM: %v\n%s", err, n.proc.Log())
		}
	} else {
		n.proc.Kill()
	}
	n.mu.Unlock()
	time.Sleep(down) // the downtime is the fault being injected
	p := testproc.StartTccd(h.t, bins["tccd"], append(n.flags, "--listen", n.addr)...)
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	n.up.Store(true)
	h.noteDown(start, time.Now().Add(h.takeoverTime()))
}

// restartAll kills every node, waits, and starts them all again.
func (h *harness) restartAll(down time.Duration) {
	start := time.Now()
	for _, n := range h.nodes {
		n.up.Store(false)
		n.current().Kill()
	}
	time.Sleep(down) // the downtime is the fault being injected
	for _, n := range h.nodes {
		p := testproc.StartTccd(h.t, bins["tccd"], append(n.flags, "--listen", n.addr)...)
		n.mu.Lock()
		n.proc = p
		n.mu.Unlock()
		n.up.Store(true)
	}
	h.noteDown(start, time.Now().Add(h.takeoverTime()))
}

// pause stops a node with SIGSTOP for d, then lets it run again: past
// its lease TTL, the other nodes take its transactions over meanwhile
// and it must notice, on resuming, that it lost them.
func (h *harness) pause(d time.Duration) {
	n := h.nodes[h.intn(len(h.nodes))]
	start := time.Now()
	p := n.current()
	p.Pause()
	time.Sleep(d) // the pause is the fault being injected
	p.Resume()
	h.noteDown(start, time.Now().Add(h.takeoverTime()))
}

// expiredWhileDown reports whether a link expired while the coordinator
// was down: a decided transaction with such a link may end heuristic
// without any participant at fault (the participant cancelled on its own,
// as it must, before the coordinator could confirm it).
func (h *harness) expiredWhileDown(l link) bool {
	exp, err := time.Parse(time.RFC3339Nano, l.Expires)
	if err != nil {
		return false
	}
	h.downMu.Lock()
	defer h.downMu.Unlock()
	for _, w := range h.downtimes {
		if !exp.Before(w[0]) && !exp.After(w[1]) {
			return true
		}
	}
	return false
}

func (h *harness) restartBank(i int, down time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.banks[i].Kill()
	time.Sleep(down) // the downtime is the fault being injected
	h.banks[i] = testproc.StartParticipant(h.t, bins["bankpart"], "--db", h.bankDBs[i], "--listen", h.bankAddrs[i])
}

// workload runs transfers until ctx ends.
func (h *harness) workload(ctx context.Context, w int) {
	for i := 0; ctx.Err() == nil; i++ {
		h.transfer(ctx, w%2 == 1)
	}
}

func (h *harness) post(url string) (int, []byte, error) {
	resp, err := h.client.Post(url, "application/json", nil)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (h *harness) do(method, url, ctype string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// try reserves a debit or credit at a bank.
func (h *harness) try(bank int, account int, kind string, amount int, ttl time.Duration) (link, error) {
	url := fmt.Sprintf("http://%s/transfers?account=acct-%d&kind=%s&amount=%d&ttl=%s", h.bankAddrs[bank], account, kind, amount, ttl)
	code, body, err := h.post(url)
	if err != nil {
		return link{}, err
	}
	if code != http.StatusCreated {
		return link{}, fmt.Errorf("try: %d %s", code, body)
	}
	var ans struct{ ParticipantLink link }
	if err := json.Unmarshal(body, &ans); err != nil {
		return link{}, err
	}
	return ans.ParticipantLink, nil
}

func (h *harness) transfer(ctx context.Context, native bool) {
	from, to := h.intn(*flagBanks), h.intn(*flagBanks)
	fa, ta := h.intn(*flagAccounts), h.intn(*flagAccounts)
	if from == to && fa == ta {
		ta = (ta + 1) % *flagAccounts
	}
	amount := 1 + h.intn(20)
	ttl := 15 * time.Second
	if h.intn(10) == 0 {
		ttl = 3 * time.Second // may expire while the coordinator is down
	}
	debit, err := h.try(from, fa, "debit", amount, ttl)
	if err != nil {
		return // nothing reserved (or a reservation that will expire)
	}
	tr := &transfer{native: native, debit: debit, amount: int64(amount)}
	h.tmu.Lock()
	h.transfers = append(h.transfers, tr)
	h.tmu.Unlock()
	credit, err := h.try(to, ta, "credit", amount, ttl)
	if err != nil {
		tr.outcome = abandoned // the debit expires at its bank
		return
	}
	tr.credit = credit
	tr.outcome, tr.id = h.confirm(tr)
	// Like any client, repeat a confirm that got no definite answer (a
	// crash, a disk-full refusal) until one comes: the answer is only
	// remembered for the coordinator's retention.
	for (tr.outcome == unknown || tr.outcome == refusedLog) && ctx.Err() == nil {
		if tr.native && tr.id == "" {
			// The begin got no answer. Begin is not idempotent, so it is
			// not repeated: if it happened, the transaction times out and
			// is cancelled.
			tr.outcome = abandoned
			break
		}
		time.Sleep(time.Duration(100+h.intn(200)) * time.Millisecond) // back off before asking again
		tr.outcome, tr.id = h.confirm(tr)
	}
	if tr.outcome == confirmed {
		tr.ackedAt = time.Now()
	}
}

// confirm asks the coordinator to confirm a transfer, once.
func (h *harness) confirm(tr *transfer) (outcome, string) {
	links := []link{tr.debit, tr.credit}
	if !tr.native {
		code, body, err := h.do("PUT", h.coordURL()+"/coordinator/confirm", "application/tcc+json", map[string]any{"participantLinks": links})
		return h.atomikosOutcome(code, body, err), ""
	}
	id := tr.id
	if id == "" {
		code, body, err := h.do("POST", h.coordURL()+"/api/v1/transactions", "application/json", map[string]any{"timeout": "30s", "participants": links})
		switch {
		case err != nil:
			h.lastAnswer.Store("begin: " + err.Error())
			return unknown, ""
		case code == http.StatusBadRequest:
			// A link expired before the begin (the coordinator was down
			// longer than its lifetime): nothing can be decided; the
			// reservations expire at their banks.
			return abandoned, ""
		case code != http.StatusCreated:
			if code == http.StatusServiceUnavailable && strings.Contains(string(body), "disk") {
				h.refusals.Add(1)
				return refusedLog, ""
			}
			h.lastAnswer.Store(fmt.Sprintf("begin: %d %s", code, body))
			return unknown, ""
		}
		var got struct{ ID string }
		json.Unmarshal(body, &got)
		id = got.ID
		if h.stream != nil {
			// Enlisted once: a message POST is not idempotent. Its answer
			// may be lost (a node killed); the record says.
			code, _, err := h.do("POST", h.coordURL()+"/api/v1/transactions/"+id+"/messages", "application/json",
				map[string]any{"subject": h.stream.Subject("transfer.done"), "data": map[string]any{"debit": tr.debit.URI, "amount": tr.amount}})
			tr.msgAcked = err == nil && code == http.StatusCreated
		}
	}
	code, body, err := h.do("PUT", h.coordURL()+"/api/v1/transactions/"+id+"/confirm", "", nil)
	if err != nil {
		h.lastAnswer.Store(err.Error())
		return unknown, id
	}
	h.lastAnswer.Store(fmt.Sprintf("%d %s", code, body))
	switch code {
	case http.StatusOK:
		return confirmed, id
	case http.StatusNotFound:
		return abandoned, id // the begin was lost in a crash: never decided
	case http.StatusConflict:
		var p struct{ State string }
		json.Unmarshal(body, &p)
		if p.State == "heuristic" {
			return heuristic, id
		}
		return timedOut, id
	case http.StatusServiceUnavailable:
		if strings.Contains(string(body), "disk") {
			h.refusals.Add(1)
			return refusedLog, id
		}
	}
	return unknown, id
}

func (h *harness) atomikosOutcome(code int, body []byte, err error) outcome {
	if err != nil {
		h.lastAnswer.Store(err.Error())
		return unknown
	}
	switch code {
	case http.StatusNoContent:
		return confirmed
	case http.StatusNotFound:
		return timedOut
	case http.StatusConflict:
		return heuristic
	case http.StatusServiceUnavailable:
		if strings.Contains(string(body), "disk") {
			h.refusals.Add(1)
			return refusedLog
		}
	}
	h.lastAnswer.Store(fmt.Sprintf("%d %s", code, body))
	return unknown
}

// inject applies a random fault every 0.5–2.5 s until ctx ends.
func (h *harness) inject(ctx context.Context) {
	type kind struct {
		name   string
		weight int
		apply  func()
	}
	kinds := []kind{
		{"coordinator SIGKILL", 4, func() { h.restartCoordinator(time.Duration(100+h.intn(900)) * time.Millisecond) }},
		{"coordinator down past link expiry", 1, func() { h.restartCoordinator(3500 * time.Millisecond) }},
		{"participant crash", 3, func() { h.restartBank(h.intn(*flagBanks), time.Duration(100+h.intn(700))*time.Millisecond) }},
		{"participant 5xx burst", 3, func() { h.fault(bankpart.Fault{Op: "any", Mode: "status", Status: 503, Count: 30}) }},
		{"participant slower than the call timeout", 2, func() { h.fault(bankpart.Fault{Op: "any", Mode: "slow", Delay: "1500ms", Count: 4}) }},
		{"participant connection reset", 2, func() { h.fault(bankpart.Fault{Op: "any", Mode: "reset", Count: 10}) }},
		{"lost reply", 3, func() { h.fault(bankpart.Fault{Op: "any", Mode: "lost_reply", Count: 10}) }},
		{"participant breaks its contract", 1, func() { h.fault(bankpart.Fault{Op: "confirm", Mode: "refuse", Count: 1}) }},
		{"confirm replies lost until expiry", 2, func() { h.fault(bankpart.Fault{Op: "confirm", Mode: "lost_until_expiry", Count: 2}) }},
		{"cancel refused after a lost confirm reply", 1, h.lostThenRefused},
		{"coordinator SIGTERM mid-confirm", 2, h.sigtermMidConfirm},
	}
	if h.diskDir != "" {
		kinds = append(kinds, kind{"disk full", 2, h.fillDisk})
	}
	if h.cluster() {
		kinds = append(kinds,
			kind{"node paused past its lease", 3, func() { h.pause(clusterTTL + time.Duration(500+h.intn(1000))*time.Millisecond) }},
			kind{"node paused briefly", 2, func() { h.pause(time.Duration(100+h.intn(900)) * time.Millisecond) }},
			kind{"every node down past link expiry", 1, func() { h.restartAll(3500 * time.Millisecond) }},
		)
	}
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	// Every kind once, in a random order, then at random by weight: even
	// a short run meets every fault.
	var order []int
	for i := range kinds {
		order = append(order, i)
	}
	h.rndMu.Lock()
	h.rnd.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	h.rndMu.Unlock()
	if h.cluster() {
		// The faults of the coordinators first: a short run of a cluster
		// meets all of them even if it ends before the last kinds.
		coordFirst := func(i int) int {
			if n := kinds[i].name; strings.HasPrefix(n, "coordinator") || strings.Contains(n, "node") {
				return 0
			}
			return 1
		}
		sort.SliceStable(order, func(i, j int) bool { return coordFirst(order[i]) < coordFirst(order[j]) })
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(500+h.intn(1500)) * time.Millisecond):
		}
		pick := -1
		if len(order) > 0 {
			pick, order = order[0], order[1:]
		} else {
			r := h.intn(total)
			for i, k := range kinds {
				if r < k.weight {
					pick = i
					break
				}
				r -= k.weight
			}
		}
		kinds[pick].apply()
		h.count(kinds[pick].name)
	}
}

// fault installs a fault at a random bank.
func (h *harness) fault(f bankpart.Fault) {
	h.faultAt(h.intn(*flagBanks), f)
}

// faultAt installs a fault at bank i.
func (h *harness) faultAt(i int, f bankpart.Fault) {
	h.mu.Lock()
	addr := h.bankAddrs[i]
	h.mu.Unlock()
	h.do("POST", "http://"+addr+"/admin/faults", "application/json", f)
}

// lostThenRefused runs one transfer in which the debit's confirm replies
// are lost until it expires (it confirmed, the coordinator cannot know)
// while the credit turns out cancelled (its bank lets it go before its
// expiry: a breach). The coordinator switches to cancel; the debit, in
// doubt, refuses the DELETE (it is confirmed). It must end heuristic —
// never reported cancelled.
func (h *harness) lostThenRefused() {
	from, to := h.intn(*flagBanks), h.intn(*flagBanks)
	fa, ta := h.intn(*flagAccounts), h.intn(*flagAccounts)
	if from == to && fa == ta {
		ta = (ta + 1) % *flagAccounts
	}
	debit, err := h.try(from, fa, "debit", 1, 3*time.Second)
	if err != nil {
		return
	}
	tr := &transfer{native: h.intn(2) == 0, debit: debit, amount: 1}
	h.tmu.Lock()
	h.transfers = append(h.transfers, tr)
	h.tmu.Unlock()
	credit, err := h.try(to, ta, "credit", 1, 3*time.Second)
	if err != nil {
		tr.outcome = abandoned
		return
	}
	tr.credit = credit
	h.faultAt(from, bankpart.Fault{Op: "confirm", Mode: "lost_until_expiry", Count: 1, Reservation: lastSegment(debit.URI)})
	h.faultAt(to, bankpart.Fault{Op: "confirm", Mode: "gone", Count: 1, Reservation: lastSegment(credit.URI)})
	// The outcome is known after the debit's expiry; the injector waits
	// for it (repeating the confirm, as a client does).
	tr.outcome, tr.id = h.confirm(tr)
	for tries := 0; (tr.outcome == unknown || tr.outcome == refusedLog) && tries < 100; tries++ {
		if tr.native && tr.id == "" {
			tr.outcome = abandoned
			return
		}
		time.Sleep(200 * time.Millisecond) // back off before asking again
		tr.outcome, tr.id = h.confirm(tr)
	}
}

func lastSegment(uri string) string { return uri[strings.LastIndexByte(uri, '/')+1:] }

// sigtermMidConfirm slows the banks' confirms, so that calls are in
// flight, then stops the coordinator with SIGTERM and starts it again:
// answers that arrive within the shutdown grace are recorded and the
// waiting requests get them.
func (h *harness) sigtermMidConfirm() {
	for i := range h.bankAddrs {
		h.faultAt(i, bankpart.Fault{Op: "confirm", Mode: "slow", Delay: "200ms", Count: 6})
	}
	time.Sleep(100 * time.Millisecond) // let confirms reach the slowed banks: the fault is the timing
	h.restart(h.intn(len(h.nodes)), time.Duration(100+h.intn(400))*time.Millisecond, true)
}

// fillDisk fills the coordinator's tmpfs to a few MiB short of full for
// about two seconds, then frees it.
func (h *harness) fillDisk() {
	filler := filepath.Join(h.diskDir, "filler")
	free, err := freeSpace(h.diskDir)
	if err != nil {
		h.t.Errorf("statfs: %v", err)
		return
	}
	f, err := os.Create(filler)
	if err != nil {
		h.t.Errorf("filler: %v", err)
		return
	}
	leave := int64(4 << 20) // below the coordinator's 8 MiB reserve
	buf := make([]byte, 1<<20)
	for written := int64(0); written < free-leave; written += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	h.diskFull.Store(true)
	// The coordinator must refuse to decide, clearly, while the disk is
	// nearly full...
	if !h.waitBegin(http.StatusServiceUnavailable, "nearly full", 3*time.Second) {
		h.diskAnomalies.Add(1)
		h.t.Errorf("disk nearly full, but the coordinator did not refuse a new transaction")
	}
	time.Sleep(time.Second) // the fault lasts a while longer
	h.diskFull.Store(false)
	os.Remove(filler)
	// ...and take decisions again once space returns.
	if !h.waitBegin(http.StatusCreated, "", 5*time.Second) {
		h.diskAnomalies.Add(1)
		h.t.Errorf("space returned, but the coordinator still refuses new transactions")
	}
}

// waitBegin begins transactions until one is answered with status (and a
// body containing text), or the time is up.
func (h *harness) waitBegin(status int, text string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		code, body, err := h.do("POST", h.coordURL()+"/api/v1/transactions", "application/json", map[string]any{"timeout": "1s"})
		if err == nil && code == status && strings.Contains(string(body), text) {
			return true
		}
		time.Sleep(50 * time.Millisecond) // the coordinator measures the disk every 50 ms
	}
	return false
}

// quiesce stops the faults, resolves every transfer without a definite
// answer by asking again, and waits until nothing is in flight anywhere.
func (h *harness) quiesce() {
	for _, a := range h.bankAddrs {
		h.do("DELETE", "http://"+a+"/admin/faults", "", nil)
	}
	for _, n := range h.nodes {
		testproc.WaitReady(h.t, "http://"+n.addr)
	}
	for _, tr := range h.transfers {
		if tr.outcome != unknown && tr.outcome != refusedLog {
			continue
		}
		if tr.native && tr.id == "" {
			tr.outcome = abandoned // see transfer: begin is not repeated
			continue
		}
		for attempt := 0; ; attempt++ {
			out, id := h.confirm(tr)
			tr.id = id
			if out != unknown {
				tr.outcome = out
				break
			}
			if attempt > 50 {
				h.t.Errorf("transfer %v (native %v, id %q): no answer after the faults stopped: %s", tr.debit.URI, tr.native, tr.id, h.lastAnswer.Load())
				break
			}
			time.Sleep(200 * time.Millisecond) // the coordinator is still settling it: ask again
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if h.coordinatorIdle() && h.banksIdle() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	h.t.Errorf("no quiescence within 90 s: %s", h.unsettled())
}

// unsettled describes what keeps the run from quiescing: the
// transactions not final (a few, with their participants) and the banks
// holding tried reservations.
func (h *harness) unsettled() string {
	var b strings.Builder
	for _, state := range []string{"active", "confirming", "cancelling", "compensating"} {
		_, body, err := h.do("GET", h.coordURL()+"/api/v1/transactions?limit=5&state="+state, "", nil)
		if err != nil {
			fmt.Fprintf(&b, "\n  %s: %v", state, err)
			continue
		}
		var l struct{ Transactions []json.RawMessage }
		json.Unmarshal(body, &l)
		for _, tx := range l.Transactions {
			fmt.Fprintf(&b, "\n  %s", tx)
		}
	}
	for _, a := range h.bankAddrs {
		au, err := h.audit(a)
		if err != nil {
			fmt.Fprintf(&b, "\n  bank %s: %v", a, err)
		} else if n := au.Reservations["tried"]; n != 0 {
			fmt.Fprintf(&b, "\n  bank %s: %d reservations tried", a, n)
		}
	}
	return b.String()
}

func (h *harness) listCount(state string) int {
	_, body, err := h.do("GET", h.coordURL()+"/api/v1/transactions?limit=1000&state="+state, "", nil)
	if err != nil {
		return -1
	}
	var l struct{ Transactions []json.RawMessage }
	json.Unmarshal(body, &l)
	return len(l.Transactions)
}

// coordinatorIdle reports whether every transaction has ended. Active
// ones count too: a native begin whose answer was lost (its node killed,
// or every node) leaves one that its initiator abandoned, which ends only
// at its timeout — and the checks need its final state.
func (h *harness) coordinatorIdle() bool {
	return h.listCount("active") == 0 && h.listCount("confirming") == 0 && h.listCount("cancelling") == 0
}

func (h *harness) audit(addr string) (bankpart.Audit, error) {
	_, body, err := h.do("GET", "http://"+addr+"/audit", "", nil)
	var a bankpart.Audit
	if err == nil {
		err = json.Unmarshal(body, &a)
	}
	return a, err
}

func (h *harness) banksIdle() bool {
	for _, a := range h.bankAddrs {
		au, err := h.audit(a)
		if err != nil || au.Reservations["tried"] != 0 {
			return false
		}
	}
	return true
}

func (h *harness) reservationState(uri string) string {
	_, body, err := h.do("GET", uri, "", nil)
	if err != nil {
		return "error: " + err.Error()
	}
	var r struct{ State string }
	json.Unmarshal(body, &r)
	return r.State
}

// record is what the coordinator's record says of one participant.
type record struct {
	txID, txState, reason, state string
}

// records lists every transaction the coordinator holds, by participant URI.
func (h *harness) records() (map[string]record, error) {
	out := map[string]record{}
	cursor := ""
	for {
		code, body, err := h.do("GET", h.coordURL()+"/api/v1/transactions?limit=1000&cursor="+cursor, "", nil)
		if err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("list: %d %v %s", code, err, body)
		}
		var l struct {
			Transactions []struct {
				ID, State, Reason string
				Participants      []struct{ URI, State string }
			}
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &l); err != nil {
			return nil, err
		}
		for _, tx := range l.Transactions {
			for _, p := range tx.Participants {
				out[p.URI] = record{txID: tx.ID, txState: tx.State, reason: tx.Reason, state: p.State}
			}
		}
		if l.NextCursor == "" {
			return out, nil
		}
		cursor = l.NextCursor
	}
}

// checkRecords holds the coordinator to the truth: every participant
// state it recorded agrees with what the bank did, and every answer a
// client got agrees with the record.
func (h *harness) checkRecords(add func(string, ...any), breaches map[string]bool) {
	recs, err := h.records()
	if err != nil {
		add("cannot list the coordinator's records: %v", err)
		return
	}
	answer := map[outcome]string{confirmed: "confirmed", timedOut: "cancelled", heuristic: "heuristic"}
	for _, tr := range h.transfers {
		if tr.credit.URI == "" {
			continue
		}
		rd, okd := recs[tr.debit.URI]
		rc, okc := recs[tr.credit.URI]
		if want, ok := answer[tr.outcome]; ok {
			if !okd || !okc {
				// Purged after the retention: nothing left to compare.
				continue
			}
			if rd.txState != want || rc.txState != want {
				add("transfer %s was answered %s, but the record says %s (%s)", tr.debit.URI, tr.outcome, rd.txState, rd.txID)
			}
		}
		for _, l := range []struct {
			uri string
			rec record
			ok  bool
		}{{tr.debit.URI, rd, okd}, {tr.credit.URI, rc, okc}} {
			if !l.ok {
				continue
			}
			bank := h.reservationState(l.uri)
			switch l.rec.state {
			case "confirmed":
				if bank != "confirmed" {
					add("%s recorded confirmed at the coordinator, %s at its bank (transaction %s)", l.uri, bank, l.rec.txID)
				}
			case "cancelled", "expired", "failed":
				if bank == "confirmed" {
					add("%s recorded %s at the coordinator, but confirmed at its bank (transaction %s, %s)", l.uri, l.rec.state, l.rec.txID, l.rec.txState)
				}
			case "cancel_refused":
				if bank != "confirmed" && !breaches[l.uri] {
					add("%s recorded cancel_refused, %s at its bank (transaction %s)", l.uri, bank, l.rec.txID)
				}
			default:
				add("%s is %s at the coordinator after quiescence (transaction %s, %s)", l.uri, l.rec.state, l.rec.txID, l.rec.txState)
			}
		}
	}
}

// check verifies the invariants and returns the anomalies.
func (h *harness) check() []string {
	var anomalies []string
	add := func(format string, args ...any) { anomalies = append(anomalies, fmt.Sprintf(format, args...)) }
	breaches := map[string]bool{}
	var total, initial int64
	for _, a := range h.bankAddrs {
		au, err := h.audit(a)
		if err != nil {
			add("bank %s: audit: %v", a, err)
			continue
		}
		if !au.Conserved {
			add("bank %s: money not conserved: %+v", a, au)
		}
		if au.DoubleSettled != 0 {
			add("bank %s: %d reservations settled twice (confirmed and cancelled)", a, au.DoubleSettled)
		}
		if au.DebitHolds != 0 || au.CreditHolds != 0 {
			add("bank %s: holds left after quiescence: %+v", a, au)
		}
		for _, b := range au.Breaches {
			breaches["http://"+a+"/transfers/"+b] = true
		}
		total += au.Balances
		initial += au.Initial
	}
	// Overall, money is conserved except by heuristic transfers, which
	// the checks below attribute; account for their half-done amounts.
	expected := initial
	for _, tr := range h.transfers {
		if tr.outcome != heuristic || tr.credit.URI == "" {
			continue
		}
		if h.reservationState(tr.credit.URI) == "confirmed" {
			expected += tr.amount
		}
		if h.reservationState(tr.debit.URI) == "confirmed" {
			expected -= tr.amount
		}
	}
	if total != expected {
		add("money not conserved overall: %d, expected %d (initially %d)", total, expected, initial)
	}
	if n := h.diskAnomalies.Load(); n != 0 {
		add("%d disk-full faults not refused or not recovered from", n)
	}
	if n := h.listCount("confirming") + h.listCount("cancelling"); n != 0 {
		add("%d transactions not final at the coordinator", n)
	}
	h.checkRecords(add, breaches)
	if h.stream != nil {
		h.checkMessages(add)
	}
	for _, tr := range h.transfers {
		if tr.credit.URI == "" {
			if s := h.reservationState(tr.debit.URI); s == "confirmed" {
				add("debit %s confirmed without a credit", tr.debit.URI)
			}
			continue
		}
		d, c := h.reservationState(tr.debit.URI), h.reservationState(tr.credit.URI)
		breached := breaches[tr.debit.URI] || breaches[tr.credit.URI]
		switch tr.outcome {
		case confirmed:
			if d != "confirmed" || c != "confirmed" {
				add("acknowledged transfer not confirmed everywhere: debit %s, credit %s (%s)", d, c, tr.debit.URI)
			}
		case heuristic:
			switch {
			case breached:
				h.attributed.Add("participant broke its contract")
			case (d == "expired" && h.expiredWhileDown(tr.debit)) || (c == "expired" && h.expiredWhileDown(tr.credit)):
				if h.cluster() {
					h.attributed.Add("a link expired while its node was down or paused")
				} else {
					h.attributed.Add("a link expired while the coordinator was down")
				}
			default:
				add("heuristic outcome without a cause: debit %s, credit %s (%s)", d, c, tr.debit.URI)
			}
		default:
			if (d == "confirmed") != (c == "confirmed") && !breached {
				add("transfer %s ended %s: debit %s, credit %s", tr.debit.URI, tr.outcome, d, c)
			}
			if (tr.outcome == timedOut || tr.outcome == abandoned) && (d == "confirmed" || c == "confirmed") {
				add("transfer reported %s but confirmed at a participant: %s", tr.outcome, tr.debit.URI)
			}
		}
	}
	return anomalies
}

// checkMessages holds the coordinator to "published if and only if the
// transaction confirmed, exactly once": every message in the stream was
// stored once; every message of a confirmed transaction is there, none of
// another; a message whose enlisting was acknowledged is in its
// transaction's record.
func (h *harness) checkMessages(add func(string, ...any)) {
	stored := map[string]int{}
	for _, m := range h.stream.ReadAll("campaign") {
		stored[m.ID]++
	}
	for id, n := range stored {
		if n != 1 {
			add("message %s stored %d times", id, n)
		}
	}
	for _, tr := range h.transfers {
		if !tr.native || tr.id == "" {
			continue
		}
		code, body, err := h.do("GET", h.coordURL()+"/api/v1/transactions/"+tr.id, "", nil)
		if err != nil || code == http.StatusNotFound {
			continue // purged after the retention (or a begin that never was)
		}
		var tx struct {
			State        string
			Participants []struct {
				URI, Style, State string
				MessageID         string `json:"message_id"`
			}
		}
		if code != http.StatusOK || json.Unmarshal(body, &tx) != nil {
			add("transaction %s: %d %s", tr.id, code, body)
			continue
		}
		msgs := 0
		for _, p := range tx.Participants {
			if p.Style != "message" {
				continue
			}
			msgs++
			n := stored[p.MessageID]
			switch {
			case tx.State == "confirmed" && (n != 1 || p.State != "confirmed"):
				add("confirmed transaction %s: message %s recorded %s, stored %d times", tr.id, p.MessageID, p.State, n)
			case tx.State != "confirmed" && n != 0:
				add("%s transaction %s: its message %s was published", tx.State, tr.id, p.MessageID)
			case tx.State == "confirmed":
				h.messages++
			}
		}
		if tr.msgAcked && msgs == 0 {
			add("transaction %s: its message was acknowledged but is not in the record", tr.id)
		}
	}
}

func (h *harness) summary(seed uint64, duration time.Duration, anomalies []string) {
	var b strings.Builder
	fmt.Fprintf(&b, "fault campaign: seed %d, %s, %d banks × %d accounts, %d initiators\n", seed, duration, *flagBanks, *flagAccounts, *flagWorkers)
	if h.cluster() {
		fmt.Fprintf(&b, "coordinators: %d nodes on one PostgreSQL database, lease TTL %v\n", len(h.nodes), clusterTTL)
	} else if h.store != "" {
		fmt.Fprintf(&b, "coordinator: one node on PostgreSQL\n")
	}
	outcomes := map[outcome]int{}
	for _, tr := range h.transfers {
		outcomes[tr.outcome]++
	}
	fmt.Fprintf(&b, "transactions: %d\n", len(h.transfers))
	var keys []string
	for k := range outcomes {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-12s %d\n", k, outcomes[outcome(k)])
	}
	fmt.Fprintf(&b, "faults injected:\n")
	var fk []string
	h.faults.Range(func(k, v any) bool {
		fk = append(fk, fmt.Sprintf("  %-42s %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(fk)
	b.WriteString(strings.Join(fk, "\n") + "\n")
	if h.stream != nil {
		fmt.Fprintf(&b, "messages of confirmed transfers published, each once: %d\n", h.messages)
	}
	fmt.Fprintf(&b, "decisions refused while the disk was full: %d\n", h.refusals.Load())
	fmt.Fprintf(&b, "heuristic outcomes, by cause:\n%s", h.attributed.String())
	fmt.Fprintf(&b, "anomalies: %d\n", len(anomalies))
	for _, a := range anomalies {
		fmt.Fprintf(&b, "  %s\n", a)
	}
	h.t.Log("\n" + b.String())
}

// freeSpace returns the bytes available in the file system holding dir.
func freeSpace(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// counter counts strings.
type counter struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counter) Add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k]++
}

func (c *counter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) == 0 {
		return "  none\n"
	}
	var lines []string
	for k, v := range c.m {
		lines = append(lines, fmt.Sprintf("  %-42s %d", k, v))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}
