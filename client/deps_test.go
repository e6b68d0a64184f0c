package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the SDK light: package client (its non-test build, which
// is what users link) must not depend on the coordinator, its HTTP server,
// its store engine or any database driver. Outside the standard library it
// may use package api only.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}",
		"github.com/tccd/tccd/client").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list listed nothing")
	}
	denied := func(p string) bool {
		switch p {
		case "github.com/tccd/tccd", "github.com/tccd/tccd/http", "github.com/tccd/tccd/pebble":
			return true
		}
		for _, prefix := range []string{
			"github.com/cockroachdb/", "github.com/jackc/", "github.com/lib/pq",
			"github.com/go-sql-driver/", "github.com/mattn/go-sqlite3", "modernc.org/sqlite",
			"github.com/glebarez/", "github.com/ncruces/go-sqlite3",
		} {
			if strings.HasPrefix(p, prefix) {
				return true
			}
		}
		return false
	}
	allowed := map[string]bool{"github.com/tccd/tccd/client": true, "github.com/tccd/tccd/api": true}
	for _, p := range deps {
		if denied(p) {
			t.Errorf("client depends on %s", p)
		} else if !allowed[p] {
			t.Errorf("client depends on %s, outside the standard library and package api", p)
		}
	}

	// No SQL either, from the standard library.
	out, err = exec.Command("go", "list", "-deps", "github.com/tccd/tccd/client").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "database/sql") {
			t.Errorf("client depends on %s", p)
		}
	}
}
