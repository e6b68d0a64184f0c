package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/internal/testproc"
)

// TestWebhookSurvivesSIGKILL: a transaction reaches its final state while
// its notify URL refuses; tccd is killed with SIGKILL before any delivery
// succeeds; once restarted, it delivers the outcome — signed, with the
// same delivery id — and records it delivered.
func TestWebhookSurvivesSIGKILL(t *testing.T) {
	secret := []byte("whsec-process-test-0123456789")
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	var accept atomic.Bool
	var refused atomic.Int64
	var mu sync.Mutex
	var got []*client.Webhook
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !accept.Load() {
			refused.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		wh, err := client.VerifyWebhook(secret, r)
		if err != nil {
			t.Errorf("verify: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, wh)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()

	part := testproc.StartParticipant(t, bins["testpart"])
	data := filepath.Join(t.TempDir(), "data")
	flags := []string{"--data", data, "--webhook-secret-file", secretFile, "--retry-min", "20ms", "--retry-max", "200ms"}
	co := testproc.StartTccd(t, bins["tccd"], flags...)
	hc := &http.Client{Timeout: 10 * time.Second}
	l, err := try(t, hc, part.URL())
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := do(hc, "POST", co.URL()+"/api/v1/transactions", "application/json",
		map[string]any{"participants": []link{l}, "notify": recv.URL + "/outcome"})
	if err != nil || code != http.StatusCreated {
		t.Fatalf("begin: %d %s %v", code, body, err)
	}
	var tx api.Transaction
	json.Unmarshal(body, &tx)
	if code, body, err := do(hc, "PUT", co.URL()+"/api/v1/transactions/"+tx.ID+"/confirm", "", nil); err != nil || code != http.StatusOK {
		t.Fatalf("confirm: %d %s %v", code, body, err)
	}
	// Final, the delivery pending and refused at least once: kill.
	for refused.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	_, body, _ = do(hc, "GET", co.URL()+"/api/v1/transactions/"+tx.ID, "", nil)
	var before api.Transaction
	json.Unmarshal(body, &before)
	if before.State != "confirmed" || before.Notification == nil || before.Notification.DeliveryID == "" {
		t.Fatalf("before the kill: %s", body)
	}
	co.Kill()
	accept.Store(true)
	co = testproc.StartTccd(t, bins["tccd"], append(flags, "--listen", co.Addr)...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body, _ = do(hc, "GET", co.URL()+"/api/v1/transactions/"+tx.ID, "", nil)
		var cur api.Transaction
		json.Unmarshal(body, &cur)
		if cur.Notification != nil && cur.Notification.State == "delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered after the restart: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].DeliveryID != before.Notification.DeliveryID || got[0].Transaction.ID != tx.ID || got[0].Transaction.State != "confirmed" {
		t.Fatalf("received %d deliveries, the first %+v; want one delivery %s of the confirmed transaction %s", len(got), *got[0], before.Notification.DeliveryID, tx.ID)
	}
}
