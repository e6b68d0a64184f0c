package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/internal/stompjs"
	"github.com/tccd/tccd/internal/testproc"
)

// stompjsDir is the stomp package's fixture: @stomp/stompjs and ws,
// installed by `npm ci --prefix stomp/testdata/stompjs`.
const stompjsDir = "../../stomp/testdata/stompjs"

// jsCounts is what a Node participant did with one reservation.
type jsCounts struct {
	Commits, Rollbacks, Timeouts, Cancels int
}

// TestStompJSParticipants: two barrier participants that nobody here
// wrote — a Node script on @stomp/stompjs, each an HTTP server with its
// own STOMP connection to /ws/tcc — against a real `tccd serve`, with
// transactions created through forsrc's API. Both confirm: both commit
// and the transaction is confirmed. Every outcome reaches them as a
// MESSAGE on their topic. One reports failed: the other rolls
// back too and the transaction is cancelled. One never reports: the round
// aborts after the barrier wait (1s), later rounds too, until the links
// are too close to their expiry and the transaction is cancelled; nobody
// ever commits.
func TestStompJSParticipants(t *testing.T) {
	node := stompjs.Need(t, stompjsDir)
	co := testproc.StartTccd(t, bins["tccd"], "--data", t.TempDir(), "--barrier-wait", "1s", "--call-timeout", "2s",
		"--retry-min", "10ms", "--retry-max", "100ms")
	script, err := filepath.Abs(filepath.Join(stompjsDir, "participants.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	js := testproc.StartService(t, "stompjs participants", node, script, strings.Replace(co.URL(), "http://", "ws://", 1)+"/ws/tcc")
	var urls struct{ A, B string }
	waitFor(t, "the participants' URLs", func() bool {
		for _, line := range strings.Split(js.Log(), "\n") {
			if strings.Contains(line, `"event":"participants"`) {
				return json.Unmarshal([]byte(line), &urls) == nil
			}
		}
		return false
	})
	client := &http.Client{Timeout: 30 * time.Second}
	state := func(base, id string) jsCounts {
		t.Helper()
		_, body, err := do(client, "GET", base+"/state", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		var all map[string]jsCounts
		if err := json.Unmarshal(body, &all); err != nil {
			t.Fatalf("state: %v: %s", err, body)
		}
		return all[id]
	}

	for i, tt := range []struct {
		name          string
		modeB         string
		ttl           time.Duration
		want          string
		wantCommits   int
		roundsAtLeast int
	}{
		{"both confirm", "confirm", time.Minute, "confirmed", 1, 1},
		{"one fails", "fail", time.Minute, "cancelled", 0, 1},
		{"one never reports", "silent", 6 * time.Second, "cancelled", 0, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idA, idB := fmt.Sprintf("confirm-%d", i), fmt.Sprintf("%s-%d", tt.modeB, i)
			expire := time.Now().Add(tt.ttl).UTC().Format(time.RFC3339Nano)
			code, body, err := do(client, "POST", co.URL()+"/tcc/api/v1/tcc/", "application/json", tccdhttp.ForsrcRequest{
				Expire: time.Now().Add(time.Minute).UTC().Format(time.RFC3339),
				TccLinks: []tccdhttp.ForsrcLink{
					{URI: urls.A + "/r/" + idA, Expire: expire}, {URI: urls.B + "/r/" + idB, Expire: expire},
				},
			})
			if err != nil || code >= 500 {
				t.Fatalf("forsrc create: %d %v %s", code, err, body)
			}
			// 200 with the transaction when confirmed; a problem carrying
			// it when cancelled (409).
			var doc struct {
				api.Transaction
				Problem *api.Transaction `json:"transaction"`
			}
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatalf("forsrc create answered %d %s", code, body)
			}
			tx := doc.Transaction
			if doc.Problem != nil {
				tx = *doc.Problem
			}
			if tx.ID == "" {
				t.Fatalf("forsrc create answered %d %s", code, body)
			}
			get := func() api.Transaction {
				_, body, err := do(client, "GET", co.URL()+"/api/v1/transactions/"+tx.ID, "", nil)
				if err != nil {
					t.Fatal(err)
				}
				var got api.Transaction
				json.Unmarshal(body, &got)
				return got
			}
			waitFor(t, "the transaction settled", func() bool { tx = get(); return tx.State == "confirmed" || tx.State == "cancelled" })
			if tx.State != tt.want || tx.Protocol != "forsrc" || !tx.Barrier || tx.Round == nil || tx.Round.N < tt.roundsAtLeast {
				t.Fatalf("transaction %s in round %+v; want %s, forsrc, barrier, at least %d rounds", tx.State, tx.Round, tt.want, tt.roundsAtLeast)
			}
			// Once no confirm waits any more (a participant whose outcome
			// never came would wait out its own 15 s), the cancels having
			// reached both before the transaction was cancelled:
			waitFor(t, "no confirm waiting for its outcome", func() bool {
				for _, base := range []string{urls.A, urls.B} {
					if _, body, err := do(client, "GET", base+"/inflight", "", nil); err != nil || string(body) != "0" {
						return false
					}
				}
				return true
			})
			a, b := state(urls.A, idA), state(urls.B, idB)
			if a.Commits != tt.wantCommits || b.Commits != tt.wantCommits {
				t.Errorf("commits: a %+v, b %+v; want %d each", a, b, tt.wantCommits)
			}
			// Every outcome came as a MESSAGE on the topic, none was
			// guessed from a participant's own wait running out.
			if a.Timeouts != 0 || b.Timeouts != 0 {
				t.Errorf("a %+v, b %+v: a participant heard no outcome", a, b)
			}
			if tt.want == "cancelled" {
				if a.Rollbacks < 1 || b.Rollbacks < 1 || a.Cancels < 1 || b.Cancels < 1 {
					t.Errorf("a %+v, b %+v: want both rolled back and cancelled", a, b)
				}
				if tt.modeB == "silent" && a.Rollbacks < 2 {
					t.Errorf("a rolled back %d rounds; the rounds are retried until the expiry nears", a.Rollbacks)
				}
			}
		})
	}
}
