package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/natstest"
	"github.com/tccd/tccd/internal/testproc"
)

// msgRig is a tccd process publishing messages to the test's NATS server,
// with two participant processes.
type msgRig struct {
	t      *testing.T
	client *http.Client
	st     *natstest.Stream
	parts  []*testproc.Proc
	flags  []string
	co     *testproc.Proc
}

func newMsgRig(t *testing.T, extra ...string) *msgRig {
	url := natstest.URL(t)
	r := &msgRig{t: t, client: &http.Client{Timeout: time.Minute}, st: natstest.NewStream(t, url, 0)}
	for i := 0; i < 2; i++ {
		r.parts = append(r.parts, testproc.StartParticipant(t, bins["testpart"], extra...))
	}
	r.flags = []string{"--data", filepath.Join(t.TempDir(), "data"), "--nats-url", url,
		"--retry-min", "10ms", "--retry-max", "200ms", "--shutdown-grace", "1s"}
	r.co = testproc.StartTccd(t, bins["tccd"], r.flags...)
	return r
}

// begin starts a transaction with a reservation at each participant and
// the messages given (subject names under the stream's prefix, data).
func (r *msgRig) begin(msgs ...string) string {
	r.t.Helper()
	var links []link
	for _, p := range r.parts {
		l, err := try(r.t, r.client, p.URL())
		if err != nil {
			r.t.Fatal(err)
		}
		links = append(links, l)
	}
	code, body, err := do(r.client, "POST", r.co.URL()+"/api/v1/transactions", "application/json", map[string]any{"timeout": "5m", "participants": links})
	if err != nil || code != http.StatusCreated {
		r.t.Fatalf("begin: %d %s %v", code, body, err)
	}
	var tx struct{ ID string }
	if err := json.Unmarshal(body, &tx); err != nil {
		r.t.Fatal(err)
	}
	for i := 0; i+1 < len(msgs); i += 2 {
		code, body, err := do(r.client, "POST", r.co.URL()+"/api/v1/transactions/"+tx.ID+"/messages", "application/json",
			map[string]any{"subject": r.st.Subject(msgs[i]), "data": json.RawMessage(msgs[i+1])})
		if err != nil || code != http.StatusCreated {
			r.t.Fatalf("enlist a message: %d %s %v", code, body, err)
		}
	}
	return tx.ID
}

// state returns a transaction's state as the coordinator reports it.
func (r *msgRig) state(id string) string {
	r.t.Helper()
	code, body, err := do(r.client, "GET", r.co.URL()+"/api/v1/transactions/"+id, "", nil)
	if err != nil || code != http.StatusOK {
		r.t.Fatalf("get %s: %d %s %v", id, code, body, err)
	}
	var tx struct{ State string }
	if err := json.Unmarshal(body, &tx); err != nil {
		r.t.Fatal(err)
	}
	return tx.State
}

// TestMessagesOverHTTP: the message API of a real tccd with a real
// JetStream — what a confirm publishes and a cancel does not, the answers
// to what it refuses, and a tccd without nats-url.
func TestMessagesOverHTTP(t *testing.T) {
	r := newMsgRig(t)
	confirmed := r.begin("order.placed", `{"order":"A-1"}`)
	// data_base64 and headers.
	code, body, err := do(r.client, "POST", r.co.URL()+"/api/v1/transactions/"+confirmed+"/messages", "application/json",
		map[string]any{"subject": r.st.Subject("order.bytes"), "data_base64": "AAEC/w==", "headers": map[string]string{"Content-Type": "application/octet-stream"}})
	if err != nil || code != http.StatusCreated {
		t.Fatalf("enlist base64: %d %s %v", code, body, err)
	}
	var tx struct {
		Participants []struct {
			URI, Style, Subject, State string
			MessageID                  string `json:"message_id"`
		}
	}
	if err := json.Unmarshal(body, &tx); err != nil {
		t.Fatal(err)
	}
	if p := tx.Participants[3]; p.URI != "urn:tccd:message:2" || p.Style != "message" || p.MessageID != confirmed+"/2" || p.State != "pending" {
		t.Fatalf("the message as a participant: %+v", p)
	}
	cancelled := r.begin("order.placed", `{"order":"A-2"}`)
	if code, body, err := do(r.client, "PUT", r.co.URL()+"/api/v1/transactions/"+confirmed+"/confirm", "application/json", nil); err != nil || code != http.StatusOK {
		t.Fatalf("confirm: %d %s %v", code, body, err)
	}
	if code, body, err := do(r.client, "PUT", r.co.URL()+"/api/v1/transactions/"+cancelled+"/cancel", "application/json", nil); err != nil || code != http.StatusOK {
		t.Fatalf("cancel: %d %s %v", code, body, err)
	}
	got := r.st.ReadAll("check")
	if len(got) != 2 || got[0].ID != confirmed+"/1" || got[0].Data != `{"order":"A-1"}` ||
		got[1].ID != confirmed+"/2" || got[1].Data != "\x00\x01\x02\xff" || got[1].Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("published %+v; want the confirmed transaction's two messages only", got)
	}

	active := r.begin()
	tests := []struct {
		name   string
		id     string
		body   string
		status int
		code   string
	}{
		{"no stream captures the subject", active, `{"subject":"tccdtest.nobody","data":1}`, 422, "not_configured"},
		{"no data", active, `{"subject":"` + r.st.Subject("a") + `"}`, 400, "invalid"},
		{"both data forms", active, `{"subject":"` + r.st.Subject("a") + `","data":1,"data_base64":"AA=="}`, 400, "invalid"},
		{"bad base64", active, `{"subject":"` + r.st.Subject("a") + `","data_base64":"%%"}`, 400, "invalid"},
		{"wildcard", active, `{"subject":"` + r.st.Prefix + `.>","data":1}`, 400, "invalid"},
		{"unknown field", active, `{"subject":"` + r.st.Subject("a") + `","data":1,"colour":"red"}`, 400, "invalid"},
		{"wrong type", active, `{"subject":7,"data":1}`, 400, "invalid"},
		{"malformed", active, `{"subject":`, 400, "invalid"},
		{"decided", confirmed, `{"subject":"` + r.st.Subject("a") + `","data":1}`, 409, "conflict"},
		{"unknown transaction", "01NOSUCHTRANSACTION0000000", `{"subject":"` + r.st.Subject("a") + `","data":1}`, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, err := do(r.client, "POST", r.co.URL()+"/api/v1/transactions/"+tt.id+"/messages", "application/json", json.RawMessage(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			var p struct{ Code string }
			_ = json.Unmarshal(body, &p)
			if code != tt.status || p.Code != tt.code {
				t.Fatalf("%d %s, want %d %s", code, body, tt.status, tt.code)
			}
		})
	}

	// Without nats-url: 422, saying why.
	plain := testproc.StartTccd(t, bins["tccd"], "--data", filepath.Join(t.TempDir(), "plain"))
	code, body, err = do(r.client, "POST", plain.URL()+"/api/v1/transactions", "application/json", map[string]any{"timeout": "1m"})
	if err != nil || code != http.StatusCreated {
		t.Fatalf("begin: %d %s %v", code, body, err)
	}
	var ptx struct{ ID string }
	_ = json.Unmarshal(body, &ptx)
	code, body, err = do(r.client, "POST", plain.URL()+"/api/v1/transactions/"+ptx.ID+"/messages", "application/json", map[string]any{"subject": "a.b", "data": 1})
	if err != nil || code != http.StatusUnprocessableEntity || !json.Valid(body) || !strings.Contains(string(body), "nats-url") {
		t.Fatalf("a message without a broker: %d %s %v", code, body, err)
	}
}

// TestMessagesSIGKILL: tccd is SIGKILLed while it publishes the messages
// of many confirmed transactions, and started again: every message of a
// confirmed transaction reaches a durable consumer exactly once, none of
// a cancelled one.
func TestMessagesSIGKILL(t *testing.T) {
	r := newMsgRig(t, "--latency", "5ms")
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = r.begin("a", fmt.Sprintf(`{"tx":%d,"n":1}`, i), "b", fmt.Sprintf(`{"tx":%d,"n":2}`, i), "c", fmt.Sprintf(`{"tx":%d,"n":3}`, i))
	}
	// Every third is cancelled; the rest confirmed, all at once.
	var wg sync.WaitGroup
	for i, id := range ids {
		op := "confirm"
		if i%3 == 0 {
			op = "cancel"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(r.client, "PUT", r.co.URL()+"/api/v1/transactions/"+id+"/"+op, "application/json", nil) // fails with the process
		}()
	}
	// Kill as soon as publishing has begun.
	deadline := time.Now().Add(time.Minute)
	for r.st.Stored() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing was published within a minute")
		}
		time.Sleep(time.Millisecond)
	}
	r.co.Kill()
	atKill := r.st.Stored()
	wg.Wait()
	confirmedMsgs := uint64(3 * (n - (n+2)/3))
	if atKill >= confirmedMsgs {
		t.Logf("every message was published before the kill landed (%d): the restart has nothing to resume", atKill)
	}
	r.co = testproc.StartTccd(t, bins["tccd"], r.flags...)
	outcome := make([]string, n)
	for i, id := range ids {
		want := "confirmed"
		if i%3 == 0 {
			want = "cancelled"
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
			s := r.state(id)
			if s == want {
				break
			}
			// A confirm the kill cut off before its decision was written
			// never happened: cancel it, and expect no messages.
			if s == "active" {
				do(r.client, "PUT", r.co.URL()+"/api/v1/transactions/"+id+"/cancel", "application/json", nil)
				want = "cancelled"
				continue
			}
			if time.Now().After(deadline) {
				t.Fatalf("transaction %d is %s, want %s\n%s", i, s, want, r.co.Log())
			}
		}
		outcome[i] = want
	}
	got := map[string]int{}
	for _, m := range r.st.ReadAll("check") {
		got[m.ID]++
	}
	published := 0
	for i, id := range ids {
		for k := 1; k <= 3; k++ {
			c := got[fmt.Sprintf("%s/%d", id, k)]
			switch {
			case outcome[i] == "cancelled":
				if c != 0 {
					t.Errorf("transaction %d (cancelled): message %d published %d times", i, k, c)
				}
			case c != 1:
				t.Errorf("transaction %d (confirmed): message %d published %d times, want once", i, k, c)
			default:
				published++
			}
		}
	}
	t.Logf("%d messages stored at the kill; %d published in all, each once", atKill, published)
}

// TestMessagesAcrossNATSRestart: the NATS server stops while tccd
// publishes the messages of confirmed transactions, and starts again:
// the transactions stay confirming (not confirmed: their messages are not
// acknowledged) while it is away, then end confirmed with every message
// stored once. It restarts this machine's server: see
// natstest.EnvRestart for how to run it.
func TestMessagesAcrossNATSRestart(t *testing.T) {
	natstest.RestartableURL(t)
	r := newMsgRig(t)
	// Leave the server running whatever happens; registered after the
	// rig, so it runs before the stream is deleted.
	t.Cleanup(func() { natstest.StartServer(t) })
	before := r.begin("a", `{"n":0}`)
	if code, body, err := do(r.client, "PUT", r.co.URL()+"/api/v1/transactions/"+before+"/confirm", "application/json", nil); err != nil || code != http.StatusOK {
		t.Fatalf("confirm before the stop: %d %s %v", code, body, err)
	}
	const n = 5
	ids := make([]string, n)
	for i := range ids {
		ids[i] = r.begin("a", fmt.Sprintf(`{"n":%d}`, i+1), "b", fmt.Sprintf(`{"n":%d}`, i+1))
	}
	natstest.StopServer(t)
	for _, id := range ids {
		// Prefer: respond-async — the confirm is decided, the outcome
		// waits for the broker.
		req, _ := http.NewRequest("PUT", r.co.URL()+"/api/v1/transactions/"+id+"/confirm", nil)
		req.Header.Set("Prefer", "respond-async")
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("confirm with the broker away: %s, want 202", resp.Status)
		}
	}
	// While it is away, they are confirming: the coordinator does not
	// know the messages are stored, so it does not say confirmed.
	for i := 0; i < 20; i++ {
		for _, id := range ids {
			if s := r.state(id); s != "confirming" {
				t.Fatalf("with the broker away a transaction is %s, want confirming", s)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	natstest.StartServer(t)
	for _, id := range ids {
		for deadline := time.Now().Add(time.Minute); r.state(id) != "confirmed"; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("not confirmed a minute after the broker came back\n%s", r.co.Log())
			}
		}
	}
	got := map[string]int{}
	for _, m := range r.st.ReadAll("check") {
		got[m.ID]++
	}
	if len(got) != 1+2*n || got[before+"/1"] != 1 {
		t.Fatalf("stored %v, want %d messages", got, 1+2*n)
	}
	for id, c := range got {
		if c != 1 {
			t.Fatalf("message %s stored %d times", id, c)
		}
	}
}
