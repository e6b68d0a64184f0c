package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
)

// The admin commands — tccd tx … and tccd purge — talk to a running
// coordinator through the client SDK, the one typed client every command
// shares, and write to the writers they are given.

// defaultServer is the coordinator the admin commands talk to when
// neither --server nor TCCD_SERVER names one: tccd serve's default.
const defaultServer = "http://127.0.0.1:8420"

// defaultTimeout bounds an admin command (not watch): beyond the
// coordinator's confirm-wait (30s), so that a confirm gets its outcome.
const defaultTimeout = time.Minute

const txUsage = `Usage: tccd tx <command> [flags]

Look at and act on the transactions of a running coordinator.

Commands:
  list [--state S] [--limit N]     list transactions, newest first (admin)
  show ID                          show a transaction and its participants
  confirm ID                       confirm a transaction and wait for the outcome
  cancel ID                        cancel a transaction and wait for the participants
  resolve ID --state confirmed|cancelled [--note TEXT]
                                   record how a heuristic outcome was settled by hand (admin)
  watch [--transaction ID] [--type state|attempt] [--state S]
                                   print the coordinator's events as they happen, until interrupted

Every command takes --server URL (default $TCCD_SERVER, else ` + defaultServer + `),
--token TOKEN (default $TCCD_TOKEN) and --json (the API's JSON as it is, for scripts).
Run 'tccd tx <command> -h' for a command's flags.
`

// runTx is `tccd tx <command>`.
func runTx(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return &usageError{cmd: "tx", what: "commands", err: errors.New("a command is needed: list, show, confirm, cancel, resolve or watch")}
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, txUsage)
		return nil
	case "list":
		return txList(ctx, rest, stdout, stderr, getenv)
	case "show", "confirm", "cancel":
		return txOne(ctx, sub, rest, stdout, stderr, getenv)
	case "resolve":
		return txResolve(ctx, rest, stdout, stderr, getenv)
	case "watch":
		return txWatch(ctx, rest, stdout, stderr, getenv)
	}
	return &usageError{cmd: "tx", what: "commands", err: fmt.Errorf("unknown command %q", sub)}
}

// adminCmd is what the admin commands share: the flags that reach the
// coordinator, the output, and the client.
type adminCmd struct {
	fs      *flag.FlagSet
	name    string // "tx list"
	server  string
	token   string
	json    bool
	timeout time.Duration
	stdout  io.Writer
	stderr  io.Writer
	// answer keeps the coordinator's last answer for --json.
	answer *lastAnswer
	c      *client.Client
}

// newAdminCmd makes the FlagSet of an admin command with the common flags;
// timeout is false for watch, which runs until interrupted.
func newAdminCmd(name, synopsis, about string, stdout, stderr io.Writer, getenv func(string) string, timeout bool) *adminCmd {
	a := &adminCmd{name: name, stdout: stdout, stderr: stderr}
	a.fs = flag.NewFlagSet("tccd "+name, flag.ContinueOnError)
	a.fs.SetOutput(stderr)
	a.fs.Usage = commandUsage(a.fs, "tccd "+synopsis, about)
	server := getenv("TCCD_SERVER")
	if server == "" {
		server = defaultServer
	}
	a.fs.StringVar(&a.server, "server", server, "URL of the coordinator (env TCCD_SERVER)")
	a.fs.StringVar(&a.token, "token", getenv("TCCD_TOKEN"), "bearer token, when the coordinator has authentication on (env TCCD_TOKEN)")
	a.fs.BoolVar(&a.json, "json", false, "print the coordinator's JSON as it is, for scripts")
	if timeout {
		a.fs.DurationVar(&a.timeout, "timeout", defaultTimeout, "give up after this long")
	}
	return a
}

// parse parses the command line and makes the client; it returns the
// arguments, of which there must be nargs.
func (a *adminCmd) parse(args []string, nargs int, argName string) ([]string, error) {
	pos, err := parseInterspersed(a.fs, args, a.stdout)
	if err != nil {
		return nil, err
	}
	switch {
	case len(pos) < nargs:
		return nil, usagef(a.name, "the %s is missing", argName)
	case len(pos) > nargs:
		return nil, usagef(a.name, "unexpected arguments %q", pos[nargs:])
	}
	if a.timeout < 0 {
		return nil, usagef(a.name, "--timeout must not be negative")
	}
	a.answer = &lastAnswer{base: http.DefaultTransport}
	opts := []client.Option{client.WithHTTPClient(&http.Client{Transport: a.answer})}
	if a.token != "" {
		opts = append(opts, client.WithHeader("Authorization", "Bearer "+a.token))
	}
	if a.c, err = client.New(a.server, opts...); err != nil {
		return nil, usagef(a.name, "--server: %s", strings.TrimPrefix(err.Error(), "tccd: "))
	}
	return pos, nil
}

// context bounds the command with --timeout.
func (a *adminCmd) context(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, a.timeout)
}

// fail turns an error of the client into the one line main prints: the
// coordinator's message, without the SDK's "tccd: " (main adds its own).
func (a *adminCmd) fail(err error) error {
	var ue *url.Error
	var ce *client.Error
	switch {
	case errors.As(err, &ce), errors.Is(err, client.ErrInProgress):
		// The coordinator's own words (with the transaction's state
		// when a confirm was still going on).
	case errors.Is(err, context.DeadlineExceeded):
		return &cliError{msg: fmt.Sprintf("no answer from the coordinator at %s within %v (--timeout)", a.server, a.timeout), err: err}
	case errors.As(err, &ue) && !errors.Is(err, context.Canceled):
		return &cliError{msg: fmt.Sprintf("cannot reach the coordinator at %s: %v", a.server, ue.Err), err: err}
	}
	return &cliError{msg: strings.TrimPrefix(err.Error(), "tccd: "), err: err}
}

// printRaw prints the coordinator's last answer as it came, ending with a
// newline.
func (a *adminCmd) printRaw() {
	b := bytes.TrimRight(a.answer.body(), "\n")
	a.stdout.Write(append(b, '\n'))
}

// cliError is an error with the message main prints; it wraps the error
// of the client, for errors.Is and errors.As.
type cliError struct {
	msg string
	err error
}

func (e *cliError) Error() string { return e.msg }
func (e *cliError) Unwrap() error { return e.err }

// lastAnswer is the transport of the admin commands' client: it keeps the
// body of the coordinator's last answer, so that --json prints what the
// coordinator sent rather than the SDK's types encoded again (fields this
// build does not know are kept, and nothing is reformatted).
type lastAnswer struct {
	base http.RoundTripper
	mu   sync.Mutex
	last []byte
}

// maxAnswer bounds what is kept of an answer (a page of 1,000
// transactions fits).
const maxAnswer = 64 << 20

func (l *lastAnswer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.base.RoundTrip(req)
	if err != nil || strings.HasPrefix(resp.Header.Get("Content-Type"), api.MediaEventStream) {
		return resp, err // a stream is read as it comes, never kept
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.last = b
	l.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

func (l *lastAnswer) body() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// txList is `tccd tx list`.
func txList(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	a := newAdminCmd("tx list", "tx list [--state S] [--limit N] [--cursor C] [flags]",
		"Lists the coordinator's transactions, newest first. It needs an admin token\nwhen the coordinator has authentication on.", stdout, stderr, getenv, true)
	var f client.ListFilter
	a.fs.StringVar(&f.State, "state", "", "only transactions in this state: active, confirming, confirmed, cancelling, cancelled or heuristic")
	a.fs.IntVar(&f.Limit, "limit", 0, "how many to list, 1 to 1000 (default 50)")
	a.fs.StringVar(&f.Cursor, "cursor", "", "continue a listing where the previous one stopped")
	if _, err := a.parse(args, 0, ""); err != nil {
		return err
	}
	ctx, cancel := a.context(ctx)
	defer cancel()
	page, err := a.c.List(ctx, f)
	if err != nil {
		return a.fail(err)
	}
	if a.json {
		a.printRaw()
		return nil
	}
	newTxFormat().list(stdout, page.Transactions)
	if page.NextCursor != "" {
		// On stderr: the table on stdout stays a table.
		fmt.Fprintf(stderr, "more: tccd tx list --cursor %s\n", page.NextCursor)
	}
	return nil
}

// txOne is `tccd tx show|confirm|cancel ID`.
func txOne(ctx context.Context, sub string, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	about := map[string]string{
		"show": "Shows a transaction and its participants.",
		"confirm": "Confirms a transaction and waits for the outcome (up to --timeout; the coordinator\n" +
			"finishes a confirm it has begun in any case).",
		"cancel": "Cancels a transaction and waits for its participants (up to --timeout).",
	}[sub]
	a := newAdminCmd("tx "+sub, "tx "+sub+" ID [flags]", about, stdout, stderr, getenv, true)
	pos, err := a.parse(args, 1, "transaction ID")
	if err != nil {
		return err
	}
	ctx, cancel := a.context(ctx)
	defer cancel()
	var tx *api.Transaction
	switch sub {
	case "show":
		tx, err = a.c.Get(ctx, pos[0])
	case "confirm":
		tx, err = a.c.Tx(pos[0]).Confirm(ctx)
	case "cancel":
		tx, err = a.c.Tx(pos[0]).Cancel(ctx)
	}
	if err != nil {
		return a.fail(err)
	}
	return a.printTx(tx)
}

func (a *adminCmd) printTx(tx *api.Transaction) error {
	if a.json {
		a.printRaw()
		return nil
	}
	newTxFormat().show(a.stdout, tx)
	return nil
}

// txResolve is `tccd tx resolve`.
func txResolve(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	a := newAdminCmd("tx resolve", "tx resolve ID --state confirmed|cancelled [--note TEXT] [flags]",
		"Records how an operator settled a heuristic transaction by hand, after making its\n"+
			"participants agree: nothing is sent to them. It needs an admin token when the\n"+
			"coordinator has authentication on.", stdout, stderr, getenv, true)
	state := a.fs.String("state", "", "how the transaction ended: confirmed or cancelled (required)")
	note := a.fs.String("note", "", "what was done, recorded with the transaction")
	pos, err := a.parse(args, 1, "transaction ID")
	if err != nil {
		return err
	}
	if *state != "confirmed" && *state != "cancelled" {
		return usagef(a.name, "--state must be confirmed or cancelled")
	}
	ctx, cancel := a.context(ctx)
	defer cancel()
	tx, err := a.c.Resolve(ctx, pos[0], *state, *note)
	if err != nil {
		return a.fail(err)
	}
	return a.printTx(tx)
}

// runPurge is `tccd purge`.
func runPurge(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	a := newAdminCmd("purge", "purge [flags]",
		"Runs the coordinator's retention purge now: finished transactions older than its\n"+
			"retention are removed. It needs an admin token when the coordinator has\nauthentication on.", stdout, stderr, getenv, true)
	if _, err := a.parse(args, 0, ""); err != nil {
		return err
	}
	ctx, cancel := a.context(ctx)
	defer cancel()
	n, err := a.c.Purge(ctx)
	if err != nil {
		return a.fail(err)
	}
	if a.json {
		a.printRaw()
		return nil
	}
	fmt.Fprintf(stdout, "purged %d %s\n", n, plural(n, "transaction", "transactions"))
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
