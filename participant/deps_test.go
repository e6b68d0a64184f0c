package participant_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps guards that the kit stays light: it must not link the
// coordinator (the root package, the HTTP server), the store engine, or
// any database driver — the application chooses its driver. Test files
// may import drivers; `go list -deps` of the package does not see them.
func TestDeps(t *testing.T) {
	const self = "github.com/tccd/tccd/participant"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", self).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := func(pkg string) bool {
		switch {
		case pkg == "github.com/tccd/tccd",
			pkg == "github.com/tccd/tccd/http",
			pkg == "github.com/tccd/tccd/pebble" || strings.HasPrefix(pkg, "github.com/tccd/tccd/pebble/"),
			strings.HasPrefix(pkg, "github.com/cockroachdb/"),
			strings.HasPrefix(pkg, "github.com/jackc/"),
			pkg == "modernc.org/sqlite" || strings.HasPrefix(pkg, "modernc.org/sqlite/"),
			pkg == "github.com/go-sql-driver/mysql":
			return true
		}
		return false
	}
	// Beyond the standard library the kit may use only the wire names of
	// package api; anything new here deserves a second look.
	allowed := map[string]bool{self: true, "github.com/tccd/tccd/api": true}
	var deps []string
	for _, pkg := range strings.Fields(string(out)) {
		deps = append(deps, pkg)
		if forbidden(pkg) {
			t.Errorf("participant depends on %s", pkg)
		} else if !allowed[pkg] {
			t.Errorf("participant depends on %s, outside the standard library and package api", pkg)
		}
	}
	if len(deps) == 0 || deps[len(deps)-1] != self {
		t.Errorf("go list printed %q; expected it to end with %s", out, self)
	}
}
