package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/internal/pgtest"
	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/internal/testproc"
)

// families is a parsed scrape.
type families map[string]*dto.MetricFamily

// get returns the value of the series of name whose labels include the
// given pairs (a counter's or gauge's value, a histogram's count); 0
// when there is none. With several matching series it sums them.
func (f families) get(name string, labels ...string) float64 {
	fam := f[name]
	if fam == nil {
		return 0
	}
	sum := 0.0
next:
	for _, m := range fam.Metric {
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
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// scrapeAt GETs url (with a bearer token unless "") and parses it as
// Prometheus does; it returns the status when it is not 200.
func scrapeAt(c *http.Client, url, token string) (families, int, error) {
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, nil
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return nil, resp.StatusCode, fmt.Errorf("content type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("parse: %w\n%s", err, body)
	}
	return fams, resp.StatusCode, nil
}

// awaitMetrics scrapes url until check passes, failing the test with
// check's last complaint after 30 seconds. The gauges of unfinished work
// are read from the store at most once a second: figures that just
// changed can take that long to show.
func awaitMetrics(t *testing.T, c *http.Client, url, token string, check func(f families) error) families {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, code, err := scrapeAt(c, url, token)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d", code)
		}
		if err == nil {
			if err = check(f); err == nil {
				return f
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics at %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// expect is a check of awaitMetrics: each want is a series (name and
// label pairs) and its value.
type want struct {
	name   string
	labels []string
	value  float64
}

func expect(wants ...want) func(families) error {
	return func(f families) error {
		var errs []string
		for _, w := range wants {
			if got := f.get(w.name, w.labels...); got != w.value {
				errs = append(errs, fmt.Sprintf("%s%v = %v, want %v", w.name, w.labels, got, w.value))
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	}
}

// txRig runs registered transactions against a tccd process and two
// participant processes.
type txRig struct {
	t      *testing.T
	c      *http.Client
	p1, p2 *testproc.Proc
}

// begin makes a reservation at each participant and begins a transaction
// with them; it returns its id.
func (r *txRig) begin(base string, header http.Header) string {
	r.t.Helper()
	var links []link
	for _, p := range []*testproc.Proc{r.p1, r.p2} {
		l, err := try(r.t, r.c, p.URL())
		if err != nil {
			r.t.Fatal(err)
		}
		links = append(links, l)
	}
	b, _ := json.Marshal(map[string]any{"timeout": "5m", "participants": links})
	req, _ := http.NewRequest("POST", base+"/api/v1/transactions", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := r.c.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusCreated {
		r.t.Fatalf("begin: %d %v", resp.StatusCode, err)
	}
	return got.ID
}

// decide PUTs …/confirm or …/cancel and returns the status.
func (r *txRig) decide(base, id, what string, header http.Header) int {
	r.t.Helper()
	req, _ := http.NewRequest("PUT", base+"/api/v1/transactions/"+id+"/"+what, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := r.c.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// participantState returns the state of participant i of transaction id.
func (r *txRig) participantState(base, id string, i int) string {
	r.t.Helper()
	code, body, err := do(r.c, "GET", base+"/api/v1/transactions/"+id, "", nil)
	if err != nil || code != http.StatusOK {
		r.t.Fatalf("GET %s: %d %v", id, code, err)
	}
	var tx struct {
		Participants []struct{ State string }
	}
	if err := json.Unmarshal(body, &tx); err != nil || len(tx.Participants) <= i {
		r.t.Fatalf("transaction %s: %v %s", id, err, body)
	}
	return tx.Participants[i].State
}

// TestMetricsProcess runs a real tccd process against real participants,
// confirms and cancels transactions, loses a participant's replies, and
// restarts tccd, scraping /metrics at each step: the figures must be
// what happened, never more — a lost reply is an error, not a 2xx, and
// the gauges of unfinished work are right after the restart.
func TestMetricsProcess(t *testing.T) {
	r := &txRig{t: t, c: &http.Client{Timeout: 30 * time.Second}}
	r.p1 = testproc.StartParticipant(t, bins["testpart"])
	r.p2 = testproc.StartParticipant(t, bins["testpart"])
	flags := []string{"--data", t.TempDir(), "--retry-min", "10ms", "--retry-max", "50ms", "--shutdown-grace", "1s"}
	co := testproc.StartTccd(t, bins["tccd"], flags...)
	url := co.URL() + "/metrics"

	// Before anything: the series are there, at zero, with Go's and the
	// process's.
	f := awaitMetrics(t, r.c, url, "", expect(
		want{"tccd_transactions_in_flight", []string{"state", "active"}, 0},
		want{"tccd_in_doubt_participants", nil, 0},
		want{"tccd_build_info", nil, 1},
	))
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes", "tccd_in_doubt_participants"} {
		if f[name] == nil {
			t.Errorf("no %s in the scrape", name)
		}
	}

	for range 3 {
		if code := r.decide(co.URL(), r.begin(co.URL(), nil), "confirm", nil); code != http.StatusOK {
			t.Fatalf("confirm: %d", code)
		}
	}
	for range 2 {
		if code := r.decide(co.URL(), r.begin(co.URL(), nil), "cancel", nil); code != http.StatusOK {
			t.Fatalf("cancel: %d", code)
		}
	}
	r.begin(co.URL(), nil) // left active

	// p1 confirms, and its reply is lost, every time: p1 is in doubt.
	setFault(t, r.c, r.p1, &testpart.Fault{Op: "confirm", Count: -1, ApplyThenFail: true})
	async := http.Header{"Prefer": {"respond-async"}}
	doubtful := r.begin(co.URL(), nil)
	if code := r.decide(co.URL(), doubtful, "confirm", async); code != http.StatusAccepted {
		t.Fatalf("async confirm: %d", code)
	}
	waitUntil(t, "p1 in doubt", 30*time.Second, func() bool { return r.participantState(co.URL(), doubtful, 0) == "in_doubt" })

	f = awaitMetrics(t, r.c, url, "", expect(
		want{"tccd_transactions_started_total", nil, 7},
		want{"tccd_transactions_finished_total", []string{"state", "confirmed", "reason", "requested"}, 3},
		want{"tccd_transactions_finished_total", []string{"state", "cancelled", "reason", "requested"}, 2},
		want{"tccd_transactions_finished_total", nil, 5},
		want{"tccd_transactions_in_flight", []string{"state", "active"}, 1},
		want{"tccd_transactions_in_flight", []string{"state", "confirming"}, 1},
		want{"tccd_transactions_in_flight", []string{"state", "cancelling"}, 0},
		want{"tccd_in_doubt_participants", nil, 1},
		// Every confirm answered, and p2's of the doubtful one; p1's
		// applied confirms whose replies were lost are not among them.
		want{"tccd_participant_calls_total", []string{"phase", "confirm", "outcome", "2xx"}, 7},
		want{"tccd_participant_calls_total", []string{"phase", "cancel", "outcome", "2xx"}, 4},
		want{"tccd_participant_call_duration_seconds", []string{"phase", "cancel"}, 4},
		want{"tccd_decision_duration_seconds", nil, 6},
		want{"tccd_confirm_duration_seconds", nil, 5},
	))
	if lost := f.get("tccd_participant_calls_total", "phase", "confirm", "outcome", "error"); lost < 1 {
		t.Errorf("%v confirm calls counted as errors, want at least the first lost reply", lost)
	}
	if calls := participantStats(t, r.c, r.p1.URL()).ConfirmCalls; f.get("tccd_participant_calls_total", "phase", "confirm") > float64(calls+participantStats(t, r.c, r.p2.URL()).ConfirmCalls) {
		t.Errorf("more confirm calls counted than the participants received")
	}
	if n := f.get("tccd_store_write_duration_seconds", "synced", "true"); n < 6 {
		t.Errorf("%v synced writes timed, want at least the 6 decisions", n)
	}
	if n := f.get("tccd_store_write_failures_total"); n != 0 {
		t.Errorf("%v store failures", n)
	}

	// A restart: the counters start again from zero, the gauges of
	// unfinished work come from the store.
	if err := co.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	co = testproc.StartTccd(t, bins["tccd"], flags...)
	url = co.URL() + "/metrics"
	awaitMetrics(t, r.c, url, "", expect(
		want{"tccd_transactions_started_total", nil, 0},
		want{"tccd_transactions_in_flight", []string{"state", "active"}, 1},
		want{"tccd_transactions_in_flight", []string{"state", "confirming"}, 1},
		want{"tccd_in_doubt_participants", nil, 1},
	))

	// The replies come through again: p1 confirms, and so does the
	// transaction.
	setFault(t, r.c, r.p1, nil)
	f = awaitMetrics(t, r.c, url, "", expect(
		want{"tccd_transactions_finished_total", []string{"state", "confirmed", "reason", "requested"}, 1},
		want{"tccd_transactions_in_flight", []string{"state", "confirming"}, 0},
		want{"tccd_in_doubt_participants", nil, 0},
		want{"tccd_confirm_duration_seconds", []string{"state", "confirmed"}, 1},
	))
	if ok := f.get("tccd_participant_calls_total", "phase", "confirm", "outcome", "2xx"); ok < 1 {
		t.Errorf("%v confirms answered 2xx after the restart, want p1's", ok)
	}
}

// TestMetricsAuth: with authentication on, /metrics on the API listener
// is for admins; metrics-listen serves it on an address of its own,
// without a token, and the API listener then has no /metrics.
func TestMetricsAuth(t *testing.T) {
	dir := t.TempDir()
	tokens := map[string]string{}
	var lines []string
	for _, p := range []struct{ name, role string }{{"billing", "client"}, {"ops", "admin"}} {
		tok, err := tccdhttp.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		tokens[p.name] = tok
		lines = append(lines, p.name+" "+p.role+" "+tccdhttp.HashToken(tok))
	}
	file := filepath.Join(dir, "tokens")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second}

	t.Run("on the API listener", func(t *testing.T) {
		co := testproc.StartTccd(t, bins["tccd"], "--data", t.TempDir(), "--auth-tokens-file", file)
		for _, tc := range []struct {
			who  string
			code int
		}{{"", http.StatusUnauthorized}, {"billing", http.StatusForbidden}, {"ops", http.StatusOK}} {
			f, code, err := scrapeAt(c, co.URL()+"/metrics", tokens[tc.who])
			if err != nil || code != tc.code {
				t.Errorf("GET /metrics as %q: %d %v, want %d", tc.who, code, err, tc.code)
			}
			if code == http.StatusOK && f["tccd_transactions_in_flight"] == nil {
				t.Errorf("the admin's scrape has no tccd_transactions_in_flight")
			}
		}
	})

	t.Run("metrics-listen", func(t *testing.T) {
		co := testproc.StartTccd(t, bins["tccd"], "--data", t.TempDir(), "--auth-tokens-file", file, "--metrics-listen", "127.0.0.1:0")
		recs := logRecords(co, "metrics server listening")
		if len(recs) != 1 {
			t.Fatalf("no 'metrics server listening' line:\n%s", co.Log())
		}
		addr, _ := recs[0]["addr"].(string)
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Fatalf("metrics address %q", addr)
		}
		f, code, err := scrapeAt(c, "http://"+addr+"/metrics", "")
		if err != nil || code != http.StatusOK || f["tccd_transactions_started_total"] == nil {
			t.Errorf("GET /metrics on metrics-listen: %d %v", code, err)
		}
		if _, code, err := scrapeAt(c, co.URL()+"/metrics", tokens["ops"]); err != nil || code != http.StatusNotFound {
			t.Errorf("GET /metrics on the API listener: %d %v, want 404", code, err)
		}
	})
}

// TestMetricsCluster: two nodes on one PostgreSQL database each report
// what they observed. A transaction begun on one and confirmed on the
// other is started on the first and finished on the second; the gauges
// of unfinished work count the records each node owns, once in all.
func TestMetricsCluster(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	p := testproc.StartParticipant(t, bins["testpart"])
	cl := startCluster(t, dsn, 2)
	c := &http.Client{Timeout: 30 * time.Second}
	scrapeNode := func(i int, wants ...want) {
		t.Helper()
		awaitMetrics(t, c, cl.url(i)+"/metrics", "", expect(wants...))
	}
	// One stays active on node 0; the other is confirmed on node 1.
	if _, err := beginAt(c, cl.url(0), tries(t, c, p), "5m"); err != nil {
		t.Fatal(err)
	}
	moved, err := beginAt(c, cl.url(0), tries(t, c, p), "5m")
	if err != nil {
		t.Fatal(err)
	}
	scrapeNode(0, want{"tccd_transactions_started_total", nil, 2}, want{"tccd_transactions_in_flight", []string{"state", "active"}, 2})
	scrapeNode(1, want{"tccd_transactions_started_total", nil, 0}, want{"tccd_transactions_in_flight", []string{"state", "active"}, 0})

	if code, body, err := do(c, "PUT", cl.url(1)+"/api/v1/transactions/"+moved+"/confirm", "", nil); err != nil || code != http.StatusOK {
		t.Fatalf("confirm at node 1: %d %v %s", code, err, body)
	}
	scrapeNode(0,
		want{"tccd_transactions_finished_total", nil, 0},
		want{"tccd_transactions_in_flight", []string{"state", "active"}, 1},
		want{"tccd_participant_calls_total", nil, 0})
	scrapeNode(1,
		want{"tccd_transactions_started_total", nil, 0},
		want{"tccd_transactions_finished_total", []string{"state", "confirmed", "reason", "requested"}, 1},
		want{"tccd_decision_duration_seconds", nil, 1},
		want{"tccd_participant_calls_total", []string{"phase", "confirm", "outcome", "2xx"}, 1},
		want{"tccd_transactions_in_flight", []string{"state", "active"}, 0})
}
