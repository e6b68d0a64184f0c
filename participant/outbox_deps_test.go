package participant_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDepsNoBroker guards that the outbox links no broker: the kit
// defines the Publisher interface, and the application brings the
// implementation (package github.com/tccd/tccd/nats, say). Tests may
// import it; `go list -deps` of the package does not see them.
func TestDepsNoBroker(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/tccd/tccd/participant").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "github.com/tccd/tccd/nats" || strings.HasPrefix(pkg, "github.com/nats-io/") {
			t.Errorf("participant depends on %s: the kit must link no broker", pkg)
		}
	}
}
