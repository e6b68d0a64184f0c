// Command mutation measures the strength of tccd's test suite: it applies
// one small change to the product code at a time — a mutation a real bug
// could make — runs the tests that should notice, and reports which
// mutations the suite caught and which survived. docs/RELIABILITY.md
// records a run.
//
//	go run ./internal/mutation                  # every mutation
//	go run ./internal/mutation -run in-doubt     # those whose name matches
//	go run ./internal/mutation -list            # list them
//
// It works on a copy of the tree (the files git knows, as they are in the
// working tree), so the tree itself is never changed. A mutation whose
// text is not found exactly once is reported as stale: the code moved and
// the table below must follow it.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// mutant is one mutation: in file, old (which must occur exactly once)
// becomes new — and so for each edit of moreEdits[name], when one change
// needs more edits; pkgs are the packages whose tests should catch it.
type mutant struct {
	name     string
	file     string
	old, new string
	pkgs     []string
}

// moreEdits are the further edits of mutations that need more than one.
var moreEdits = map[string][][2]string{
	// Alone, the first edit is caught by nothing and harms nothing: the
	// driver confirms the rest after a stop when something confirmed (a
	// confirm in flight at the stop). Both together are the bug.
	"driver: a refusal after a confirm stops the confirm phase": {
		{"\t\t\t\tif tx.confirmedTCC() > 0 {\n\t\t\t\t\tcarry = res.attempts", "\t\t\t\tif false {\n\t\t\t\t\tcarry = res.attempts"},
	},
	// The confirm phase takes the messages as if they were participants,
	// and the workers publish them.
	"messages: published during the confirm phase": {
		{"\t\t\t\tif op == OpPublish {\n\t\t\t\t\tc.publish", "\t\t\t\tif tx.Participants[i].message() {\n\t\t\t\t\tc.publish"},
	},
}

// core is where most mutations should be caught.
var core = []string{".", "./http/", "./pebble/", "./client/"}

var mutants = []mutant{
	{"state table: confirming cannot end heuristic", "state.go",
		"StateConfirming:   {StateConfirming, StateConfirmed, StateCancelling, StateCompensating, StateHeuristic},",
		"StateConfirming:   {StateConfirming, StateConfirmed, StateCancelling, StateCompensating},", core},
	{"state table: records may be born confirmed", "state.go",
		"StateNone:         {StateActive, StateConfirming, StateCancelling},",
		"StateNone:         {StateActive, StateConfirming, StateCancelling, StateConfirmed},", core},
	{"classification: 404 to a confirm taken as confirmed", "caller.go",
		"case op != OpCancel && (s == 404 || s == 410):\n\t\treturn VerdictGone",
		"case op != OpCancel && (s == 404 || s == 410):\n\t\treturn VerdictDone", core},
	{"classification: 5xx taken as success", "caller.go",
		"case s == 408 || s == 425 || s == 429 || s >= 500:\n\t\treturn VerdictRetry",
		"case s == 408 || s == 425 || s == 429 || s >= 500:\n\t\treturn VerdictDone", core},
	{"in doubt: a lost reply is never in doubt", "caller.go",
		"if r.Status == 0 {\n\t\treturn r.Sent\n\t}",
		"if r.Status == 0 {\n\t\treturn false\n\t}", core},
	{"in doubt: a restart forgets that confirms may have been sent", "driver.go",
		"(r.InDoubt() || maybeSent)", "r.InDoubt()", append(core, "./cmd/tccd/")},
	{"refused cancel taken as a cancel", "caller.go",
		"return !r.Permanent && r.Err == nil && r.Status != 0 && Classify(OpCancel, r) == VerdictPermanent",
		"return false", core},
	{"driver: a refusal after a confirm stops the confirm phase", "driver.go",
		"if ps.op == OpConfirm && ps.confirmed == 0 && !ps.aborted {",
		"if ps.op == OpConfirm && !ps.aborted {", core},
	{"answers: a cancel with a participant in doubt reported cancelled", "coordinator.go",
		"func CancelCertain(tx *Transaction) bool {\n",
		"func CancelCertain(tx *Transaction) bool {\n\treturn true\n", core},
	{"margin: a link expiring at now+margin refused", "coordinator.go",
		"p.Expires.Sub(now) < c.Margin(HostOf(p.URI))",
		"p.Expires.Sub(now) <= c.Margin(HostOf(p.URI))", core},
	{"margin: no expiry margin at all", "coordinator.go",
		"if p.State == ParticipantPending && !p.message() && p.Expires.Sub(now) < c.Margin(HostOf(p.URI)) {",
		"if false && p.State == ParticipantPending && !p.message() && p.Expires.Sub(now) < c.Margin(HostOf(p.URI)) {", core},
	{"durability: the confirm decision not synced", "coordinator.go",
		"\ttx, decided, err = c.update(ctx, id, true, func(tx *Transaction) (State, error) {\n\t\tif tx.State != StateActive {\n\t\t\tfor _, l := range links {",
		"\ttx, decided, err = c.update(ctx, id, false, func(tx *Transaction) (State, error) {\n\t\tif tx.State != StateActive {\n\t\t\tfor _, l := range links {", core},
	{"durability: the cancel decision not synced", "coordinator.go",
		"\ttx, decided, err := c.update(ctx, id, true, func(tx *Transaction) (State, error) {\n\t\tif tx.State != StateActive {\n\t\t\treturn \"\", errUnchanged\n\t\t}\n\t\ttx.Reason = ReasonRequested\n\t\tc.claim(tx, c.clock.Now())\n\t\treturn StateCancelling, nil",
		"\ttx, decided, err := c.update(ctx, id, false, func(tx *Transaction) (State, error) {\n\t\tif tx.State != StateActive {\n\t\t\treturn \"\", errUnchanged\n\t\t}\n\t\ttx.Reason = ReasonRequested\n\t\tc.claim(tx, c.clock.Now())\n\t\treturn StateCancelling, nil", core},
	{"durability: the one-shot decision not synced", "coordinator.go",
		"err := c.create(ctx, tx, true)", "err := c.create(ctx, tx, false)", core},
	{"recovery: decided transactions not resumed", "coordinator.go",
		"case !tx.State.Final():\n\t\t\tresume = append(resume, tx.ID)",
		"case !tx.State.Final():", append(core, "./cmd/tccd/")},
	{"recovery: the re-drive loop never runs", "coordinator.go",
		"\tc.goTracked(c.redriveLoop)\n", "\n", core},
	{"recovery: a timeout whose cancel was refused by the store is never retried", "coordinator.go",
		"if !armed && !tx.Deadline.After(now) {", "if false && !armed && !tx.Deadline.After(now) {", core},
	{"compare-and-set: the version is not checked", "pebble/store.go",
		"if h.version != tx.Version {", "if false && h.version != tx.Version {", core},
	{"id filter: an id created during a build is left out of it", "pebble/ids.go",
		"\tif f.next != nil {\n\t\tf.next.AddString(id)\n\t}\n\treturn mayExist",
		"\treturn mayExist", core},
	{"back-off: a retry may wait past the link's expiry", "driver.go",
		"\t\tif now.Before(p.Expires) {\n\t\t\twait = min(wait, p.Expires.Sub(now))\n\t\t}\n",
		"\n", core},
	{"back-off: Retry-After ignored", "driver.go",
		"wait := max(policy.Delay(retry, nil), r.RetryAfter)",
		"wait := policy.Delay(retry, nil)", core},
	{"allowlist: IPv4 embedded in IPv6 not judged", "allowlist.go",
		"for _, a := range append([]netip.Addr{ip}, embeddedIPv4(ip)...) {",
		"for _, a := range []netip.Addr{ip} {", core},
	{"allowlist: link-local addresses allowed", "allowlist.go",
		"\t{netip.MustParsePrefix(\"169.254.0.0/16\"), \"a link-local address\"},\n", "\n", core},
	{"answers: Atomikos heuristic answered 404", "http/problem.go",
		"case tccd.EHeuristic:\n\t\treturn http.StatusConflict",
		"case tccd.EHeuristic:\n\t\treturn http.StatusNotFound", core},
	{"answers: an Atomikos body without participantLinks confirms nothing", "http/wire.go",
		"if req.ParticipantLinks == nil {", "if false && req.ParticipantLinks == nil {", core},
	{"identity: links not canonicalised", "coordinator.go",
		"\t\tl.URI = u\n\t\tfor _, extra := range", "\t\t_ = u\n\t\tfor _, extra := range", core},
	{"roles: a client may call admin operations", "http/server.go",
		"if role == roleAdmin && p.Role != roleAdmin {", "if false && role == roleAdmin && p.Role != roleAdmin {", core},
	{"ownership: a client sees every transaction", "principal.go",
		"return !ok || p.Role == RoleAdmin || tx.CreatedBy == p.Name", "return !ok || p.Role == RoleAdmin || true", core},
	{"shutdown: answers within the grace thrown away", "driver.go",
		"func (c *Coordinator) writeCtx() context.Context { return context.WithoutCancel(c.ctx) }",
		"func (c *Coordinator) writeCtx() context.Context { return c.ctx }", core},
	{"webhooks: pending deliveries not resumed at start", "coordinator.go",
		"case tx.Notification.State == NotificationPending:\n\t\t\tnotify = append(notify, tx.ID)",
		"case tx.Notification.State == NotificationPending:", append(core, "./cmd/tccd/")},
	{"events: a slow subscriber blocks Publish", "events.go",
		"if len(s.c) < b.buffer {\n\t\t\ts.c <- ev\n\t\t\tcontinue\n\t\t}",
		"if true {\n\t\t\ts.c <- ev\n\t\t\tcontinue\n\t\t}", core},
	{"messages: published during the confirm phase", "driver.go",
		"\t\t\tcase op == OpPublish:\n\t\t\t\tpending = append(pending, i)",
		"\t\t\tcase op == OpPublish || op == OpConfirm:\n\t\t\t\tpending = append(pending, i)", []string{".", "./nats/"}},
	{"messages: left pending when the transaction ends otherwise", "driver.go",
		"\tif to != StateConfirmed {\n\t\t// Messages are published",
		"\tif false {\n\t\t// Messages are published", []string{".", "./nats/"}},
	{"messages: a repeat past the duplicate window published blindly", "nats/coordinator.go",
		"\tif !m.Since.IsZero() {", "\tif false {", []string{"./nats/"}},
	{"messages: published in parallel, out of their order", "driver.go",
		"\t\tworkers = 1\n", "\t\tworkers = workers\n", []string{"."}},
	{"compensation: the decision to compensate not synced", "driver.go",
		"c.transitionWith(c.writeCtx(), tx, StateCompensating, true, res.attempts)",
		"c.transitionWith(c.writeCtx(), tx, StateCompensating, false, res.attempts)", core},
	{"barrier: the commit record not synced", "barrier.go",
		"if err := c.transition(c.writeCtx(), tx, StateConfirming, true); err != nil {\n\t\t\ttx.Round.Committed = false",
		"if err := c.transition(c.writeCtx(), tx, StateConfirming, false); err != nil {\n\t\t\ttx.Round.Committed = false", append(core, "./cmd/tccd/")},
	{"enlist: a participant enlisted without a sync", "coordinator.go",
		"\treturn c.update(ctx, id, true, func(tx *Transaction) (State, error) {\n\t\tif tx.Participant(links[0].URI) >= 0 {",
		"\treturn c.update(ctx, id, false, func(tx *Transaction) (State, error) {\n\t\tif tx.Participant(links[0].URI) >= 0 {", core},
	{"messages: a message enlisted without a sync", "messages.go",
		"tx, _, err := c.update(ctx, id, true, func(tx *Transaction) (State, error) {",
		"tx, _, err := c.update(ctx, id, false, func(tx *Transaction) (State, error) {", append(core, "./nats/")},
	{"participant kit: expiry judged before the lock wait", "participant/ledger.go",
		"case rec.State == Tried && rec.Expires.UnixMilli() <= now:",
		"case rec.State == Tried && rec.Expires.UnixMilli() <= now-60000:", []string{"./participant/"}},
}

func main() {
	runRE := flag.String("run", "", "only the mutations whose name matches this regular expression")
	list := flag.Bool("list", false, "list the mutations and exit")
	timeout := flag.Duration("timeout", 10*time.Minute, "time limit of one mutation's tests")
	flag.Parse()
	re := regexp.MustCompile(*runRE)
	if *list {
		for _, m := range mutants {
			fmt.Printf("%-70s %s %v\n", m.name, m.file, m.pkgs)
		}
		return
	}
	root, err := copyTree()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutation:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(root)
	var caught, survived, stale int
	for _, m := range mutants {
		if !re.MatchString(m.name) {
			continue
		}
		res, detail := try(root, m, *timeout)
		switch res {
		case "caught":
			caught++
		case "survived":
			survived++
		default:
			stale++
		}
		fmt.Printf("%-9s %s%s\n", res, m.name, detail)
	}
	fmt.Printf("\n%d caught, %d survived, %d stale or broken\n", caught, survived, stale)
	if survived+stale > 0 {
		os.Exit(1)
	}
}

// try applies m in the copy at root, runs its tests, and restores the file.
func try(root string, m mutant, timeout time.Duration) (string, string) {
	path := filepath.Join(root, m.file)
	orig, err := os.ReadFile(path)
	if err != nil {
		return "stale", ": " + err.Error()
	}
	mutated := orig
	for _, e := range append([][2]string{{m.old, m.new}}, moreEdits[m.name]...) {
		if n := bytes.Count(mutated, []byte(e[0])); n != 1 {
			return "stale", fmt.Sprintf(": the text occurs %d times in %s", n, m.file)
		}
		mutated = bytes.Replace(mutated, []byte(e[0]), []byte(e[1]), 1)
	}
	if err := os.WriteFile(path, mutated, 0o644); err != nil {
		return "stale", ": " + err.Error()
	}
	defer os.WriteFile(path, orig, 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Compile everything, tests too, running nothing: a mutant that does
	// not compile is broken, not caught.
	build := exec.CommandContext(ctx, "go", append([]string{"test", "-count=1", "-run", "^$"}, m.pkgs...)...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "broken", ": does not compile: " + firstLine(out)
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-count=1"}, m.pkgs...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	el := time.Since(start).Round(time.Second)
	if err == nil {
		return "survived", fmt.Sprintf(" (%v)", el)
	}
	return "caught", fmt.Sprintf(" (%v, by %s)", el, firstFailure(out))
}

func firstLine(b []byte) string {
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
	}
	return ""
}

var failRE = regexp.MustCompile(`(?m)^--- FAIL: (\S+)`)

func firstFailure(out []byte) string {
	if m := failRE.FindSubmatch(out); m != nil {
		return string(m[1])
	}
	if ctxErr := bytes.Contains(out, []byte("panic:")); ctxErr {
		return "a panic"
	}
	return "a failing package"
}

// copyTree copies the files git knows, as they are in the working tree,
// into a temporary directory.
func copyTree() (string, error) {
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		return "", fmt.Errorf("git ls-files (run it in the repository): %w", err)
	}
	root, err := os.MkdirTemp("", "tccd-mutation-")
	if err != nil {
		return "", err
	}
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if err := copyFile(f, filepath.Join(root, f)); err != nil {
			if os.IsNotExist(err) {
				continue // deleted in the working tree
			}
			os.RemoveAll(root)
			return "", err
		}
	}
	return root, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
