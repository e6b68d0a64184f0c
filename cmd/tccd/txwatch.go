package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
)

// listFlag is a flag that may be repeated and takes comma-separated
// values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// Pauses before watch opens the stream again after it ended.
const (
	watchRetryMin = 500 * time.Millisecond
	watchRetryMax = 10 * time.Second
)

// txWatch is `tccd tx watch`: it follows the coordinator's event stream
// and prints a line per event until interrupted. When the stream ends —
// the watch fell behind, the coordinator restarted — it opens it again
// after the last event it printed, so that nothing is missed that the
// coordinator still keeps (a gap line says when events are lost).
func txWatch(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	a := newAdminCmd("tx watch", "tx watch [--transaction ID] [--type state|attempt] [--state S] [flags]",
		"Prints the coordinator's events as they happen, one a line (with --json: the\n"+
			"data of each event as it is, one a line), until interrupted. With\n"+
			"authentication on, a client token sees its own transactions, an admin all.", stdout, stderr, getenv, false)
	var f client.EventFilter
	var types, states listFlag
	a.fs.StringVar(&f.Transaction, "transaction", "", "only this transaction's events")
	a.fs.Var(&types, "type", "only events of this type, state or attempt (repeatable)")
	a.fs.Var(&states, "state", "only state events into this state (repeatable)")
	a.fs.Uint64Var(&f.After, "since", 0, "first the events after this seq that the coordinator still keeps")
	if _, err := a.parse(args, 0, ""); err != nil {
		return err
	}
	for _, t := range types {
		if t != api.EventState && t != api.EventAttempt {
			return usagef(a.name, "--type must be state or attempt, not %q", t)
		}
	}
	f.Types, f.States = types, states
	stream, err := a.c.Events(ctx, f)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return a.fail(err)
	}
	format := newTxFormat()
	pause := watchRetryMin
	for {
		err := a.follow(stream, format)
		stream.Close()
		if ctx.Err() != nil {
			return nil // interrupted: the normal end
		}
		f.After = stream.LastSeq()
		fmt.Fprintf(stderr, "tccd: the event stream ended (%v); opening it again\n", err)
		for {
			if sleepCtx(ctx, pause) != nil {
				return nil
			}
			stream, err = a.c.Events(ctx, f)
			if err == nil {
				pause = watchRetryMin
				break
			}
			var ce *client.Error
			if errors.As(err, &ce) && ce.Status < 500 && ce.Status != 429 {
				return a.fail(err) // refused: trying again will not help
			}
			pause = min(2*pause, watchRetryMax)
		}
	}
}

// follow prints the events of stream until it ends.
func (a *adminCmd) follow(stream *client.EventStream, format txFormat) error {
	for {
		ev, err := stream.Next()
		switch {
		case errors.Is(err, client.ErrBadEvent):
			fmt.Fprintf(a.stderr, "tccd: %v\n", err)
			continue
		case errors.Is(err, io.EOF):
			return errors.New("closed by the coordinator")
		case err != nil:
			return err
		}
		format.now = time.Now()
		if a.json {
			a.stdout.Write(append(stream.Data(), '\n'))
		} else {
			format.event(a.stdout, ev)
		}
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
