package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchSmoke runs a very short `tccd bench --json` with the real
// binary: it proves the benchmark works end to end (it does not judge speed).
func TestBenchSmoke(t *testing.T) {
	dir := t.TempDir()
	chart := filepath.Join(dir, "lat.svg")
	for _, workload := range []string{"oneshot", "registered", "cancel-mix"} {
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
				Ratio float64 `json:"ratio"`
				Fsync float64 `json:"fsync_per_s"`
				Curve []struct {
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
