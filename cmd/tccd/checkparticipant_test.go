package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/checkpart"
	"github.com/tccd/tccd/internal/testpart"
)

// TestCheckParticipant runs tccd check-participant on testpart, as it
// is and with a breach of the contract (the checks themselves are tested
// in package checkpart).
func TestCheckParticipant(t *testing.T) {
	t.Parallel()
	h := testpart.NewBreachHandler(testpart.NewTest(t, time.Minute))
	srv := httptest.NewServer(h)
	defer srv.Close()
	check := func(extra ...string) (string, string, error) {
		args := append([]string{"check-participant", "--try", srv.URL + "/reservations",
			"--idempotency-header", testpart.HeaderIdempotencyKey, "--ttl-param", "ttl=300ms", "--expiry-grace", "50ms"}, extra...)
		var out, errOut bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := run(ctx, args, &out, &errOut, fakeEnv(nil))
		return out.String(), errOut.String(), err
	}

	out, errOut, err := check()
	if err != nil || errOut != "" {
		t.Fatalf("a correct participant: %v, stderr %q\n%s", err, errOut, out)
	}
	if !strings.HasPrefix(out, "Checking POST "+srv.URL+"/reservations against the TCC participant contract\n\n") ||
		strings.Count(out, "\npass ") != 9 || !strings.HasSuffix(out, "\n9 passed, 0 failed, 0 not checked: the participant keeps the contract\n") {
		t.Fatalf("report:\n%s", out)
	}

	h.Set(testpart.BreachCancelConfirmed)
	out, _, err = check()
	if err == nil || exitCode(err) != 1 || err.Error() != "the participant does not keep the contract: 8 passed, 1 failed, 0 not checked" {
		t.Fatalf("a breach: %v\n%s", err, out)
	}
	for _, want := range []string{
		"\nFAIL         cancel-after-confirm  a cancel of a confirmed reservation answered 204 No Content, which tells tccd it was cancelled\n",
		"\n                                   fix: refuse a cancel of a confirmed reservation with 409 Conflict",
		"\n                                   why: tccd cancels participants whose confirm may have landed",
		"\n                                   saw: POST " + srv.URL + "/reservations → 201 Created\n",
		"→ 204 No Content\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}

	out, _, err = check("--json")
	var report checkpart.Report
	if exitCode(err) != 1 || json.Unmarshal([]byte(out), &report) != nil || len(report.Outcomes) != 9 {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if o, _ := report.Outcome("cancel-after-confirm"); o.Result != checkpart.Fail || len(o.Calls) != 3 {
		t.Fatalf("--json outcome %+v", o)
	}
}
