package nats_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/natstest"
	"github.com/tccd/tccd/nats"
)

// envRestart opts in to TestPublishAcrossRestart, which stops and starts
// this machine's NATS server and so disturbs every other user of it. Run
// it alone, as root, with nothing else using the server:
//
//	TCCD_TEST_NATS=nats://127.0.0.1:4222 TCCD_TEST_NATS_RESTART=1 go test -count=1 -run TestPublishAcrossRestart ./nats/
//
// .ci/run does so after the other tests.
const envRestart = "TCCD_TEST_NATS_RESTART"

// The machine's NATS server, as its services are started.
const natsServer = "/usr/sbin/nats-server"

var natsServerArgs = []string{"-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log"}

// TestPublishAcrossRestart restarts the real server under a Publisher: a
// publish while it is down fails at once with a retryable error; the
// client reconnects on its own, and the same publish, repeated, then
// succeeds; the stream (on disk) kept what was stored before.
func TestPublishAcrossRestart(t *testing.T) {
	u := natstest.URL(t)
	if os.Getenv(envRestart) != "1" {
		t.Skipf("%s is not 1: this test restarts the NATS server, disturbing anyone else using it (see restart_test.go for how to run it)", envRestart)
	}
	if pu, err := url.Parse(u); err != nil || pu.Host != "127.0.0.1:4222" {
		t.Fatalf("%s=%s: the restart test restarts the server of 127.0.0.1:4222 and needs %s to name it", natstest.Env, u, natstest.Env)
	}
	for _, bin := range []string{"start-stop-daemon", natsServer} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s: %v (the restart test starts and stops %s with start-stop-daemon)", bin, err, natsServer)
		}
	}
	st := natstest.NewStream(t, u, 0)
	// Whatever happens, leave the server running for the next user;
	// registered after the stream, so it runs before the stream's removal.
	t.Cleanup(func() { startServer(t) })
	p := open(t, u)
	ctx := context.Background()
	subj := st.Subject("ev")
	if err := p.Publish(ctx, subj, "before/1", []byte("before"), nil); err != nil {
		t.Fatal(err)
	}

	stopServer(t)
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

	startServer(t)
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

// stopServer stops the machine's NATS server and waits until it has
// exited (start-stop-daemon --retry waits for the process to go).
func stopServer(t *testing.T) {
	t.Helper()
	out, err := exec.Command("start-stop-daemon", "--stop", "--exec", natsServer, "--retry", "TERM/30/KILL/5").CombinedOutput()
	if err != nil {
		t.Fatalf("stop %s: %v\n%s", natsServer, err, out)
	}
}

// startServer starts the machine's NATS server as its services are
// started (a no-op if it runs) and waits until it accepts connections.
func startServer(t *testing.T) {
	t.Helper()
	args := append([]string{"--start", "--oknodo", "--background", "--exec", natsServer, "--"}, natsServerArgs...)
	if out, err := exec.Command("start-stop-daemon", args...).CombinedOutput(); err != nil {
		t.Errorf("start %s: %v\n%s", natsServer, err, out)
		return
	}
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s does not accept connections a minute after its start: %v", natsServer, err)
			return
		}
		waitTick()
	}
}
