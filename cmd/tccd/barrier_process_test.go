package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/internal/testproc"
)

// TestBarrierCoordinatorKilled SIGKILLs the real tccd in the middle of a
// barrier round, with real participant processes on the kit (testpart
// --coordinator), and restarts it on the same data directory and address.
//
// Before the commit record: participant b holds its confirm before
// applying it, so the round waits for b's report while a, having
// reported, waits for the outcome with its confirm applied and open. The
// restarted coordinator aborts that round and runs a new one.
//
// After the commit record: both participants have reported and heard
// "commit", and hold there, their confirms open, until the kill ends the
// calls (they roll back). The restarted coordinator finishes the
// committed round: it asks again with the same keys, and each applies its
// confirm again and commits.
//
// Either way no participant commits while the coordinator is down, the
// transaction ends confirmed, and each participant's business confirm
// commits exactly once.
func TestBarrierCoordinatorKilled(t *testing.T) {
	for _, tt := range []struct {
		name        string
		afterCommit bool
	}{
		{"before the commit record", false},
		{"after the commit record", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := t.TempDir()
			flags := []string{"--data", data, "--retry-min", "10ms", "--retry-max", "100ms", "--barrier-wait", "20s", "--shutdown-grace", "1s"}
			co := testproc.StartTccd(t, bins["tccd"], flags...)
			flags = append(flags, "--listen", co.Addr) // the participants report to this address
			a := testproc.StartParticipant(t, bins["testpart"], "--coordinator", co.URL())
			b := testproc.StartParticipant(t, bins["testpart"], "--coordinator", co.URL())
			client := &http.Client{Timeout: 30 * time.Second}
			var links []link
			for _, p := range []*testproc.Proc{a, b} {
				l, err := try(t, client, p.URL())
				if err != nil {
					t.Fatal(err)
				}
				links = append(links, l)
			}
			fault := func(p *testproc.Proc, f testpart.Fault) {
				t.Helper()
				if code, _, err := do(client, "POST", p.URL()+"/faults", "application/json", f); err != nil || code != http.StatusNoContent {
					t.Fatalf("fault at %s: %d %v", p.Addr, code, err)
				}
			}
			if tt.afterCommit {
				fault(a, testpart.Fault{Op: "outcome", Count: -1, Hold: true})
				fault(b, testpart.Fault{Op: "outcome", Count: -1, Hold: true})
			} else {
				fault(b, testpart.Fault{Op: "confirm", Count: -1, Hold: true})
			}
			code, body, err := do(client, "POST", co.URL()+"/api/v1/transactions", "application/json",
				map[string]any{"timeout": "5m", "barrier": true, "participants": links})
			if err != nil || code != http.StatusCreated {
				t.Fatalf("begin: %d %v %s", code, err, body)
			}
			var tx api.Transaction
			json.Unmarshal(body, &tx)
			get := func() api.Transaction {
				t.Helper()
				code, body, err := do(client, "GET", co.URL()+"/api/v1/transactions/"+tx.ID, "", nil)
				if err != nil || code != http.StatusOK {
					t.Fatalf("GET %s: %d %v", tx.ID, code, err)
				}
				var got api.Transaction
				json.Unmarshal(body, &got)
				return got
			}
			go do(client, "PUT", co.URL()+"/api/v1/transactions/"+tx.ID+"/confirm", "", nil) // answered or cut by the kill

			stats := func(p *testproc.Proc) testpart.Stats { return participantStats(t, client, p.URL()) }
			waitFor(t, "the participants held where the kill must land", func() bool {
				if tt.afterCommit {
					return stats(a).Held == 1 && stats(b).Held == 1
				}
				return stats(b).Held == 1 && stats(a).Reports >= 1
			})
			cur := get()
			if cur.State != "confirming" || cur.Round == nil || cur.Round.N != 1 || cur.Round.Committed != tt.afterCommit {
				t.Fatalf("at the kill: state %s, round %+v; want confirming in round 1, committed %v", cur.State, cur.Round, tt.afterCommit)
			}
			co.Kill()
			// The calls end with the coordinator: the holds let go, and a
			// confirm left open rolls back.
			waitFor(t, "the held calls ended", func() bool { return stats(a).Held == 0 && stats(b).Held == 0 })
			for _, p := range []*testproc.Proc{a, b} {
				if code, _, err := do(client, "DELETE", p.URL()+"/faults", "", nil); err != nil || code != http.StatusNoContent {
					t.Fatalf("clear the faults at %s: %d %v", p.Addr, code, err)
				}
			}
			for i, l := range links {
				if st := reservationState(t, client, l.URI); st != testpart.Tried {
					t.Fatalf("participant %d is %s while the coordinator is down; want tried (nothing committed)", i, st)
				}
			}

			co = testproc.StartTccd(t, bins["tccd"], flags...)
			waitFor(t, "the transaction settled", func() bool { return get().State != "confirming" })
			final := get()
			if final.State != "confirmed" {
				t.Fatalf("after the restart: %s (%s)", final.State, final.Reason)
			}
			if !tt.afterCommit && final.Round.N < 2 {
				t.Errorf("before the commit record the restart went on in round %d; want a new round", final.Round.N)
			}
			if tt.afterCommit && final.Round.N != 1 {
				t.Errorf("after the commit record the restart ran round %d; want round 1 finished", final.Round.N)
			}
			for i, l := range links {
				code, body, err := do(client, "GET", l.URI, "", nil)
				var r testpart.Reservation
				if err != nil || code != http.StatusOK || json.Unmarshal(body, &r) != nil {
					t.Fatalf("GET %s: %d %v", l.URI, code, err)
				}
				if r.State != testpart.Confirmed || r.Applied != 1 || r.CancelAfterConfirm != 0 {
					t.Errorf("participant %d: %+v; want confirmed, its business confirm committed once", i, r)
				}
			}
			t.Logf("round %d; confirm calls a %d, b %d", final.Round.N, stats(a).ConfirmCalls, stats(b).ConfirmCalls)
		})
	}
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
	}
}
