// Package stompjs finds what the tests that run @stomp/stompjs under Node
// need: a node binary of version 20 or newer, and the fixture's packages
// (npm ci --prefix stomp/testdata/stompjs).
package stompjs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// How says how to install what the tests need.
const How = "install Node 20+ and npm, then run: npm ci --prefix stomp/testdata/stompjs (see README, Set-up)"

// Need returns the node binary. When Node 20+ or one of the fixture's
// packages in dir/node_modules is missing, it skips the test — or, under
// CI=true, fails it, naming what is missing and how to install it.
func Need(t testing.TB, dir string) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: under CI=true the stompjs test must run; %s", fmt.Sprintf(format, args...), How)
		}
		t.Skipf("%s: skipping the stompjs test; %s", fmt.Sprintf(format, args...), How)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node not found")
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		missing("node --version: %v", err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	if major, err := strconv.Atoi(strings.SplitN(v, ".", 2)[0]); err != nil || major < 20 {
		missing("node %s is older than 20", v)
	}
	for _, pkg := range []string{"@stomp/stompjs", "ws"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			missing("%s is not installed in %s/node_modules", pkg, dir)
		}
	}
	return node
}
