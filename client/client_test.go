package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/internal/testpart"
)

func TestNew(t *testing.T) {
	tests := []struct {
		url     string
		want    string
		wantErr bool
	}{
		{url: "http://127.0.0.1:8420", want: "http://127.0.0.1:8420"},
		{url: "https://tccd.example/prefix/", want: "https://tccd.example/prefix"},
		{url: "127.0.0.1:8420", wantErr: true},
		{url: "ftp://tccd.example", wantErr: true},
		{url: "http://user:pw@tccd.example", wantErr: true},
		{url: "http://tccd.example/?q=1", wantErr: true},
		{url: "", wantErr: true},
	}
	for _, tt := range tests {
		c, err := client.New(tt.url)
		if (err != nil) != tt.wantErr {
			t.Errorf("New(%q) error = %v, want error %v", tt.url, err, tt.wantErr)
			continue
		}
		if err == nil && c.URL() != tt.want {
			t.Errorf("New(%q).URL() = %q, want %q", tt.url, c.URL(), tt.want)
		}
	}
}

// TestSecretHeader: a header given with WithHeader reaches the coordinator,
// never a participant, and is not printed with the client.
func TestSecretHeader(t *testing.T) {
	t.Parallel()
	const secret = "Bearer s3cret-token"
	e := newEnv(t, testConfig(), client.WithHeader("Authorization", secret))
	var mu sync.Mutex
	var seenAtParticipant []string
	p := newPart(t, func(p *part, h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seenAtParticipant = append(seenAtParticipant, r.Header.Get("Authorization"))
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	})
	ctx := testCtx(t)
	tx, err := e.c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.c.WrapHTTPClient(nil).Do(mustRequest(t, client.NewContext(ctx, tx), "POST", p.srv.URL+"/reservations", ""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, r := range e.rec.requests() {
		if r.Header.Get("Authorization") != secret {
			t.Errorf("%s %s to the coordinator without the header", r.Method, r.URL.Path)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seenAtParticipant, []string{""}) {
		t.Errorf("participant saw Authorization %q", seenAtParticipant)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(verb, e.c); strings.Contains(s, "s3cret") {
			t.Errorf("Sprintf(%s, client) = %s: shows the secret", verb, s)
		}
	}
}

func TestOneShot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	p1, p2 := newPart(t, nil), newPart(t, nil)
	ctx := testCtx(t)

	t.Run("confirm", func(t *testing.T) {
		l1, l2 := p1.try(time.Minute), p2.try(time.Minute)
		if err := e.c.Confirm(ctx, l1, l2); err != nil {
			t.Fatalf("Confirm: %v", err)
		}
		if s1, s2 := p1.state(l1.URI), p2.state(l2.URI); s1 != testpart.Confirmed || s2 != testpart.Confirmed {
			t.Fatalf("states = %s, %s; want confirmed", s1, s2)
		}
		calls := p1.stats().ConfirmCalls
		if err := e.c.Confirm(ctx, l1, l2); err != nil {
			t.Fatalf("repeated Confirm: %v", err)
		}
		if n := p1.stats().ConfirmCalls; n != calls {
			t.Errorf("repeating the confirm called the participant again (%d calls, was %d)", n, calls)
		}
		// Cancel never undoes a confirmation, and says so.
		if err := e.c.Cancel(ctx, l1, l2); !errors.Is(err, client.ErrConflict) {
			t.Fatalf("Cancel after Confirm = %v, want ErrConflict", err)
		}
		if s := p1.state(l1.URI); s != testpart.Confirmed {
			t.Errorf("state after cancel = %s, want confirmed", s)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		l1, l2 := p1.try(time.Minute), p2.try(time.Minute)
		if err := e.c.Cancel(ctx, l1, l2); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		if s1, s2 := p1.state(l1.URI), p2.state(l2.URI); s1 != testpart.Cancelled || s2 != testpart.Cancelled {
			t.Fatalf("states = %s, %s; want cancelled", s1, s2)
		}
		if err := e.c.Cancel(ctx, l1, l2); err != nil {
			t.Fatalf("repeated Cancel: %v", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if err := e.c.Confirm(ctx); err != nil {
			t.Errorf("Confirm(): %v", err)
		}
		if err := e.c.Cancel(ctx); err != nil {
			t.Errorf("Cancel(): %v", err)
		}
	})
	t.Run("wire", func(t *testing.T) {
		reqs := e.rec.requests()
		if len(reqs) == 0 {
			t.Fatal("no requests recorded")
		}
		for _, r := range reqs {
			if r.Method != http.MethodPut || !strings.HasPrefix(r.URL.Path, "/coordinator/") {
				t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
			}
			if ct := r.Header.Get("Content-Type"); ct != api.MediaTCCJSON {
				t.Errorf("Content-Type = %q, want %s", ct, api.MediaTCCJSON)
			}
		}
	})
}

// TestOneShotRetries503: while the outcome is not known the coordinator
// answers 503 with Retry-After; the client repeats the PUT.
func TestOneShotRetries503(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.ConfirmWait = 50 * time.Millisecond
	e := newEnv(t, cfg)
	p := newPart(t, nil)
	// The participant asks the coordinator to come back in a second: the
	// outcome cannot be known within ConfirmWait.
	p.svc.AddFault(testpart.Fault{Op: "confirm", Count: 1, Status: 503, RetryAfter: 1})
	l := p.try(time.Minute)
	if err := e.c.Confirm(testCtx(t), l); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	if s := p.state(l.URI); s != testpart.Confirmed {
		t.Errorf("state = %s, want confirmed", s)
	}
	if !e.rec.saw("PUT", "/coordinator/confirm", 503) || !e.rec.saw("PUT", "/coordinator/confirm", 204) {
		t.Errorf("calls = %v, want a 503 then a 204", e.rec.calls())
	}
}

// TestOneShotGivesUpWithContext: the 503 retries end with the context.
func TestOneShotGivesUpWithContext(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.ConfirmWait = 20 * time.Millisecond
	e := newEnv(t, cfg)
	p := newPart(t, nil)
	p.svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 503, RetryAfter: 1})
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	err := e.c.Confirm(ctx, p.try(time.Minute))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want one matching context.DeadlineExceeded", err)
	}
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 503 || ce.Code != api.CodeUnavailable {
		t.Errorf("err = %v, want it to carry the 503 answer", err)
	}
}

func TestRegistered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	p1, p2 := newPart(t, nil), newPart(t, nil)
	ctx := testCtx(t)

	t.Run("begin enlist confirm", func(t *testing.T) {
		l1, l2 := p1.try(time.Minute), p2.try(time.Minute)
		tx, err := e.c.Begin(ctx, client.WithTimeout(2*time.Minute), client.WithName("trip-42"),
			client.WithLabels(map[string]string{"customer": "7"}), client.WithParticipants(l1))
		if err != nil {
			t.Fatalf("Begin: %v", err)
		}
		if tx.ID() == "" || !strings.HasSuffix(tx.URL(), "/api/v1/transactions/"+tx.ID()) {
			t.Fatalf("ID, URL = %q, %q", tx.ID(), tx.URL())
		}
		got, err := e.c.Get(ctx, tx.ID())
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.State != "active" || got.Name != "trip-42" || got.Labels["customer"] != "7" || got.Timeout != "2m0s" || len(got.Participants) != 1 {
			t.Fatalf("Get = %+v", got)
		}
		if !got.Participants[0].Expires.Equal(l1.Expires) {
			t.Errorf("expires = %v, want %v", got.Participants[0].Expires, l1.Expires)
		}
		for i := 0; i < 2; i++ { // enlisting again changes nothing
			if err := tx.Enlist(ctx, l2); err != nil {
				t.Fatalf("Enlist #%d: %v", i+1, err)
			}
		}
		out, err := tx.Confirm(ctx)
		if err != nil {
			t.Fatalf("Confirm: %v", err)
		}
		if out.State != "confirmed" || !slices.Equal(states(out), []string{"confirmed", "confirmed"}) {
			t.Fatalf("Confirm = %s %v", out.State, states(out))
		}
		if s1, s2 := p1.state(l1.URI), p2.state(l2.URI); s1 != testpart.Confirmed || s2 != testpart.Confirmed {
			t.Fatalf("participant states = %s, %s", s1, s2)
		}
		if out, err := tx.Confirm(ctx); err != nil || out.State != "confirmed" {
			t.Errorf("repeated Confirm = %v, %v", out, err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		l := p1.try(time.Minute)
		tx, err := e.c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Enlist(ctx, l); err != nil {
			t.Fatal(err)
		}
		out, err := tx.Cancel(ctx)
		if err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		if out.State != "cancelled" || !slices.Equal(states(out), []string{"cancelled"}) {
			t.Fatalf("Cancel = %s %v", out.State, states(out))
		}
		if s := p1.state(l.URI); s != testpart.Cancelled {
			t.Errorf("participant state = %s", s)
		}
		if out, err := tx.Cancel(ctx); err != nil || out.State != "cancelled" {
			t.Errorf("repeated Cancel = %v, %v", out, err)
		}
	})
	t.Run("re-attach", func(t *testing.T) {
		tx, err := e.c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		other, err := client.New(e.URL)
		if err != nil {
			t.Fatal(err)
		}
		again := other.Tx(tx.ID())
		if again.ID() != tx.ID() || again.URL() != tx.URL() {
			t.Fatalf("Tx(%s) = %s %s, want %s", tx.ID(), again.ID(), again.URL(), tx.URL())
		}
		l := p2.try(time.Minute)
		if err := again.Enlist(ctx, l); err != nil {
			t.Fatal(err)
		}
		out, err := again.Confirm(ctx)
		if err != nil || out.State != "confirmed" || len(out.Participants) != 1 {
			t.Fatalf("Confirm = %+v, %v", out, err)
		}
	})
}

// TestPolling202: with a short confirm-wait the coordinator answers 202
// while a participant is being retried; Confirm and Cancel poll the
// transaction until it ends.
func TestPolling202(t *testing.T) {
	t.Parallel()
	for _, op := range []string{"confirm", "cancel"} {
		t.Run(op, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.ConfirmWait = 50 * time.Millisecond
			e := newEnv(t, cfg)
			p := newPart(t, nil)
			p.svc.AddFault(testpart.Fault{Op: op, Count: 1, Status: 503, RetryAfter: 1})
			l := p.try(time.Minute)
			ctx := testCtx(t)
			tx, err := e.c.Begin(ctx, client.WithParticipants(l))
			if err != nil {
				t.Fatal(err)
			}
			var out *api.Transaction
			want, wantPart := "confirmed", testpart.Confirmed
			if op == "confirm" {
				out, err = tx.Confirm(ctx)
			} else {
				out, err = tx.Cancel(ctx)
				want, wantPart = "cancelled", testpart.Cancelled
			}
			if err != nil {
				t.Fatalf("%s: %v", op, err)
			}
			if out.State != want || !slices.Equal(states(out), []string{want}) {
				t.Errorf("outcome = %s %v, want %s", out.State, states(out), want)
			}
			if s := p.state(l.URI); s != wantPart {
				t.Errorf("participant state = %s, want %s", s, wantPart)
			}
			if !e.rec.saw("PUT", "/"+op, 202) || !e.rec.saw("GET", "/api/v1/transactions/", 200) {
				t.Errorf("calls = %v, want a 202 and a poll", e.rec.calls())
			}
		})
	}
}

// TestPollingEndsWithContext: if the context ends while the coordinator is
// still confirming, Confirm says the transaction is in progress.
func TestPollingEndsWithContext(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.ConfirmWait = 20 * time.Millisecond
	e := newEnv(t, cfg)
	p := newPart(t, nil)
	p.svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 503, RetryAfter: 1})
	tx, err := e.c.Begin(testCtx(t), client.WithParticipants(p.try(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	out, err := tx.Confirm(ctx)
	if !errors.Is(err, client.ErrInProgress) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrInProgress and DeadlineExceeded", err)
	}
	if out == nil || out.State != "confirming" {
		t.Errorf("transaction = %+v, want the confirming transaction", out)
	}
}

// TestPropagatedTxCannotEnd: a participant's Tx (from Middleware) neither
// confirms nor cancels.
func TestPropagatedTxCannotEnd(t *testing.T) {
	var tx *client.Tx
	h := client.Middleware(nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, _ = client.FromContext(r.Context())
	}))
	req := mustRequest(t, context.Background(), "POST", "http://a/try", "")
	req.Header.Set(api.HeaderTransactionID, "01ABC")
	h.ServeHTTP(discardWriter{}, req)
	if tx == nil {
		t.Fatal("no Tx in the handler's context")
	}
	if _, err := tx.Confirm(context.Background()); err == nil {
		t.Error("Confirm of a propagated Tx succeeded")
	}
	if _, err := tx.Cancel(context.Background()); err == nil {
		t.Error("Cancel of a propagated Tx succeeded")
	}
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}

func mustRequest(t *testing.T, ctx context.Context, method, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}
