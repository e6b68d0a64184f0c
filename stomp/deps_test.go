package stomp

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the package generic: beyond the standard library it
// links the WebSocket library alone, and nothing of tccd (the engine
// plugs in through the hooks, not the other way round).
func TestDeps(t *testing.T) {
	const self = "github.com/tccd/tccd/stomp"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", self).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	var deps []string
	for _, pkg := range strings.Fields(string(out)) {
		deps = append(deps, pkg)
		if pkg != self && pkg != "github.com/coder/websocket" && !strings.HasPrefix(pkg, "github.com/coder/websocket/internal/") {
			t.Errorf("stomp depends on %s", pkg)
		}
	}
	if len(deps) == 0 || deps[len(deps)-1] != self {
		t.Errorf("go list printed %q; expected it to end with %s", out, self)
	}
}
