package natstest

import (
	"net"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"
)

// EnvRestart opts in to the tests that stop and start this machine's NATS
// server, which disturbs every other user of it. Run them alone, as root,
// with nothing else using the server:
//
//	TCCD_TEST_NATS=nats://127.0.0.1:4222 TCCD_TEST_NATS_RESTART=1 go test -count=1 -run 'AcrossRestart|AcrossNATSRestart' ./nats/ ./cmd/tccd/
//
// .ci/run does so after the other tests.
const EnvRestart = "TCCD_TEST_NATS_RESTART"

// The machine's NATS server, as its services are started.
const natsServer = "/usr/sbin/nats-server"

var natsServerArgs = []string{"-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log"}

// RestartableURL returns the server's URL for a test that restarts it: it
// skips the test unless EnvRestart is 1, and fails it when the server is
// not this machine's on 127.0.0.1:4222 or the tools to restart it are
// missing.
func RestartableURL(t testing.TB) string {
	t.Helper()
	u := URL(t)
	if os.Getenv(EnvRestart) != "1" {
		t.Skipf("%s is not 1: this test restarts the NATS server, disturbing anyone else using it (see natstest.EnvRestart for how to run it)", EnvRestart)
	}
	if pu, err := url.Parse(u); err != nil || pu.Host != "127.0.0.1:4222" {
		t.Fatalf("%s=%s: the restart tests restart the server of 127.0.0.1:4222 and need %s to name it", Env, u, Env)
	}
	for _, bin := range []string{"start-stop-daemon", natsServer} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s: %v (the restart tests start and stop %s with start-stop-daemon)", bin, err, natsServer)
		}
	}
	return u
}

// StopServer stops the machine's NATS server and waits until it has
// exited (start-stop-daemon --retry waits for the process to go).
func StopServer(t testing.TB) {
	t.Helper()
	out, err := exec.Command("start-stop-daemon", "--stop", "--exec", natsServer, "--retry", "TERM/30/KILL/5").CombinedOutput()
	if err != nil {
		t.Fatalf("stop %s: %v\n%s", natsServer, err, out)
	}
}

// StartServer starts the machine's NATS server as its services are
// started (a no-op if it runs) and waits until it accepts connections.
func StartServer(t testing.TB) {
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
		time.Sleep(50 * time.Millisecond)
	}
}
