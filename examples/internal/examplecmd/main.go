package examplecmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// ErrUsage marks a command line that makes no sense; the process exits 2.
var ErrUsage = errors.New("usage")

// Command is one subcommand of an example's binary.
type Command struct {
	Name, Summary string
	Run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// Main runs the subcommand named by os.Args[1] until it returns or the
// process gets SIGINT or SIGTERM, and exits: 0 on success, 2 for a bad
// command line, 1 otherwise. doc heads the usage text.
func Main(doc string, cmds ...Command) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr, doc, cmds...)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case errors.Is(err, ErrUsage):
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// Dispatch runs the subcommand args[0] with the rest of args.
func Dispatch(ctx context.Context, args []string, stdout, stderr io.Writer, doc string, cmds ...Command) error {
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "%s\nCommands (each takes -h):\n", doc)
		for _, c := range cmds {
			fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
		}
	}
	if len(args) == 0 {
		usage(stderr)
		return fmt.Errorf("%w: no command given", ErrUsage)
	}
	for _, c := range cmds {
		if c.Name == args[0] {
			return c.Run(ctx, args[1:], stdout, stderr)
		}
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return nil
	}
	usage(stderr)
	return fmt.Errorf("%w: unknown command %q", ErrUsage, args[0])
}
