package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// TestInflightWorkload runs the inflight workload end to end with tiny
// numbers against the real binary: it proves the figures come out
// positive and finite, it does not judge them.
func TestInflightWorkload(t *testing.T) {
	bin := bins["tccd"]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cfg := Config{
		Self: bin, Workload: WorkloadInflight, Count: 50, Confirming: 20, Concurrency: 4,
		JSON: true, Out: &out, Err: &errOut,
	}
	if err := Run(ctx, cfg); err != nil {
		t.Fatalf("inflight: %v\nstderr:\n%s", err, errOut.String())
	}
	var rep InflightReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, out.String())
	}
	t.Logf("%s", out.String())
	if rep.Workload != WorkloadInflight || rep.Participants != 2 || rep.Note == "" ||
		rep.Active.Transactions != 50 || rep.Active.Errors != 0 ||
		rep.Confirming.Transactions != 20 || rep.Confirming.Errors != 0 {
		t.Fatalf("implausible report: %s\nstderr:\n%s", out.String(), errOut.String())
	}
	finite := func(name string, v float64, positive bool) {
		t.Helper()
		if math.IsNaN(v) || math.IsInf(v, 0) || (positive && v <= 0) {
			t.Errorf("%s = %v, want a finite%s figure", name, v, map[bool]string{true: " positive"}[positive])
		}
	}
	finite("heap_per_active_tx_bytes", rep.HeapPerActiveTxBytes, true)
	finite("stack_per_active_tx_bytes", rep.StackPerActiveTxBytes, false)
	finite("goroutines_per_active_tx", rep.GoroutinesPerActiveTx, false)
	finite("heap_per_confirming_tx_bytes", rep.HeapPerConfirmingTxBytes, true)
	finite("stack_per_confirming_tx_bytes", rep.StackPerConfirmingTxBytes, true)
	finite("goroutines_per_confirming_tx", rep.GoroutinesPerConfirmingTx, true)

	// The table prints too.
	out.Reset()
	rep.writeTable(&out)
	for _, want := range []string{"active", "confirming", "no null-coordinator baseline", "connection buffers"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
