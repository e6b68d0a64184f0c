package nats_test

import (
	"context"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/natstest"
	"github.com/tccd/tccd/nats"
)

// TestPublishAcrossRestart restarts the real server under a Publisher: a
// publish while it is down fails at once with a retryable error; the
// client reconnects on its own, and the same publish, repeated, then
// succeeds; the stream (on disk) kept what was stored before.
func TestPublishAcrossRestart(t *testing.T) {
	u := natstest.RestartableURL(t)
	st := natstest.NewStream(t, u, 0)
	// Whatever happens, leave the server running for the next user;
	// registered after the stream, so it runs before the stream's removal.
	t.Cleanup(func() { natstest.StartServer(t) })
	p := open(t, u)
	ctx := context.Background()
	subj := st.Subject("ev")
	if err := p.Publish(ctx, subj, "before/1", []byte("before"), nil); err != nil {
		t.Fatal(err)
	}

	natstest.StopServer(t)
	// The client may not yet have noticed the closed connection: then
	// the publish waits for an acknowledgement that cannot come, and
	// times out, which is retryable too.
	down, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := p.Publish(down, subj, "during/1", []byte("during"), nil)
	cancel()
	if err == nil || !nats.IsRetryable(err) {
		t.Fatalf("publish with the server down: %v, want a retryable error", err)
	}
	t.Logf("with the server down: %v", err)

	natstest.StartServer(t)
	// The caller's retry: the same message again until it is stored.
	deadline := time.Now().Add(time.Minute)
	for {
		try, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := p.Publish(try, subj, "during/1", []byte("during"), nil)
		cancel()
		if err == nil {
			break
		}
		if !nats.IsRetryable(err) {
			t.Fatalf("publish after the restart: %v, a permanent error", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish after the restart still fails after a minute: %v", err)
		}
		waitTick()
	}
	var got []string
	for _, m := range st.ReadAll("restart") {
		got = append(got, m.ID+"="+m.Data)
	}
	if len(got) != 2 || got[0] != "before/1=before" || got[1] != "during/1=during" {
		t.Fatalf("the stream holds %v, want before/1 and during/1, once each", got)
	}
}

// waitTick paces a polling loop.
func waitTick() { <-time.After(50 * time.Millisecond) }
