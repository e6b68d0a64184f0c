package trip_test

import (
	"database/sql"
	"fmt"
	"github.com/tccd/tccd/internal/testproc"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/examples/internal/e2e"
	"github.com/tccd/tccd/examples/trip"
	"github.com/tccd/tccd/participant"
)

var bins = map[string]string{}

func TestMain(m *testing.M) {
	testproc.Main(m, bins, "github.com/tccd/tccd/cmd/tccd", "github.com/tccd/tccd/examples/trip/cmd/trip")
}

const (
	swissFlight, swissSeats     = "LX318", 60
	easyjetFlight, easyjetSeats = "U2-5201", 40
)

// airline is an airline process and its database, for the checks.
type airline struct {
	*e2e.Service
	name, flight string
	db           *sql.DB
	d            participant.Dialect
}

func (a *airline) leg() string { return a.name + "=" + a.URL() + "/flights/" + a.flight }

// TestTripBooking runs the trip-booking example across real processes —
// tccd, two airline services, the booking process — and checks after
// every phase that seats and bookings agree: no seat sold twice, sold
// seats are exactly those of confirmed bookings, nothing stays reserved.
func TestTripBooking(t *testing.T) {
	for _, backend := range e2e.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			testTripBooking(t, e2e.New(t, backend))
		})
	}
}

func testTripBooking(t *testing.T, env *e2e.Env) {
	co := env.StartTccd(bins["tccd"])
	start := func(name, flight string, seats int) *airline {
		dsn := env.DSN(name)
		svc := env.Start(name, bins["trip"], "airline", "--name", name, "--db", dsn,
			"--flight", fmt.Sprintf("%s=%d", flight, seats), "--sweep-every", "100ms", "--test-faults")
		db, d := env.Open(dsn)
		return &airline{Service: svc, name: name, flight: flight, db: db, d: d}
	}
	swiss := start("swiss", swissFlight, swissSeats)
	easyjet := start("easyjet", easyjetFlight, easyjetSeats)
	book := func(args ...string) []*trip.Booking {
		t.Helper()
		all := append([]string{"book", "--json", "--coordinator", co.URL(), "--leg", swiss.leg(), "--leg", easyjet.leg()}, args...)
		return e2e.Lines[*trip.Booking](t, e2e.Run(t, bins["trip"], all...))
	}
	var confirmed []*trip.Booking
	expect := func(phase string, got []*trip.Booking, want map[trip.Outcome]int) {
		t.Helper()
		counts := map[trip.Outcome]int{}
		for _, b := range got {
			counts[b.Outcome]++
			if b.Outcome == trip.Confirmed {
				confirmed = append(confirmed, b)
			}
		}
		if fmt.Sprint(counts) != fmt.Sprint(want) {
			t.Fatalf("%s: outcomes %v, want %v: %v", phase, counts, want, got)
		}
		checkSeats(t, phase, swiss, confirmed)
		checkSeats(t, phase, easyjet, confirmed)
	}

	// Many bookings at once, in both styles.
	expect("bookings", book("--count", "30", "--concurrency", "6", "--style", "mixed"), map[trip.Outcome]int{trip.Confirmed: 30})

	// easyjet is down during the tries: the bookings fail, and the swiss
	// seat each had taken is released at once by a cancel (not left to
	// expire: the reservations asked for a minute).
	easyjet.Kill()
	failed := book("--count", "2", "--style", "mixed")
	for _, b := range failed {
		if b.Outcome != trip.Failed || !strings.Contains(b.Reason, "easyjet unreachable") || len(b.Seats) != 1 {
			t.Fatalf("booking with easyjet down: %+v", b)
		}
	}
	e2e.Eventually(t, 10*time.Second, func() error {
		return settled(t, swiss, failed, participant.Cancelled)
	})
	easyjet.Restart()
	expect("easyjet down during try", failed, map[trip.Outcome]int{trip.Failed: 2})

	// easyjet fails its confirm once: the coordinator retries, the booking
	// ends confirmed, and the failure did happen.
	for i, style := range []string{"one-shot", "registered"} {
		easyjet.Arm("confirm", 1)
		expect("confirm fails once ("+style+")", book("--style", style), map[trip.Outcome]int{trip.Confirmed: 1})
		if got := easyjet.Faults().Fired["confirm"]; got != i+1 {
			t.Fatalf("easyjet's confirm failed %d times in all, want %d: the test did not test a retry", got, i+1)
		}
	}

	// The booking process walks away after its tries: nobody confirms or
	// cancels, and the airlines' sweepers release the seats at expiry.
	abandoned := book("--count", "2", "--style", "mixed", "--ttl", "1s", "--vanish-after-try")
	for _, b := range abandoned {
		if b.Outcome != trip.Abandoned || len(b.Seats) != 2 {
			t.Fatalf("abandoned booking: %+v", b)
		}
	}
	for _, a := range []*airline{swiss, easyjet} {
		e2e.Eventually(t, 20*time.Second, func() error { return settled(t, a, abandoned, participant.Expired) })
	}
	expect("initiator vanished", nil, nil)

	// Fill easyjet: as many bookings confirmed as it had seats left, the
	// others refused, with their swiss seats released.
	left := easyjetSeats - len(confirmed)
	expect("full flight", book("--count", "12", "--concurrency", "4", "--style", "mixed"),
		map[trip.Outcome]int{trip.Confirmed: left, trip.Refused: 12 - left})
	if len(confirmed) != easyjetSeats {
		t.Fatalf("%d confirmed bookings, want %d (easyjet's seats)", len(confirmed), easyjetSeats)
	}

	// The coordinator agrees: one confirmed transaction per confirmed booking.
	if got := len(e2e.Transactions(t, co.URL(), "confirmed")); got != len(confirmed) {
		t.Errorf("the coordinator has %d confirmed transactions, the booking process %d confirmed bookings", got, len(confirmed))
	}
	for _, st := range []string{"confirming", "cancelling", "heuristic"} {
		if got := e2e.Transactions(t, co.URL(), st); len(got) != 0 {
			t.Errorf("%d transactions still %s: %+v", len(got), st, got)
		}
	}
}

// checkSeats checks an airline's seats against the confirmed bookings:
// the sold seats are exactly theirs, each held by that booking's
// reservation (so no seat is sold twice), and no seat is left reserved.
func checkSeats(t *testing.T, phase string, a *airline, confirmed []*trip.Booking) {
	t.Helper()
	want := map[string]string{} // seat → reservation id
	for _, b := range confirmed {
		for _, s := range b.Seats {
			if s.Airline != a.name {
				continue
			}
			if prev, dup := want[s.Seat]; dup {
				t.Fatalf("%s: %s seat %s sold to two bookings (%s and %s)", phase, a.name, s.Seat, prev, s.Reservation())
			}
			want[s.Seat] = s.Reservation()
		}
	}
	rows, err := a.db.Query(a.d.Rebind(`SELECT seat, state, reservation FROM seats WHERE flight = ?`), a.flight)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	sold := 0
	for rows.Next() {
		var seat, state string
		var res sql.NullString
		if err := rows.Scan(&seat, &state, &res); err != nil {
			t.Fatal(err)
		}
		switch {
		case state == trip.Sold:
			sold++
			if want[seat] != res.String {
				t.Errorf("%s: %s seat %s is sold to reservation %q; the confirmed bookings say %q", phase, a.name, seat, res.String, want[seat])
			}
		case state == trip.Available && !res.Valid:
			if _, ok := want[seat]; ok {
				t.Errorf("%s: %s seat %s of a confirmed booking is available", phase, a.name, seat)
			}
		default:
			t.Errorf("%s: %s seat %s is %s (reservation %q) with no booking in flight", phase, a.name, seat, state, res.String)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if sold != len(want) {
		t.Errorf("%s: %s sold %d seats for %d confirmed bookings", phase, a.name, sold, len(want))
	}
	confirmedRows := 0
	for _, st := range e2e.Reservations(t, a.db) {
		switch st {
		case participant.Confirmed:
			confirmedRows++
		case participant.Tried:
			t.Errorf("%s: %s has a reservation still tried", phase, a.name)
		}
	}
	if confirmedRows != len(want) {
		t.Errorf("%s: %s has %d confirmed reservations for %d confirmed bookings", phase, a.name, confirmedRows, len(want))
	}
}

// settled reports (as an error) whether the seats the bookings held at a
// are not yet back to available with their reservations in state want.
func settled(t *testing.T, a *airline, bookings []*trip.Booking, want participant.State) error {
	rs := e2e.Reservations(t, a.db)
	for _, b := range bookings {
		for _, s := range b.Seats {
			if s.Airline != a.name {
				continue
			}
			if rs[s.Reservation()] != want {
				return fmt.Errorf("%s reservation of seat %s is %q, want %s", a.name, s.Seat, rs[s.Reservation()], want)
			}
			var state string
			if err := a.db.QueryRow(a.d.Rebind(`SELECT state FROM seats WHERE id = ?`), a.flight+"/"+s.Seat).Scan(&state); err != nil {
				t.Fatal(err)
			}
			if state != trip.Available {
				return fmt.Errorf("%s seat %s is %s", a.name, s.Seat, state)
			}
		}
	}
	return nil
}
