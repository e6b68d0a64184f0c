package http

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
)

// TestCodesInSync: the domain's codes and the wire table are the same set.
func TestCodesInSync(t *testing.T) {
	var domain []string
	for _, c := range tccd.Codes {
		domain = append(domain, string(c))
	}
	wire := api.Codes()
	slices.Sort(domain)
	slices.Sort(wire)
	if !slices.Equal(domain, wire) {
		t.Fatalf("domain codes %v, wire codes %v", domain, wire)
	}
}

func TestProblemFor(t *testing.T) {
	tx := &tccd.Transaction{ID: "t1", State: tccd.StateCancelled}
	tests := []struct {
		err    error
		status int
		code   string
		field  string
		state  string
		detail string
	}{
		{tccd.FieldError("timeout", "bad timeout"), 400, "invalid", "timeout", "", "bad timeout"},
		{fmt.Errorf("wrapped: %w", tccd.Errorf(tccd.ENotFound, "gone")), 404, "not_found", "", "", "gone"},
		{&tccd.Error{Code: tccd.ETimedOut, Message: "timed out", Tx: tx}, 409, "timed_out", "", "cancelled", "timed out"},
		{errors.New("disk on fire"), 500, "internal", "", "", "internal error"},
		{&tccd.Error{Code: tccd.EUnavailable, Message: "log down", Err: errors.New("EIO secret path")}, 503, "unavailable", "", "", "log down"},
	}
	for _, tt := range tests {
		p := ProblemFor(tt.err, "/x")
		if p.Status != tt.status || p.Code != tt.code || p.Field != tt.field || p.State != tt.state || p.Detail != tt.detail {
			t.Errorf("ProblemFor(%v) = %+v", tt.err, p)
		}
		if p.Type != ProblemTypePrefix+tt.code || p.Instance != "/x" {
			t.Errorf("ProblemFor(%v): type %q instance %q", tt.err, p.Type, p.Instance)
		}
	}
}
