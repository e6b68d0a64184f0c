package client_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/internal/testpart"
)

// TestErrorMapping drives a real coordinator into every error outcome and
// checks what a caller can branch on.
func TestErrorMapping(t *testing.T) {
	sentinels := map[string]error{
		"ErrTimedOut": client.ErrTimedOut, "ErrHeuristic": client.ErrHeuristic,
		"ErrNotFound": client.ErrNotFound, "ErrConflict": client.ErrConflict,
		"ErrInProgress": client.ErrInProgress,
	}
	// sequential confirms participants one after another, in order, so
	// that the first confirms before the second refuses: a heuristic.
	sequential := func(c tccd.Config) tccd.Config { c.MaxParallel = 1; return c }

	tests := []struct {
		name   string
		cfg    func(tccd.Config) tccd.Config
		run    func(t *testing.T, e *env) error
		is     string // the sentinel that must match; every other must not
		status int
		code   string
		// problem: the error carries a problem document (native API).
		problem bool
		check   func(t *testing.T, err error)
	}{
		{
			name: "native confirm, participant already cancelled: timed out",
			run: func(t *testing.T, e *env) error {
				p := newPart(t, nil)
				p.svc.AddFault(testpart.Fault{Op: "confirm", Count: 1, Status: 404})
				tx, err := e.c.Begin(testCtx(t), client.WithParticipants(p.try(time.Minute)))
				if err != nil {
					t.Fatal(err)
				}
				_, err = tx.Confirm(testCtx(t))
				return err
			},
			is: "ErrTimedOut", status: 409, code: api.CodeTimedOut, problem: true,
			check: func(t *testing.T, err error) {
				var e *client.Error
				errors.As(err, &e)
				if e.Transaction == nil || e.Transaction.State != "cancelled" {
					t.Errorf("Transaction = %+v, want the cancelled transaction", e.Transaction)
				}
			},
		},
		{
			name: "native confirm, second participant refuses: heuristic",
			cfg:  sequential,
			run: func(t *testing.T, e *env) error {
				p1, p2 := newPart(t, nil), newPart(t, nil)
				p2.svc.AddFault(testpart.Fault{Op: "confirm", Count: 1, Status: 400})
				tx, err := e.c.Begin(testCtx(t), client.WithParticipants(p1.try(time.Minute), p2.try(time.Minute)))
				if err != nil {
					t.Fatal(err)
				}
				_, err = tx.Confirm(testCtx(t))
				return err
			},
			is: "ErrHeuristic", status: 409, code: api.CodeHeuristic, problem: true,
			check: func(t *testing.T, err error) {
				var he *client.HeuristicError
				if !errors.As(err, &he) {
					t.Fatalf("%T is not a *HeuristicError", err)
				}
				var got []string
				for _, p := range he.Participants() {
					got = append(got, p.State)
				}
				if !slices.Equal(got, []string{"confirmed", "failed"}) {
					t.Errorf("participant outcomes = %v, want [confirmed failed]", got)
				}
				if ps := he.Participants(); len(ps) == 2 && ps[1].LastStatus != 400 {
					t.Errorf("refusing participant's last status = %d, want 400", ps[1].LastStatus)
				}
				if !strings.Contains(err.Error(), "1 confirmed, 1 failed") {
					t.Errorf("message %q does not summarise the outcome", err)
				}
			},
		},
		{
			name: "native cancel of a confirmed transaction: conflict",
			run: func(t *testing.T, e *env) error {
				p := newPart(t, nil)
				tx, err := e.c.Begin(testCtx(t), client.WithParticipants(p.try(time.Minute)))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Confirm(testCtx(t)); err != nil {
					t.Fatal(err)
				}
				_, err = tx.Cancel(testCtx(t))
				return err
			},
			is: "ErrConflict", status: 409, code: api.CodeConflict, problem: true,
			check: conflictState("confirmed"),
		},
		{
			name: "native confirm of a cancelled transaction: conflict",
			run: func(t *testing.T, e *env) error {
				tx, err := e.c.Begin(testCtx(t))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Cancel(testCtx(t)); err != nil {
					t.Fatal(err)
				}
				_, err = tx.Confirm(testCtx(t))
				return err
			},
			is: "ErrConflict", status: 409, code: api.CodeConflict, problem: true,
			check: conflictState("cancelled"),
		},
		{
			name: "enlist in a cancelled transaction: conflict",
			run: func(t *testing.T, e *env) error {
				tx, err := e.c.Begin(testCtx(t))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Cancel(testCtx(t)); err != nil {
					t.Fatal(err)
				}
				return tx.Enlist(testCtx(t), newPart(t, nil).try(time.Minute))
			},
			is: "ErrConflict", status: 409, code: api.CodeConflict, problem: true,
			check: conflictState("cancelled"),
		},
		{
			name: "get an unknown transaction: not found",
			run: func(t *testing.T, e *env) error {
				_, err := e.c.Get(testCtx(t), "01NOSUCHTRANSACTION")
				return err
			},
			is: "ErrNotFound", status: 404, code: api.CodeNotFound, problem: true,
		},
		{
			name: "confirm an unknown transaction: not found",
			run: func(t *testing.T, e *env) error {
				_, err := e.c.Tx("01NOSUCHTRANSACTION").Confirm(testCtx(t))
				return err
			},
			is: "ErrNotFound", status: 404, code: api.CodeNotFound, problem: true,
		},
		{
			name: "enlist an expired link: invalid",
			run: func(t *testing.T, e *env) error {
				tx, err := e.c.Begin(testCtx(t))
				if err != nil {
					t.Fatal(err)
				}
				return tx.Enlist(testCtx(t), client.Link{URI: "http://127.0.0.1:1/r/1", Expires: time.Now().Add(-time.Minute)})
			},
			status: 400, code: api.CodeInvalid, problem: true,
			check: problemField("expires"),
		},
		{
			name: "begin with too long a timeout: invalid",
			run: func(t *testing.T, e *env) error {
				_, err := e.c.Begin(testCtx(t), client.WithTimeout(48*time.Hour))
				return err
			},
			status: 400, code: api.CodeInvalid, problem: true,
			check: problemField("timeout"),
		},
		{
			name: "atomikos confirm, participant already cancelled: timed out (404)",
			run: func(t *testing.T, e *env) error {
				p := newPart(t, nil)
				p.svc.AddFault(testpart.Fault{Op: "confirm", Count: 1, Status: 404})
				return e.c.Confirm(testCtx(t), p.try(time.Minute))
			},
			is: "ErrTimedOut", status: 404, code: api.CodeTimedOut,
			check: messageContains("transaction has timed out and was cancelled"),
		},
		{
			name: "atomikos confirm of an expired link: timed out (404)",
			run: func(t *testing.T, e *env) error {
				p := newPart(t, nil)
				return e.c.Confirm(testCtx(t), client.Link{URI: p.try(time.Minute).URI, Expires: time.Now().Add(-time.Second)})
			},
			is: "ErrTimedOut", status: 404, code: api.CodeTimedOut,
		},
		{
			name: "atomikos confirm, second participant refuses: heuristic (409) without detail",
			cfg:  sequential,
			run: func(t *testing.T, e *env) error {
				p1, p2 := newPart(t, nil), newPart(t, nil)
				p2.svc.AddFault(testpart.Fault{Op: "confirm", Count: 1, Status: 400})
				return e.c.Confirm(testCtx(t), p1.try(time.Minute), p2.try(time.Minute))
			},
			is: "ErrHeuristic", status: 409, code: api.CodeHeuristic,
			check: func(t *testing.T, err error) {
				var he *client.HeuristicError
				if !errors.As(err, &he) {
					t.Fatalf("%T is not a *HeuristicError", err)
				}
				if he.Transaction != nil || he.Participants() != nil {
					t.Errorf("the Atomikos API gives no detail, yet the error has %+v", he.Transaction)
				}
				if !strings.Contains(err.Error(), "no participant detail") {
					t.Errorf("message %q does not say that detail is missing", err)
				}
			},
		},
		{
			name: "atomikos confirm with a duplicate link: invalid (400)",
			run: func(t *testing.T, e *env) error {
				l := newPart(t, nil).try(time.Minute)
				return e.c.Confirm(testCtx(t), l, l)
			},
			status: 400, code: api.CodeInvalid,
			check: messageContains("duplicate participant link"),
		},
		{
			name: "atomikos cancel with a bad URI: invalid (400)",
			run: func(t *testing.T, e *env) error {
				return e.c.Cancel(testCtx(t), client.Link{URI: "ftp://example.com/r/1", Expires: time.Now().Add(time.Minute)})
			},
			status: 400, code: api.CodeInvalid,
			check: messageContains("scheme"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			if tt.cfg != nil {
				cfg = tt.cfg(cfg)
			}
			e := newEnv(t, cfg)
			err := tt.run(t, e)
			if err == nil {
				t.Fatal("no error")
			}
			for name, s := range sentinels {
				if got := errors.Is(err, s); got != (name == tt.is) {
					t.Errorf("errors.Is(err, %s) = %v (err: %v)", name, got, err)
				}
			}
			var ce *client.Error
			if !errors.As(err, &ce) {
				t.Fatalf("errors.As(%T, *client.Error) = false: %v", err, err)
			}
			if ce.Status != tt.status || ce.Code != tt.code {
				t.Errorf("Status, Code = %d, %q; want %d, %q", ce.Status, ce.Code, tt.status, tt.code)
			}
			if p := client.ProblemOf(err); (p != nil) != tt.problem {
				t.Errorf("ProblemOf = %+v, want a problem: %v", p, tt.problem)
			} else if p != nil && (p.Code != tt.code || p.Status != tt.status || p.Type != api.ProblemTypePrefix+tt.code) {
				t.Errorf("problem = %+v, want code %s status %d", p, tt.code, tt.status)
			}
			if tt.check != nil {
				tt.check(t, err)
			}
		})
	}
}

func conflictState(want string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var ce *client.ConflictError
		if !errors.As(err, &ce) {
			t.Fatalf("%T is not a *ConflictError", err)
		}
		if ce.State != want {
			t.Errorf("State = %q, want %q", ce.State, want)
		}
		if ce.Transaction == nil || ce.Transaction.State != want {
			t.Errorf("Transaction = %+v, want one in state %s", ce.Transaction, want)
		}
	}
}

func problemField(want string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if p := client.ProblemOf(err); p == nil || p.Field != want {
			t.Errorf("problem = %+v, want field %q", p, want)
		}
	}
}

func messageContains(want string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var ce *client.Error
		if errors.As(err, &ce) && !strings.Contains(ce.Message, want) {
			t.Errorf("Message = %q, want it to contain %q", ce.Message, want)
		}
	}
}

// TestErrorMessages checks the texts a log would show.
func TestErrorMessages(t *testing.T) {
	e := &client.Error{Status: 409, Code: api.CodeConflict, Message: "cannot cancel: the transaction is confirmed"}
	tests := []struct {
		err  error
		want string
	}{
		{e, "tccd: cannot cancel: the transaction is confirmed (409 conflict)"},
		{&client.ConflictError{Err: e, State: "confirmed"}, "tccd: cannot cancel: the transaction is confirmed (409 conflict); state confirmed"},
		{&client.Error{Status: 502}, "tccd: Bad Gateway (502)"},
		{&client.HeuristicError{Err: &client.Error{Status: 409, Code: api.CodeHeuristic, Message: "partial confirmation - check each participant for details"}},
			"tccd: partial confirmation - check each participant for details (409 heuristic); the Atomikos API gives no participant detail: check each participant"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
