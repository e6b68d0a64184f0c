package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// How every command treats its command line, so that they all behave
// alike: -h and --help print the usage on stdout and exit 0; a command
// line that cannot run prints one line saying what is wrong and a hint
// where to read the flags, and exits 2.

// usageError is a command line a command cannot run. main prints it —
// the message and the hint — and exits 2 (it matches errUsage).
type usageError struct {
	cmd  string // "serve", "tx list"; "" for tccd itself
	what string // what -h lists: "flags" (the default) or "commands"
	err  error
}

func (e *usageError) Error() string {
	// Commands wrap errUsage as "usage: …": the hint says it already.
	msg := strings.TrimPrefix(e.err.Error(), errUsage.Error()+": ")
	what := e.what
	if what == "" {
		what = "flags"
	}
	if e.cmd == "" {
		return fmt.Sprintf("%s\nrun 'tccd -h' for the %s", msg, what)
	}
	return fmt.Sprintf("%s: %s\nrun 'tccd %s -h' for the %s", e.cmd, msg, e.cmd, what)
}

func (e *usageError) Unwrap() []error { return []error{errUsage, e.err} }

// usagef returns a usage error of command cmd.
func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// errUsageShown ends a command line whose usage was printed instead of
// running anything (tccd alone): exit 2, and nothing more to print
// (main prints no flag.ErrHelp).
var errUsageShown = fmt.Errorf("%w%w", errUsage, flag.ErrHelp)

// commandResult is what run returns for command cmd's error: nil once
// help was printed; usage errors carry the hint.
func commandResult(cmd string, err error) error {
	var ue *usageError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errUsageShown):
		return err
	case errors.Is(err, flag.ErrHelp):
		return nil
	case errors.As(err, &ue):
		return err
	case errors.Is(err, errUsage):
		return &usageError{cmd: cmd, err: err}
	}
	return err
}

// parseFlags parses a command's flags quietly: the flag package's own
// message and flag list are not printed. -h prints fs's usage on stdout
// and returns flag.ErrHelp; a bad flag is a *usageError.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(fs, stdout)
		return flag.ErrHelp
	case err != nil:
		return &usageError{cmd: strings.TrimPrefix(fs.Name(), "tccd "), err: err}
	}
	return nil
}

// parseInterspersed is parseFlags for a command with arguments, which may
// come before, between or after the flags (tccd tx show ID --json); after
// "--" everything is an argument.
func parseInterspersed(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args, stdout); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// printUsage prints fs's usage on w.
func printUsage(fs *flag.FlagSet, w io.Writer) {
	out := fs.Output()
	fs.SetOutput(w)
	defer fs.SetOutput(out)
	fs.Usage()
}

// commandUsage returns a FlagSet's Usage: a synopsis, what the command
// does, and its flags.
func commandUsage(fs *flag.FlagSet, synopsis, about string) func() {
	return func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\n%s\n", synopsis, about)
		if hasFlags(fs) {
			fmt.Fprintln(fs.Output(), "\nFlags:")
			fs.PrintDefaults()
		}
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// checkServeFlags parses serve's flags alone before Main.ParseFlags reads
// the configuration, so that serve's command line is treated like every
// other command's.
func checkServeFlags(args []string, stdout io.Writer) error {
	m := NewMain(io.Discard, io.Discard, func(string) string { return "" })
	scratch := DefaultConfig()
	fs := m.flagSet(&scratch)
	fs.Usage = commandUsage(fs, "tccd serve [flags]",
		"Runs the coordinator. Every flag is also a key of the --config file and an\nenvironment variable (TCCD_ and the flag's name in capitals, - as _).")
	return parseFlags(fs, args, stdout)
}

// runVersion is `tccd version` and `tccd --version`.
func runVersion(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tccd version", flag.ContinueOnError)
	fs.Usage = commandUsage(fs, "tccd version", "Prints the version, the commit it was built from and the Go version.")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("version", "unexpected arguments %q", fs.Args())
	}
	bi, ok := debug.ReadBuildInfo()
	fmt.Fprint(stdout, versionText(Version, bi, ok))
	return nil
}

// versionText is what tccd version prints: the version (Version, or the
// module's version when installed with go install), the VCS commit the
// binary was built from ("unknown" when the build did not record one),
// and the Go version.
func versionText(version string, bi *debug.BuildInfo, ok bool) string {
	commit, modified, goVersion := "unknown", false, runtime.Version()
	if ok && bi != nil {
		if version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
	}
	if modified {
		commit += " (with uncommitted changes)"
	}
	return fmt.Sprintf("tccd %s\ncommit %s\n%s\n", version, commit, goVersion)
}
