package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tccd/tccd/api"
)

// txFormat prints transactions and events for people: aligned columns,
// times shortened against now, in loc.
type txFormat struct {
	now time.Time
	loc *time.Location
}

func newTxFormat() txFormat { return txFormat{now: time.Now(), loc: time.Local} }

// when shortens t: the time of day when it is today, the day and the
// minute when it is this year, the date otherwise; "-" for none.
func (f txFormat) when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	t, now := t.In(f.loc), f.now.In(f.loc)
	switch {
	case t.YearDay() == now.YearDay() && t.Year() == now.Year():
		return t.Format("15:04:05")
	case t.Year() == now.Year():
		return t.Format("Jan 02 15:04")
	}
	return t.Format("2006-01-02")
}

func (f txFormat) whenPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return f.when(*t)
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// list prints transactions as a table, one a line.
func (f txFormat) list(w io.Writer, txs []api.Transaction) {
	if len(txs) == 0 {
		fmt.Fprintln(w, "no transactions")
		return
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tSTATE\tREASON\tPARTICIPANTS\tCREATED\tUPDATED\tNAME")
	for _, tx := range txs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", tx.ID, tx.State, dash(tx.Reason), participantCounts(tx.Participants),
			f.when(tx.CreatedAt), f.when(tx.UpdatedAt), dash(tx.Name))
	}
	tw.Flush()
}

// participantCounts sums participants up by state: "2 confirmed", "1
// confirmed, 1 failed"; "-" for none.
func participantCounts(ps []api.Participant) string {
	if len(ps) == 0 {
		return "-"
	}
	counts := map[string]int{}
	var order []string
	for _, p := range ps {
		if counts[p.State] == 0 {
			order = append(order, p.State)
		}
		counts[p.State]++
	}
	parts := make([]string, len(order))
	for i, s := range order {
		parts[i] = fmt.Sprintf("%d %s", counts[s], s)
	}
	return strings.Join(parts, ", ")
}

// show prints one transaction: its fields, then its participants.
func (f txFormat) show(w io.Writer, tx *api.Transaction) {
	tw := newTable(w)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("Transaction", tx.ID)
	state := tx.State
	if tx.Reason != "" {
		state += " (" + tx.Reason + ")"
	}
	row("State", state)
	row("Name", tx.Name)
	if len(tx.Labels) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(tx.Labels)) {
			kv = append(kv, k+"="+tx.Labels[k])
		}
		row("Labels", strings.Join(kv, ", "))
	}
	row("Protocol", tx.Protocol)
	created := f.when(tx.CreatedAt)
	if tx.CreatedBy != "" {
		created += " by " + tx.CreatedBy
	}
	row("Created", created)
	if tx.Timeout != "" || tx.Deadline != nil {
		row("Timeout", strings.TrimSpace(tx.Timeout+" (deadline "+f.whenPtr(tx.Deadline)+")"))
	}
	if tx.DecidedAt != nil {
		row("Decided", f.when(*tx.DecidedAt))
	}
	if tx.FinishedAt != nil {
		row("Finished", f.when(*tx.FinishedAt))
	}
	if tx.ResolvedBy != "" || tx.ResolutionNote != "" {
		row("Resolved", strings.TrimSpace("by "+dash(tx.ResolvedBy)+": "+tx.ResolutionNote))
	}
	if tx.Notify != "" {
		n := tx.Notify
		if tx.Notification != nil {
			n += fmt.Sprintf(" (%s, %d %s)", tx.Notification.State, tx.Notification.Attempts, plural(tx.Notification.Attempts, "attempt", "attempts"))
		}
		row("Notify", n)
	}
	if tx.Round != nil {
		r := fmt.Sprintf("barrier round %d", tx.Round.N)
		if tx.Round.Committed {
			r += ", committed"
		}
		row("Round", r)
	}
	tw.Flush()
	if len(tx.Participants) == 0 {
		fmt.Fprintln(w, "\nno participants")
		return
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "PARTICIPANT\tSTATE\tATTEMPTS\tLAST\tEXPIRES\tERROR")
	for _, p := range tx.Participants {
		last := "-"
		if p.LastStatus != 0 {
			last = fmt.Sprint(p.LastStatus)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", p.URI, p.State, p.Attempts, last, f.when(p.Expires), dash(oneLine(p.LastError)))
	}
	tw.Flush()
}

// event prints one event of the stream on a line of its own.
func (f txFormat) event(w io.Writer, ev api.Event) {
	at := ev.Time.In(f.loc).Format("15:04:05.000")
	switch ev.Type {
	case api.EventState:
		change := ev.State
		if ev.Previous != nil && *ev.Previous != "" {
			change = *ev.Previous + " → " + ev.State
		}
		if ev.Reason != "" {
			change += " (" + ev.Reason + ")"
		}
		fmt.Fprintf(w, "%s  %-26s  state    %s\n", at, ev.Transaction, change)
	case api.EventAttempt:
		outcome := "no answer"
		if ev.Status != nil && *ev.Status != 0 {
			outcome = fmt.Sprint(*ev.Status)
		}
		if ev.Error != nil && *ev.Error != "" {
			outcome += ": " + oneLine(*ev.Error)
		}
		if ev.NextRetry != nil {
			outcome += ", again at " + ev.NextRetry.In(f.loc).Format("15:04:05.000")
		}
		fmt.Fprintf(w, "%s  %-26s  attempt  %s #%d %s → %s\n", at, ev.Transaction, ev.Phase, ev.Attempt, ev.Participant, outcome)
	case api.EventLagged:
		fmt.Fprintf(w, "%s  %-26s  lagged   this watch fell behind and missed events; it resumes\n", at, "-")
	case api.EventGap:
		fmt.Fprintf(w, "%s  %-26s  gap      events were missed: the coordinator no longer keeps them\n", at, "-")
	default:
		fmt.Fprintf(w, "%s  %-26s  %s\n", at, dash(ev.Transaction), ev.Type)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a participant's error text on its line of the table.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
