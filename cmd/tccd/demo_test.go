package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `tccd demo` as a newcomer would (the built binary) and
// checks that it exits 0, that its table shows every scenario, that its
// final counts add up, and that it leaves no temporary directory behind.
func TestDemo(t *testing.T) {
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins["tccd"], "demo")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("tccd demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	took := time.Since(start)
	out := stdout.String()
	t.Logf("tccd demo took %v", took)
	if took > 20*time.Second {
		t.Errorf("tccd demo took %v; a newcomer's first command should take well under 20s", took)
	}

	for _, want := range []*regexp.Regexp{
		// A plain booking in each style.
		regexp.MustCompile(`(?m)^ +1 +one-shot +1A +1A +confirmed`),
		regexp.MustCompile(`(?m)^ +2 +registered +1B +1B +confirmed`),
		// A participant that crashes and comes back.
		regexp.MustCompile(`(?m)^ +\d+ +registered .* confirmed +easyjet crashed before the confirm; .* confirmed it at attempt [4-9]`),
		// A try while it is down.
		regexp.MustCompile(`(?m)^ +\d+ +one-shot +\w+ +- +failed +easyjet was down during the try; swiss seat \w+ released`),
		// An abandoned booking that expires.
		regexp.MustCompile(`(?m)^ +\d+ +\S+ +\w+ +\w+ +expired +walked away after the tries; .*released both seats`),
		// A full flight.
		regexp.MustCompile(`(?m)^ +\d+ +\S+ +\w+ +- +refused +easyjet: flight U2-5201 is full; swiss seat \w+ released`),
		// The final counts: every easyjet seat sold, as many at swiss, nothing reserved.
		regexp.MustCompile(`(?m)^Final seat counts \(30 bookings, 24 confirmed\):$`),
		regexp.MustCompile(`(?m)^ +swiss +LX318 +30 +24 +0 +6$`),
		regexp.MustCompile(`(?m)^ +easyjet +U2-5201 +24 +24 +0 +0$`),
		regexp.MustCompile(`(?m)^All invariants hold`),
	} {
		if !want.MatchString(out) {
			t.Errorf("the demo's output has no line matching %s", want)
		}
	}
	if strings.Contains(out, "✗") {
		t.Error("the demo reports a failed invariant")
	}
	if t.Failed() {
		t.Logf("output:\n%s\nstderr:\n%s", out, stderr.String())
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("the demo left %s behind in its temporary directory", e.Name())
	}
}

// TestDemoInProcess runs the demo through run, in the test's process, so
// that `go test -race` watches its goroutines (the airlines' servers and
// sweepers, the confirm that waits out the crash).
func TestDemoInProcess(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := run(ctx, []string{"demo"}, &out, &errOut, func(string) string { return "" }); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "All invariants hold") {
		t.Errorf("output:\n%s", out.String())
	}
}
