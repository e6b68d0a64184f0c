package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/tccd/tccd/internal/checkpart"
)

// headerFlag collects "Name: value" headers.
type headerFlag http.Header

func (h headerFlag) String() string { return "" }

func (h headerFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("want \"Name: value\", not %q", v)
	}
	k := textproto.CanonicalMIMEHeaderKey(name)
	h[k] = append(h[k], strings.TrimSpace(value))
	return nil
}

// runCheckParticipant is `tccd check-participant`: a thin wrapper of
// package checkpart, which holds the checks.
func runCheckParticipant(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const name = "check-participant"
	fs := flag.NewFlagSet("tccd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = commandUsage(fs, "tccd check-participant --try URL [flags]\n       tccd check-participant --try-command CMD [flags]",
		"Tests a participant service against the TCC participant contract tccd relies on,\n"+
			"before it goes live: each check makes fresh reservations with the service's try,\n"+
			"confirms and cancels them as tccd would, and says what to fix. It confirms and\n"+
			"cancels real reservations: point it at a test instance. Exit status 0 when every\n"+
			"required check passes. "+checkpart.KeyPlaceholder+" in the try's URL, body, headers or command is\n"+
			"replaced by the try's idempotency key.")
	try := &checkpart.HTTPTry{Header: http.Header{}}
	var command string
	cfg := checkpart.Config{Progress: stderr}
	asJSON := false
	fs.StringVar(&try.URL, "try", "", "URL of the try that makes a reservation")
	fs.StringVar(&try.Method, "try-method", http.MethodPost, "method of the try")
	fs.StringVar(&try.Body, "try-body", "", "body of the try (sent as application/json unless a Content-Type --header says otherwise)")
	fs.Var(headerFlag(try.Header), "header", "header of the try, \"Name: value\" (repeatable)")
	fs.StringVar(&command, "try-command", "", "command (run with sh -c) that makes a reservation and prints its link:\n"+
		"{\"participantLink\":{\"uri\":…,\"expires\":…}} or \"URI EXPIRES\"; instead of --try")
	fs.StringVar(&try.IdempotencyHeader, "idempotency-header", "", "header that carries the try's idempotency key (Idempotency-Key, say): a repeated try is checked")
	fs.StringVar(&try.TTLParam, "ttl-param", "", "query parameter of the try that asks for a lifetime: NAME (given "+checkpart.DefaultShortTTL+") or NAME=VALUE,\n"+
		"so that the expiry check need not wait for the default lifetime")
	fs.DurationVar(&cfg.MaxWait, "max-wait", checkpart.DefaultMaxWait, "longest wait for a reservation to expire")
	fs.DurationVar(&cfg.ExpiryGrace, "expiry-grace", checkpart.DefaultExpiryGrace, "wait this long past an expiry before checking it, for the machines' clocks")
	fs.StringVar(&cfg.UnknownURI, "unknown-uri", "", "URI of a reservation the service never made (default: a reservation's URI with a random id)")
	fs.DurationVar(&cfg.Timeout, "timeout", checkpart.DefaultTimeout, "bound on each call to the service")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef(name, "unexpected arguments %q", fs.Args())
	case try.URL == "" && command == "":
		return usagef(name, "say how to make a reservation: --try URL or --try-command CMD")
	case try.URL != "" && command != "":
		return usagef(name, "give --try or --try-command, not both")
	case cfg.MaxWait <= 0 || cfg.Timeout <= 0 || cfg.ExpiryGrace < 0:
		return usagef(name, "--max-wait and --timeout must be positive, --expiry-grace not negative")
	}
	if command != "" {
		if try.IdempotencyHeader != "" || try.TTLParam != "" || try.Body != "" || len(try.Header) > 0 {
			return usagef(name, "--try-body, --header, --idempotency-header and --ttl-param go with --try, not --try-command")
		}
		cfg.Try = &checkpart.CommandTry{Command: command}
	} else {
		if err := try.Validate(); err != nil {
			return usagef(name, "%v", err)
		}
		cfg.Try = try
	}
	report, err := checkpart.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		printReport(stdout, report)
	}
	if !report.OK() {
		return errors.New("the participant does not keep the contract: " + tally(report))
	}
	return nil
}

// printReport prints the report for people: a line per check, and for
// each that did not pass, what to fix, why tccd needs it and the calls.
func printReport(w io.Writer, r *checkpart.Report) {
	fmt.Fprintf(w, "Checking %s against the TCC participant contract\n\n", r.Target)
	label := map[checkpart.Result]string{checkpart.Pass: "pass", checkpart.Fail: "FAIL", checkpart.NotChecked: "not checked"}
	indent := strings.Repeat(" ", 11+2+20+2) // under the detail
	for _, o := range r.Outcomes {
		fmt.Fprintf(w, "%-11s  %-20s  %s\n", label[o.Result], o.Check, o.Detail)
		if o.Result == checkpart.Pass {
			continue
		}
		if o.Fix != "" {
			fmt.Fprintf(w, "%sfix: %s\n", indent, o.Fix)
		}
		if o.Result == checkpart.Fail {
			fmt.Fprintf(w, "%swhy: %s\n", indent, o.Why)
			for i, c := range o.Calls {
				lead := "     "
				if i == 0 {
					lead = "saw: "
				}
				fmt.Fprintf(w, "%s%s%s\n", indent, lead, c)
			}
		}
	}
	fmt.Fprintf(w, "\n%s\n", tally(r))
}

func tally(r *checkpart.Report) string {
	s := fmt.Sprintf("%d passed, %d failed, %d not checked", r.Count(checkpart.Pass), r.Count(checkpart.Fail), r.Count(checkpart.NotChecked))
	if r.OK() {
		return s + ": the participant keeps the contract"
	}
	return s
}
