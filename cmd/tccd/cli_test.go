package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// commands are every command and subcommand, with a flag each takes.
var commands = []struct {
	args []string // the command
	flag string   // a flag its usage lists
}{
	{[]string{"serve"}, "-call-timeout"},
	{[]string{"demo"}, "-v"},
	{[]string{"bench"}, "-workload"},
	{[]string{"token"}, "-role"},
	{[]string{"migrate"}, "-store"},
	{[]string{"tx", "list"}, "-state"},
	{[]string{"tx", "show"}, "-server"},
	{[]string{"tx", "confirm"}, "-timeout"},
	{[]string{"tx", "cancel"}, "-token"},
	{[]string{"tx", "resolve"}, "-note"},
	{[]string{"tx", "watch"}, "-since"},
	{[]string{"purge"}, "-json"},
	{[]string{"check-participant"}, "-try-command"},
	{[]string{"version"}, ""},
}

// runCLI runs tccd in-process with a context that is already done, so
// that a command that wrongly starts working returns at once.
func runCLI(args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = run(ctx, args, &out, &errOut, fakeEnv(map[string]string{"TCCD_LISTEN": "127.0.0.1:0"}))
	return out.String(), errOut.String(), err
}

// TestHelp: -h and --help print the usage on stdout, nothing else, and
// exit 0, for every command.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, c := range commands {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string{}, c.args...), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				out, errOut, err := runCLI(args...)
				if err != nil || exitCode(err) != 0 && err != nil {
					t.Fatalf("error %v", err)
				}
				if errOut != "" {
					t.Errorf("stderr %q", errOut)
				}
				if !strings.HasPrefix(out, "Usage") || !strings.Contains(out, c.flag) {
					t.Errorf("stdout %q, want the usage with %s", out, c.flag)
				}
			})
		}
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"tx", "-h"}, {"tx", "help"}, {"help", "tx"}, {"help", "serve"}} {
		out, errOut, err := runCLI(args...)
		if err != nil || errOut != "" || !strings.HasPrefix(out, "tccd —") && !strings.HasPrefix(out, "Usage:") {
			t.Errorf("%q: %v, stdout %q, stderr %q", args, err, out, errOut)
		}
	}
}

// TestUsageErrors: a command line that cannot run is one short message
// and a hint, exit 2 — the flag list is not printed.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	type usageCase struct {
		args []string
		msg  string // the first line, after "tccd: "
		hint string
	}
	var tests []usageCase
	for _, c := range commands {
		name := strings.Join(c.args, " ")
		tests = append(tests, usageCase{
			args: append(append([]string{}, c.args...), "--no-such-flag"),
			msg:  name + ": flag provided but not defined: -no-such-flag",
			hint: "run 'tccd " + name + " -h' for the flags",
		})
	}
	tests = append(tests,
		usageCase{[]string{"frobnicate"}, `unknown command "frobnicate"`, "run 'tccd -h' for the commands"},
		usageCase{[]string{"tx"}, "tx: a command is needed: list, show, confirm, cancel, resolve or watch", "run 'tccd tx -h' for the commands"},
		usageCase{[]string{"tx", "drop"}, `tx: unknown command "drop"`, "run 'tccd tx -h' for the commands"},
		usageCase{[]string{"tx", "show"}, "tx show: the transaction ID is missing", "run 'tccd tx show -h' for the flags"},
		usageCase{[]string{"tx", "confirm", "a", "b"}, `tx confirm: unexpected arguments ["b"]`, "run 'tccd tx confirm -h' for the flags"},
		usageCase{[]string{"tx", "list", "--limit", "many"}, `tx list: invalid value "many" for flag -limit: parse error`, "run 'tccd tx list -h' for the flags"},
		usageCase{[]string{"tx", "list", "--server", "ftp://h"}, `tx list: --server: coordinator URL must be an absolute http or https URL, not "ftp://h"`, "run 'tccd tx list -h' for the flags"},
		usageCase{[]string{"tx", "resolve", "X", "--state", "done"}, "tx resolve: --state must be confirmed or cancelled", "run 'tccd tx resolve -h' for the flags"},
		usageCase{[]string{"purge", "now"}, `purge: unexpected arguments ["now"]`, "run 'tccd purge -h' for the flags"},
		usageCase{[]string{"serve", "now"}, `serve: unexpected arguments ["now"]`, "run 'tccd serve -h' for the flags"},
		usageCase{[]string{"token"}, "token: --name is required (it names the client in the tokens file and on its transactions)", "run 'tccd token -h' for the flags"},
		usageCase{[]string{"version", "now"}, `version: unexpected arguments ["now"]`, "run 'tccd version -h' for the flags"},
		usageCase{[]string{"check-participant"}, "check-participant: say how to make a reservation: --try URL or --try-command CMD", "run 'tccd check-participant -h' for the flags"},
		usageCase{[]string{"check-participant", "--try", "http://a/r", "--try-command", "x"}, "check-participant: give --try or --try-command, not both", "run 'tccd check-participant -h' for the flags"},
		usageCase{[]string{"check-participant", "--try", "a/r"}, `check-participant: the try URL "a/r" must be an absolute http or https URL`, "run 'tccd check-participant -h' for the flags"},
		usageCase{[]string{"check-participant", "--try", "http://a/r", "--header", "nocolon"}, `check-participant: invalid value "nocolon" for flag -header: want "Name: value", not "nocolon"`, "run 'tccd check-participant -h' for the flags"},
		usageCase{[]string{"check-participant", "--try-command", "x", "--ttl-param", "ttl"}, "check-participant: --try-body, --header, --idempotency-header and --ttl-param go with --try, not --try-command", "run 'tccd check-participant -h' for the flags"},
	)
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, err := runCLI(tt.args...)
			if exitCode(err) != 2 || !errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
				t.Fatalf("error %v (exit %d), want a usage error main prints", err, exitCode(err))
			}
			if want := tt.msg + "\n" + tt.hint; err.Error() != want {
				t.Errorf("error\n%s\nwant\n%s", err, want)
			}
			if out != "" || errOut != "" {
				t.Errorf("stdout %q, stderr %q: want nothing besides the error", out, errOut)
			}
		})
	}

	// tccd alone prints the usage on stderr, exit 2, and main adds nothing.
	out, errOut, err := runCLI()
	if exitCode(err) != 2 || !errors.Is(err, flag.ErrHelp) || out != "" || !strings.Contains(errOut, "Usage:") {
		t.Errorf("tccd alone: %v, stdout %q, stderr %q", err, out, errOut)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	rev := "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name    string
		version string
		bi      *debug.BuildInfo
		ok      bool
		want    string
	}{
		{"no build info", "dev", nil, false, "tccd dev\ncommit unknown\n" + runtime.Version() + "\n"},
		{"no vcs", "dev", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}}, true, "tccd dev\ncommit unknown\ngo1.26.0\n"},
		{"vcs", "v1.2.0", &debug.BuildInfo{GoVersion: "go1.26.0", Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"}}}, true,
			"tccd v1.2.0\ncommit " + rev + "\ngo1.26.0\n"},
		{"modified", "dev", &debug.BuildInfo{GoVersion: "go1.26.0", Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"}}}, true,
			"tccd dev\ncommit " + rev + " (with uncommitted changes)\ngo1.26.0\n"},
		{"go install", "dev", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.3.0"}}, true, "tccd v1.3.0\ncommit unknown\ngo1.26.0\n"},
	}
	for _, tt := range tests {
		if got := versionText(tt.version, tt.bi, tt.ok); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, _, err := runCLI(args...)
		if err != nil || !strings.HasPrefix(out, "tccd "+Version+"\ncommit ") || !strings.HasSuffix(out, "\n"+runtime.Version()+"\n") {
			t.Errorf("%q: %v %q", args, err, out)
		}
	}
}
