package main

import (
	"bytes"
	"errors"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/testproc"
)

// tccdExec runs the real binary and returns its output and exit code.
func tccdExec(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bins["tccd"], args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

var commitLine = regexp.MustCompile(`^commit ([0-9a-f]{40}( \(with uncommitted changes\))?|unknown)$`)

// TestCLIProcess: what main prints and the exit codes, with the real
// binary: version, help, usage errors, the admin commands against a
// running coordinator, watch ended by SIGINT, check-participant.
func TestCLIProcess(t *testing.T) {
	out, errOut, code := tccdExec(t, "--version")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || errOut != "" || len(lines) != 3 || lines[0] != "tccd "+Version || !commitLine.MatchString(lines[1]) || !strings.HasPrefix(lines[2], "go1.") {
		t.Fatalf("--version: exit %d, %q, stderr %q", code, out, errOut)
	}
	if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil && lines[1] != "commit unknown" &&
		!strings.HasPrefix(lines[1], "commit "+strings.TrimSpace(string(head))) {
		t.Errorf("--version says %q, HEAD is %s", lines[1], head)
	}

	for _, tt := range []struct {
		args           []string
		code           int
		stdout, stderr string // prefixes ("" for empty)
	}{
		{[]string{"tx", "list", "--bogus"}, 2, "", "tccd: tx list: flag provided but not defined: -bogus\nrun 'tccd tx list -h' for the flags\n"},
		{[]string{"serve", "--bogus"}, 2, "", "tccd: serve: flag provided but not defined: -bogus\nrun 'tccd serve -h' for the flags\n"},
		{[]string{"frobnicate"}, 2, "", "tccd: unknown command \"frobnicate\"\nrun 'tccd -h' for the commands\n"},
		{[]string{"serve", "-h"}, 0, "Usage: tccd serve [flags]", ""},
		{[]string{"check-participant", "--help"}, 0, "Usage: tccd check-participant", ""},
		{nil, 2, "", "tccd — a Try-Confirm/Cancel transaction coordinator"},
	} {
		out, errOut, code := tccdExec(t, tt.args...)
		exact := strings.HasSuffix(tt.stderr, "\n")
		if code != tt.code || !strings.HasPrefix(out, tt.stdout) || (tt.stdout == "") != (out == "") ||
			(exact && errOut != tt.stderr) || !exact && !strings.HasPrefix(errOut, tt.stderr) || (tt.stderr == "") != (errOut == "") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", tt.args, code, out, errOut)
		}
		if strings.Contains(errOut, "tccd: usage") || strings.Count(errOut, "Usage") > 1 {
			t.Errorf("%q: stray lines in stderr %q", tt.args, errOut)
		}
	}

	co := testproc.StartTccd(t, bins["tccd"], "--data", t.TempDir())
	out, errOut, code = tccdExec(t, "tx", "list", "--server", co.URL())
	if code != 0 || out != "no transactions\n" || errOut != "" {
		t.Errorf("tx list: exit %d, %q, %q", code, out, errOut)
	}
	out, errOut, code = tccdExec(t, "tx", "show", "nope", "--server", co.URL())
	if code != 1 || out != "" || !regexp.MustCompile(`^tccd: [^\n]*nope[^\n]*\(404 not_found\)\n$`).MatchString(errOut) {
		t.Errorf("tx show nope: exit %d, %q, %q", code, out, errOut)
	}

	// watch prints events until SIGINT, then exits 0.
	watch := exec.Command(bins["tccd"], "tx", "watch", "--server", co.URL(), "--type", "state")
	var wout, werr syncBuffer
	watch.Stdout, watch.Stderr = &wout, &werr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- watch.Wait() }()
	t.Cleanup(func() { watch.Process.Kill() })
	// Transactions begin until one shows: watch has subscribed by then.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(wout.String(), "state    active") {
		if time.Now().After(deadline) {
			t.Fatalf("watch printed %q, stderr %q", wout.String(), werr.String())
		}
		resp, err := http.Post(co.URL()+"/api/v1/transactions", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		time.Sleep(20 * time.Millisecond)
	}
	watch.Process.Signal(syscall.SIGINT)
	if err := <-waited; err != nil || werr.String() != "" {
		t.Errorf("watch after SIGINT: %v, stderr %q", err, werr.String())
	}

	part := testproc.StartParticipant(t, bins["testpart"])
	out, errOut, code = tccdExec(t, "check-participant", "--try", part.URL()+"/reservations", "--ttl-param", "ttl=500ms", "--expiry-grace", "100ms")
	if code != 0 || errOut != "" || !strings.Contains(out, "8 passed, 0 failed, 1 not checked: the participant keeps the contract") {
		t.Errorf("check-participant: exit %d, stderr %q\n%s", code, errOut, out)
	}
}
