package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the airlines' databases

	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/examples/trip"
	"github.com/tccd/tccd/participant"
)

// The demo's world: two flights, the second smaller, so that it fills up.
const (
	demoSwissFlight, demoSwissSeats     = "LX318", 30
	demoEasyjetFlight, demoEasyjetSeats = "U2-5201", 24
	// demoAbandonTTL is the lifetime of the abandoned bookings' seats.
	demoAbandonTTL = time.Second
	// demoDownAttempts is how many confirm attempts easyjet misses while
	// it is down.
	demoDownAttempts = 3
	// demoWait bounds every wait for a condition: well beyond what each
	// takes, so that only a real failure reaches it.
	demoWait = 15 * time.Second
)

// runDemo is `tccd demo`: the trip-booking example (examples/trip) run in
// this process — the coordinator on an embedded store in a temporary
// directory, two airline participant services on SQLite, and the booking
// process — through a few dozen bookings, failures included. It prints
// what happened to each booking and the final seat counts, checks that
// they add up, cleans up, and returns an error if an invariant failed.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tccd demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: tccd demo [-v]\n\nRuns the trip-booking example on loopback: a coordinator, two airlines, a few dozen bookings\nwith failures, then checks the seat counts. Needs nothing but this binary; leaves nothing behind.")
		fs.PrintDefaults()
	}
	verbose := fs.Bool("v", false, "show the coordinator's and the airlines' logs on stderr")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	logs := io.Discard
	if *verbose {
		logs = stderr
	}
	dir, err := os.MkdirTemp("", "tccd-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d := &demo{out: stdout, logs: logs, dir: dir, rows: map[int]demoRow{}, next: 1}
	defer d.close()
	if err := d.start(ctx); err != nil {
		return err
	}
	return d.run(ctx)
}

// demo is one run of the demo.
type demo struct {
	out  io.Writer
	logs io.Writer
	dir  string

	co       *Main
	client   *client.Client
	swiss    *demoAirline
	easyjet  *demoAirline
	booker   *trip.Booker
	bookings []*trip.Booking

	// rows waiting to be printed in booking order.
	mu   sync.Mutex
	rows map[int]demoRow
	next int
}

type demoRow struct {
	bk   *trip.Booking
	what string // the outcome as shown
	note string
}

func (d *demo) start(ctx context.Context) error {
	m := NewMain(d.logs, d.logs, func(string) string { return "" })
	m.Config.Listen = "127.0.0.1:0"
	m.Config.Data = filepath.Join(d.dir, "coordinator")
	m.Config.Coordinator.RetryMin = 20 * time.Millisecond
	m.Config.Coordinator.RetryMax = 250 * time.Millisecond
	if err := m.Config.Validate(); err != nil {
		return err
	}
	d.co = m
	if err := m.Run(ctx); err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	c, err := client.New("http://" + m.Addr())
	if err != nil {
		return err
	}
	d.client = c
	log := slog.New(slog.NewTextHandler(d.logs, nil))
	d.swiss = &demoAirline{name: "swiss", flight: demoSwissFlight, seats: demoSwissSeats, dir: d.dir, log: log}
	d.easyjet = &demoAirline{name: "easyjet", flight: demoEasyjetFlight, seats: demoEasyjetSeats, dir: d.dir, log: log}
	for _, a := range []*demoAirline{d.swiss, d.easyjet} {
		if err := a.start(ctx); err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
	}
	d.booker = &trip.Booker{Coordinator: c, HTTP: &http.Client{Timeout: 5 * time.Second}, TTL: time.Minute, Timeout: time.Minute}

	fmt.Fprintf(d.out, `tccd demo — trip booking: each booking takes a seat on swiss %s and one on easyjet %s,
confirmed together or not at all.

  coordinator  http://%-21s embedded store in %s
  swiss        %-28s flight %s, %d seats, SQLite
  easyjet      %-28s flight %s, %d seats, SQLite

Odd bookings are one-shot (try at both airlines, then PUT /coordinator/confirm with both
links); even ones are registered (begin a transaction, try through the client's
propagating transport, which enlists each seat, then confirm the transaction).

`, demoSwissFlight, demoEasyjetFlight, m.Addr(), m.Config.Data,
		"http://"+d.swiss.addr, demoSwissFlight, demoSwissSeats, "http://"+d.easyjet.addr, demoEasyjetFlight, demoEasyjetSeats)
	fmt.Fprintf(d.out, "  %3s  %-10s  %-5s  %-7s  %-9s  %s\n", "#", "style", "swiss", "easyjet", "outcome", "what happened")
	return nil
}

func (d *demo) close() {
	for _, a := range []*demoAirline{d.swiss, d.easyjet} {
		if a != nil {
			a.stop()
		}
	}
	if d.co != nil {
		d.co.Close()
	}
}

func styleOf(n int) trip.Style {
	if n%2 == 0 {
		return trip.Registered
	}
	return trip.OneShot
}

func (d *demo) legs() []trip.Leg { return []trip.Leg{d.swiss.leg(), d.easyjet.leg()} }

// run is the scenario.
func (d *demo) run(ctx context.Context) error {
	began := time.Now()
	n := 0
	book := func() error {
		n++
		bk := d.booker.Book(ctx, n, styleOf(n), d.legs()...)
		return d.settle(ctx, bk, "")
	}

	// Bookings that simply work.
	for range 15 {
		if err := book(); err != nil {
			return err
		}
	}

	// easyjet crashes after a booking's tries (a registered one, so that
	// the coordinator can be asked about it): the coordinator keeps
	// retrying the confirm. Meanwhile another booking fails its try at
	// easyjet and releases its swiss seat. easyjet comes back; the first
	// booking ends confirmed.
	n++
	crashed := d.booker.Reserve(ctx, n, styleOf(n), d.legs()...)
	if crashed.Outcome != trip.Held {
		return fmt.Errorf("booking %d: %s (%s)", n, crashed.Outcome, crashed.Reason)
	}
	d.easyjet.crash()
	confirmed := make(chan struct{})
	go func() {
		defer close(confirmed)
		d.booker.Confirm(ctx, crashed)
	}()
	if err := book(); err != nil {
		return err
	}
	// easyjet stays down until the coordinator has tried it a few times.
	if err := d.waitFor(ctx, func() (bool, error) {
		return d.attempts(ctx, crashed, "easyjet") >= demoDownAttempts, nil
	}); err != nil {
		return fmt.Errorf("the coordinator did not retry easyjet: %w", err)
	}
	if err := d.easyjet.start(ctx); err != nil {
		return fmt.Errorf("easyjet restart: %w", err)
	}
	select {
	case <-confirmed:
	case <-ctx.Done():
		return ctx.Err()
	}
	note := fmt.Sprintf("easyjet crashed before the confirm; the coordinator kept trying it, and confirmed it at attempt %d, once easyjet was back", d.attempts(ctx, crashed, "easyjet"))
	if err := d.settle(ctx, crashed, note); err != nil {
		return err
	}

	// Two bookings walk away after their tries: nobody confirms or
	// cancels, and the airlines' expiry sweepers release the seats.
	walker := *d.booker
	walker.TTL = demoAbandonTTL
	var walked []*trip.Booking
	for range 2 {
		n++
		bk := walker.Reserve(ctx, n, styleOf(n), d.legs()...)
		if bk.Outcome != trip.Held {
			return fmt.Errorf("booking %d: %s (%s)", n, bk.Outcome, bk.Reason)
		}
		walker.Abandon(bk)
		walked = append(walked, bk)
	}
	for _, bk := range walked {
		if err := d.settle(ctx, bk, ""); err != nil {
			return err
		}
	}

	// More bookings, until easyjet's flight is full.
	for range 11 {
		if err := book(); err != nil {
			return err
		}
	}
	return d.report(ctx, time.Since(began))
}

// settle waits until the booking's seats are where its outcome says they
// must be — sold when confirmed, released otherwise — and prints its row.
func (d *demo) settle(ctx context.Context, bk *trip.Booking, note string) error {
	d.bookings = append(d.bookings, bk)
	what := string(bk.Outcome)
	want := participant.Confirmed
	switch bk.Outcome {
	case trip.Confirmed:
	case trip.Refused, trip.Failed:
		want = participant.Cancelled
	case trip.Abandoned:
		want = participant.Expired
	default:
		return fmt.Errorf("booking %d: %s (%s)", bk.N, bk.Outcome, bk.Reason)
	}
	err := d.waitFor(ctx, func() (bool, error) {
		for _, s := range bk.Seats {
			st, err := d.airline(s.Airline).state(ctx, s.Reservation())
			if err != nil || st != want {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("booking %d (%s): its seats did not end %s: %w", bk.N, bk.Outcome, want, err)
	}
	if note == "" {
		switch bk.Outcome {
		case trip.Refused, trip.Failed:
			reason := bk.Reason
			if strings.Contains(reason, "unreachable") {
				reason = strings.Replace(reason, "unreachable", "was down during the try", 1)
			}
			note = reason
			for _, s := range bk.Seats {
				note += fmt.Sprintf("; %s seat %s released at once", s.Airline, s.Seat)
			}
		case trip.Abandoned:
			what = "expired"
			reserved := bk.Seats[0].Expires.Add(-demoAbandonTTL)
			note = fmt.Sprintf("walked away after the tries; the airlines' sweepers released both seats %.1fs later (%v TTL)",
				time.Since(reserved).Seconds(), demoAbandonTTL)
		}
	}
	d.print(demoRow{bk: bk, what: what, note: note})
	return nil
}

// print prints the rows in booking order as they become known.
func (d *demo) print(r demoRow) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rows[r.bk.N] = r
	for {
		r, ok := d.rows[d.next]
		if !ok {
			return
		}
		delete(d.rows, d.next)
		d.next++
		seat := func(airline string) string {
			for _, s := range r.bk.Seats {
				if s.Airline == airline {
					return s.Seat
				}
			}
			return "-"
		}
		line := fmt.Sprintf("  %3d  %-10s  %-5s  %-7s  %-9s  %s", r.bk.N, r.bk.Style, seat("swiss"), seat("easyjet"), r.what, r.note)
		fmt.Fprintln(d.out, strings.TrimRight(line, " "))
	}
}

func (d *demo) airline(name string) *demoAirline {
	if name == d.swiss.name {
		return d.swiss
	}
	return d.easyjet
}

// attempts is how often the coordinator has called the airline's
// participant of a registered booking.
func (d *demo) attempts(ctx context.Context, bk *trip.Booking, airline string) int {
	tx, err := d.client.Get(ctx, bk.TxID)
	if err != nil {
		return 0
	}
	for _, s := range bk.Seats {
		if s.Airline != airline {
			continue
		}
		for _, p := range tx.Participants {
			if p.URI == s.URI {
				return p.Attempts
			}
		}
	}
	return 0
}

// waitFor polls cond until it holds, ctx ends or demoWait passes.
func (d *demo) waitFor(ctx context.Context, cond func() (bool, error)) error {
	deadline := time.Now().Add(demoWait)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("timed out")
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// report prints the seat counts and checks the invariants: the sold seats
// are exactly those of the confirmed bookings, each under that booking's
// reservation (so no seat is sold twice); nothing is left reserved; every
// seat is counted.
func (d *demo) report(ctx context.Context, took time.Duration) error {
	confirmed := 0
	for _, bk := range d.bookings {
		if bk.Outcome == trip.Confirmed {
			confirmed++
		}
	}
	fmt.Fprintf(d.out, "\nFinal seat counts (%d bookings, %d confirmed):\n\n", len(d.bookings), confirmed)
	fmt.Fprintf(d.out, "  %-8s  %-7s  %5s  %4s  %8s  %9s\n", "airline", "flight", "seats", "sold", "reserved", "available")
	var problems []string
	for _, a := range []*demoAirline{d.swiss, d.easyjet} {
		f, err := a.a.Flight(ctx, a.flight)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.out, "  %-8s  %-7s  %5d  %4d  %8d  %9d\n", a.name, a.flight, f.Total, f.Sold, f.Reserved, f.Available)
		problems = append(problems, checkAirline(a.name, f, d.bookings)...)
	}
	fmt.Fprintln(d.out)
	checks := []string{
		"every confirmed booking has a sold seat at both airlines, held by its own reservation",
		"no seat is sold twice, and none is sold without a confirmed booking",
		"nothing is left reserved: failed, refused and abandoned bookings released their seats",
		"at each airline, sold + available = seats",
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(d.out, "  ✗ %s\n", p)
		}
		return fmt.Errorf("demo: %d invariants failed", len(problems))
	}
	for _, c := range checks {
		fmt.Fprintf(d.out, "  ✓ %s\n", c)
	}
	fmt.Fprintf(d.out, "\nAll invariants hold (%.1fs). Next: docs/EXAMPLES.md runs each piece as a process of its own, and docs/API.md walks through the API with curl.\n", took.Seconds())
	return nil
}

// checkAirline returns the invariants f breaks.
func checkAirline(name string, f trip.Flight, bookings []*trip.Booking) []string {
	var problems []string
	soldTo := map[string]string{} // seat → reservation, from the confirmed bookings
	for _, bk := range bookings {
		if bk.Outcome != trip.Confirmed {
			continue
		}
		held := false
		for _, s := range bk.Seats {
			if s.Airline != name {
				continue
			}
			held = true
			if prev, ok := soldTo[s.Seat]; ok {
				problems = append(problems, fmt.Sprintf("%s seat %s was sold to two bookings (%s, %s)", name, s.Seat, prev, s.Reservation()))
			}
			soldTo[s.Seat] = s.Reservation()
		}
		if !held {
			problems = append(problems, fmt.Sprintf("confirmed booking %d has no %s seat", bk.N, name))
		}
	}
	for _, s := range f.Seats {
		switch {
		case s.State == trip.Sold && soldTo[s.Seat] != s.Reservation:
			problems = append(problems, fmt.Sprintf("%s seat %s is sold to %q, not to a confirmed booking's reservation (%q)", name, s.Seat, s.Reservation, soldTo[s.Seat]))
		case s.State != trip.Sold && soldTo[s.Seat] != "":
			problems = append(problems, fmt.Sprintf("%s seat %s of a confirmed booking is %s", name, s.Seat, s.State))
		case s.State == trip.Reserved:
			problems = append(problems, fmt.Sprintf("%s seat %s is still reserved", name, s.Seat))
		}
	}
	if f.Sold+f.Available != f.Total {
		problems = append(problems, fmt.Sprintf("%s: %d sold + %d available != %d seats", name, f.Sold, f.Available, f.Total))
	}
	return problems
}

// demoAirline is an airline participant service run in this process, on
// a SQLite file that outlives its crashes.
type demoAirline struct {
	name, flight string
	seats        int
	dir          string
	log          *slog.Logger

	addr  string // fixed after the first start
	db    *sql.DB
	a     trip.Airline
	p     *participant.Participant
	srv   *http.Server
	sweep context.CancelFunc
	swept chan struct{}
}

func (a *demoAirline) leg() trip.Leg {
	return trip.Leg{Airline: a.name, URL: "http://" + a.addr + "/flights/" + a.flight}
}

// start opens the database (creating the flight the first time) and
// serves, on the address of the previous start if there was one.
func (a *demoAirline) start(ctx context.Context) error {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(a.dir, a.name+".db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return err
	}
	a.db = db
	a.a = trip.Airline{Name: a.name, DB: db, Dialect: participant.SQLite}
	if err := a.a.Migrate(ctx); err != nil {
		return err
	}
	if err := a.a.AddFlight(ctx, a.flight, a.seats); err != nil {
		return err
	}
	addr := a.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	a.addr = ln.Addr().String()
	cfg := a.a.Config()
	cfg.BaseURL = "http://" + a.addr
	cfg.SweepEvery = 50 * time.Millisecond
	cfg.Retention = 7 * 24 * time.Hour
	cfg.Logger = a.log.With("airline", a.name)
	if a.p, err = participant.New(ctx, cfg); err != nil {
		ln.Close()
		return err
	}
	mux := http.NewServeMux()
	a.p.Register(mux)
	mux.HandleFunc("GET /flights/{flight}", a.a.ServeFlight)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go a.srv.Serve(ln)
	sweepCtx, cancel := context.WithCancel(context.Background())
	a.sweep, a.swept = cancel, make(chan struct{})
	go func() {
		defer close(a.swept)
		a.p.Run(sweepCtx)
	}()
	return nil
}

// crash stops the service the hard way: the listener and every connection
// are dropped mid-request; only what SQLite committed remains.
func (a *demoAirline) crash() {
	a.srv.Close()
	a.sweep()
	<-a.swept
	a.db.Close()
	a.srv = nil
}

// stop stops the service if it runs.
func (a *demoAirline) stop() {
	if a.srv != nil {
		a.crash()
	}
}

// state is the kit's state of reservation id.
func (a *demoAirline) state(ctx context.Context, id string) (participant.State, error) {
	rec, ok, err := a.p.Lookup(ctx, id)
	if err != nil || !ok {
		return "", err
	}
	return rec.State, nil
}
