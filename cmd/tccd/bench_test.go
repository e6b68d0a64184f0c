package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/pgtest"
	"github.com/tccd/tccd/internal/testproc"
)

// TestBenchSmoke runs a very short `tccd bench --json` with the real
// binary: it proves the benchmark works end to end (it does not judge speed).
// The barrier workload is measured against the one-shot workload on the
// same coordinator, without the null baselines.
func TestBenchSmoke(t *testing.T) {
	dir := t.TempDir()
	chart := filepath.Join(dir, "lat.svg")
	for _, workload := range []string{"oneshot", "registered", "cancel-mix", "barrier"} {
		t.Run(workload, func(t *testing.T) {
			cmd := exec.Command(bins["tccd"], "bench", "--json", "--workload", workload, "--participants", "1,2",
				"--duration", "300ms", "--warmup", "0s", "--rounds", "1", "--concurrency", "4", "--chart", chart)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("bench: %v\n%s", err, stderr.String())
			}
			var rep struct {
				Workload    string  `json:"workload"`
				Concurrency int     `json:"concurrency"`
				TxPerS      float64 `json:"tx_per_s"`
				P50MS       float64 `json:"p50_ms"`
				P99MS       float64 `json:"p99_ms"`
				Errors      *int    `json:"errors"`
				CPU         float64 `json:"cpu_us_per_tx"`
				Baseline    struct {
					TxPerS float64 `json:"tx_per_s"`
					P99MS  float64 `json:"p99_ms"`
					Errors *int    `json:"errors"`
				} `json:"baseline"`
				Ratio       float64 `json:"ratio"`
				Fsync       float64 `json:"fsync_per_s"`
				LogBaseline *struct {
					TxPerS float64 `json:"tx_per_s"`
					Errors *int    `json:"errors"`
				} `json:"log_baseline"`
				LogRatio     float64 `json:"log_baseline_ratio"`
				BaselineName string  `json:"baseline_name"`
				Curve        []struct {
					Participants int     `json:"participants"`
					TxPerS       float64 `json:"tx_per_s"`
				} `json:"curve"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("--json output is not one JSON object: %v\n%s", err, stdout.String())
			}
			if rep.Workload != workload || rep.Concurrency != 4 || rep.TxPerS <= 0 || rep.P50MS <= 0 || rep.P99MS < rep.P50MS ||
				rep.Errors == nil || *rep.Errors != 0 || rep.Baseline.TxPerS <= 0 || rep.Baseline.Errors == nil || *rep.Baseline.Errors != 0 ||
				rep.Ratio <= 0 || rep.Fsync <= 0 || rep.CPU <= 0 {
				t.Fatalf("implausible report: %s\nstderr:\n%s", stdout.String(), stderr.String())
			}
			if workload == "barrier" {
				if rep.BaselineName != "tccd one-shot" || rep.LogBaseline != nil {
					t.Fatalf("the barrier workload's baseline is %q (log baseline %v); want tccd one-shot alone", rep.BaselineName, rep.LogBaseline)
				}
			} else if rep.BaselineName != "null coordinator" || rep.LogBaseline == nil || rep.LogBaseline.TxPerS <= 0 ||
				rep.LogBaseline.Errors == nil || *rep.LogBaseline.Errors != 0 || rep.LogRatio <= 0 {
				t.Fatalf("null+log baseline missing or implausible: %s", stdout.String())
			}
			if len(rep.Curve) != 2 || rep.Curve[1].Participants != 2 || rep.Curve[1].TxPerS <= 0 {
				t.Fatalf("curve: %+v", rep.Curve)
			}
			svg, err := os.ReadFile(chart)
			if err != nil || !strings.Contains(string(svg), "<polyline") {
				t.Fatalf("chart: %v", err)
			}
		})
	}
}

// TestDebugHeap checks the benchmark's heap endpoint: JSON figures on the
// debug listener, nothing on the API's.
func TestDebugHeap(t *testing.T) {
	co := testproc.StartTccd(t, bins["tccd"], "--data", t.TempDir(), "--debug-listen", "127.0.0.1:0")
	// The line is written before the server is ready, but may reach the
	// test's copy of the log a little later.
	var debugAddr string
	for deadline := time.Now().Add(10 * time.Second); debugAddr == ""; time.Sleep(5 * time.Millisecond) {
		for _, line := range strings.Split(co.Log(), "\n") {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "debug server listening" {
				debugAddr = rec.Addr
			}
		}
		if debugAddr == "" && time.Now().After(deadline) {
			t.Fatalf("no debug listener in the log:\n%s", co.Log())
		}
	}
	resp, err := http.Get("http://" + debugAddr + "/debug/heap")
	if err != nil {
		t.Fatal(err)
	}
	var hs struct {
		HeapAlloc   *int64 `json:"heap_alloc"`
		HeapObjects *int64 `json:"heap_objects"`
		StackInuse  *int64 `json:"stack_inuse"`
		Goroutines  *int64 `json:"goroutines"`
	}
	err = json.NewDecoder(resp.Body).Decode(&hs)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || hs.HeapAlloc == nil || *hs.HeapAlloc <= 0 || hs.HeapObjects == nil ||
		*hs.HeapObjects <= 0 || hs.StackInuse == nil || *hs.StackInuse <= 0 || hs.Goroutines == nil || *hs.Goroutines <= 0 {
		t.Fatalf("debug heap: HTTP %d, %v, %+v", resp.StatusCode, err, hs)
	}
	resp, err = http.Get(co.URL() + "/debug/heap")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("API listener answers /debug/heap with HTTP %d, want 404", resp.StatusCode)
	}
}

// TestBenchCluster runs a very short `tccd bench --store … --nodes 1,2`:
// one and two nodes on one PostgreSQL database against the null
// coordinator, with each node's CPU and the server's counters.
func TestBenchCluster(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	cmd := exec.Command(bins["tccd"], "bench", "--json", "--store", dsn, "--nodes", "1,2",
		"--duration", "300ms", "--warmup", "0s", "--rounds", "1", "--concurrency", "4", "--chart", "")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	var rep struct {
		Store    string `json:"store"`
		Baseline struct {
			TxPerS float64 `json:"tx_per_s"`
		} `json:"baseline"`
		Nodes []struct {
			Nodes      int       `json:"nodes"`
			TxPerS     float64   `json:"tx_per_s"`
			P50MS      float64   `json:"p50_ms"`
			P99MS      float64   `json:"p99_ms"`
			Errors     *int      `json:"errors"`
			Ratio      float64   `json:"ratio"`
			CPU        float64   `json:"cpu_us_per_tx"`
			CPUPerNode []float64 `json:"cpu_us_per_tx_per_node"`
			Writes     float64   `json:"pg_write_tx_per_s"`
			Commits    *float64  `json:"pg_commits_per_s"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, stdout.String())
	}
	if rep.Store != "postgres" || rep.Baseline.TxPerS <= 0 || len(rep.Nodes) != 2 {
		t.Fatalf("implausible report: %s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	for i, n := range rep.Nodes {
		if n.Nodes != i+1 || n.TxPerS <= 0 || n.P50MS <= 0 || n.P99MS < n.P50MS || n.Errors == nil || *n.Errors != 0 || n.Ratio <= 0 ||
			n.CPU <= 0 || len(n.CPUPerNode) != i+1 || n.Writes <= 0 || n.Commits == nil {
			t.Fatalf("implausible figures for %d nodes: %+v\n%s", i+1, n, stdout.String())
		}
	}
}
