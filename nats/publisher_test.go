package nats_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/natstest"
	"github.com/tccd/tccd/nats"
)

// open connects a Publisher to the test server, closed when the test ends.
func open(t *testing.T, url string) *nats.Publisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := nats.Open(ctx, nats.Config{URL: url, ReconnectWait: 100 * time.Millisecond, AckTimeout: 10 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// wantError checks that err is an *nats.Error wrapping target with the
// given retryability.
func wantError(t *testing.T, what string, err, target error, retryable bool) {
	t.Helper()
	var e *nats.Error
	switch {
	case err == nil:
		t.Fatalf("%s: no error, want %v", what, target)
	case !errors.As(err, &e):
		t.Fatalf("%s: %T %v, want a *nats.Error", what, err, err)
	case target != nil && !errors.Is(err, target):
		t.Fatalf("%s: %v, want %v", what, err, target)
	case e.Retryable != retryable || nats.IsRetryable(err) != retryable:
		t.Fatalf("%s: %v: retryable %v, want %v", what, err, e.Retryable, retryable)
	}
}

func TestPublishStored(t *testing.T) {
	url := natstest.URL(t)
	st := natstest.NewStream(t, url, 0)
	p := open(t, url)
	ctx := context.Background()
	subj := st.Subject("order.placed")
	hdr := map[string][]string{"Content-Type": {"application/json"}, "X-Order": {"7", "8"}}
	if err := p.Publish(ctx, subj, "r1/1", []byte(`{"order":7}`), hdr); err != nil {
		t.Fatal(err)
	}
	if n := st.Stored(); n != 1 {
		t.Fatalf("stream holds %d messages after one acknowledged publish, want 1", n)
	}
	got := st.ReadAll("reader")
	if len(got) != 1 {
		t.Fatalf("read %d messages, want 1: %+v", len(got), got)
	}
	m := got[0]
	if m.Subject != subj || m.ID != "r1/1" || m.Data != `{"order":7}` ||
		m.Header.Get("Content-Type") != "application/json" || !slices.Equal(m.Header.Values("X-Order"), []string{"7", "8"}) {
		t.Errorf("stored %+v", m)
	}
}

// TestPublishOnce publishes sequences of message ids, repeats included,
// and reads back through a durable consumer: every id is delivered
// exactly once, in the order of its first publish, and every publish —
// repeats too — reports success.
func TestPublishOnce(t *testing.T) {
	url := natstest.URL(t)
	p := open(t, url)
	tests := []struct {
		name string
		ids  []string
	}{
		{"one", []string{"a/1"}},
		{"the same twice", []string{"a/1", "a/1"}},
		{"repeat after another", []string{"a/1", "b/1", "a/1", "b/1", "a/1"}},
		{"ids of one reservation", []string{"a/1", "a/2", "a/2", "a/1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := natstest.NewStream(t, url, 0)
			ctx := context.Background()
			for i, id := range tt.ids {
				if err := p.Publish(ctx, st.Subject("ev"), id, []byte(fmt.Sprintf("%s #%d", id, i)), nil); err != nil {
					t.Fatalf("publish %d (%s): %v", i, id, err)
				}
			}
			var want []string
			for _, id := range tt.ids {
				if !slices.Contains(want, id) {
					want = append(want, id)
				}
			}
			var got []string
			for _, m := range st.ReadAll("once") {
				got = append(got, m.ID)
				// The first publish of an id is the one stored.
				if i := slices.Index(tt.ids, m.ID); m.Data != fmt.Sprintf("%s #%d", m.ID, i) {
					t.Errorf("message %s holds %q: not its first publish", m.ID, m.Data)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("delivered %v, want %v", got, want)
			}
		})
	}
}

func TestCheckSubject(t *testing.T) {
	url := natstest.URL(t)
	st := natstest.NewStream(t, url, 0)
	p := open(t, url)
	tests := []struct {
		name      string
		subject   string
		target    error // nil: no error
		retryable bool
	}{
		{"captured", st.Subject("order.placed"), nil, false},
		{"captured, deeper", st.Subject("a.b.c.d"), nil, false},
		{"not captured", "tccdtest-nowhere." + st.Name + ".order", nats.ErrNoStream, false},
		{"the stream's prefix alone", st.Prefix, nats.ErrNoStream, false},
		{"wildcard", st.Prefix + ".*", nats.ErrInvalid, false},
		{"full wildcard", st.Prefix + ".>", nats.ErrInvalid, false},
		{"empty token", st.Prefix + "..x", nats.ErrInvalid, false},
		{"empty", "", nats.ErrInvalid, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.CheckSubject(context.Background(), tt.subject)
			if tt.target == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantError(t, "CheckSubject", err, tt.target, tt.retryable)
			if tt.subject != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.subject)) {
				t.Errorf("the error does not name the subject: %v", err)
			}
		})
	}
}

func TestPublishRefused(t *testing.T) {
	url := natstest.URL(t)
	st := natstest.NewStream(t, url, 0)
	p := open(t, url)
	tests := []struct {
		name        string
		subject, id string
		headers     map[string][]string
		target      error
	}{
		{"no stream", "tccdtest-nowhere." + st.Name, "a/1", nil, nats.ErrNoStream},
		{"no message id", st.Subject("x"), "", nil, nats.ErrInvalid},
		{"wildcard subject", st.Prefix + ".*", "a/1", nil, nats.ErrInvalid},
		{"contradicting Nats-Msg-Id", st.Subject("x"), "a/1", map[string][]string{"Nats-Msg-Id": {"b/1"}}, nats.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Publish(context.Background(), tt.subject, tt.id, []byte("x"), tt.headers)
			wantError(t, "Publish", err, tt.target, false)
		})
	}
	// A Nats-Msg-Id header that agrees with the id is accepted.
	if err := p.Publish(context.Background(), st.Subject("x"), "a/1", nil, map[string][]string{"Nats-Msg-Id": {"a/1"}}); err != nil {
		t.Fatal(err)
	}
	if n := st.Stored(); n != 1 {
		t.Fatalf("stream holds %d messages, want 1 (the refused ones must not be stored)", n)
	}
}

func TestClosed(t *testing.T) {
	url := natstest.URL(t)
	st := natstest.NewStream(t, url, 0)
	p := open(t, url)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	wantError(t, "Publish after Close", p.Publish(context.Background(), st.Subject("x"), "a/1", nil, nil), nats.ErrClosed, false)
	wantError(t, "CheckSubject after Close", p.CheckSubject(context.Background(), st.Subject("x")), nats.ErrClosed, false)
}

// TestOpenUnreachable needs no server: nothing listens on the port.
func TestOpenUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := nats.Open(ctx, nats.Config{URL: "nats://" + addr, ConnectTimeout: time.Second})
	if err == nil {
		p.Close()
		t.Fatal("Open succeeded with no server")
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("the error does not name the server: %v", err)
	}

	// A context that has ended stops Open at once.
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if p, err := nats.Open(done, nats.Config{URL: "nats://" + addr}); err == nil {
		p.Close()
		t.Fatal("Open succeeded with an ended context")
	} else if !errors.Is(err, context.Canceled) {
		t.Errorf("Open with an ended context: %v, want context.Canceled", err)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name string
		cfg  nats.Config
		want string // "" valid, else part of the error
	}{
		{"minimal", nats.Config{URL: "nats://127.0.0.1:4222"}, ""},
		{"host only", nats.Config{URL: "127.0.0.1:4222"}, ""},
		{"cluster", nats.Config{URL: "nats://a:4222, nats://b:4222"}, ""},
		{"user", nats.Config{URL: "nats://h", User: "u", Password: "p"}, ""},
		{"token and TLS", nats.Config{URL: "tls://h", Token: "t", CAFile: file, CertFile: file, KeyFile: file}, ""},
		{"no URL", nats.Config{}, "URL is required"},
		{"bad scheme", nats.Config{URL: "http://u:secret@h:4222"}, "scheme"},
		{"password alone", nats.Config{URL: "nats://h", Password: "p"}, "Password without User"},
		{"two credentials", nats.Config{URL: "nats://h", User: "u", Token: "t"}, "at most one"},
		{"creds file missing", nats.Config{URL: "nats://h", CredsFile: missing}, "CredsFile"},
		{"seed file missing", nats.Config{URL: "nats://h", NKeySeedFile: missing}, "NKeySeedFile"},
		{"cert without key", nats.Config{URL: "nats://h", CertFile: file}, "go together"},
		{"negative timeout", nats.Config{URL: "nats://h", AckTimeout: -time.Second}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error about %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), "secret"):
				t.Fatalf("the error shows a password: %v", err)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	e := &nats.Error{Op: "publish", Subject: "order.placed", MsgID: "r/1", Retryable: true, Err: nats.ErrNotConnected}
	want := `nats: publish "order.placed" (message id "r/1"): not connected to the NATS server (reconnecting) (retryable)`
	if e.Error() != want || !e.Temporary() || !errors.Is(e, nats.ErrNotConnected) {
		t.Errorf("%v", e)
	}
	if !nats.IsRetryable(fmt.Errorf("wrapped: %w", context.DeadlineExceeded)) || nats.IsRetryable(errors.New("other")) {
		t.Error("IsRetryable")
	}
}
