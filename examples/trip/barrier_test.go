package trip_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tccd/tccd/examples/internal/e2e"
	"github.com/tccd/tccd/examples/trip"
	"github.com/tccd/tccd/participant"
)

// TestTripBarrier runs the barrier style across real processes — tccd,
// two airlines that know the coordinator, the booking process: bookings
// confirm with both seats sold; and when easyjet's confirm fails, swiss's
// confirm, applied and reported, is rolled back with it: the booking ends
// cancelled and neither seat is sold (the registered style would have
// retried easyjet's confirm with swiss's seat sold already).
func TestTripBarrier(t *testing.T) {
	for _, backend := range e2e.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := e2e.New(t, backend)
			co := env.StartTccd(bins["tccd"])
			start := func(name, flight string, seats int) *airline {
				dsn := env.DSN(name)
				svc := env.Start(name, bins["trip"], "airline", "--name", name, "--db", dsn, "--coordinator", co.URL(),
					"--flight", fmt.Sprintf("%s=%d", flight, seats), "--sweep-every", "100ms", "--test-faults")
				db, d := env.Open(dsn)
				return &airline{Service: svc, name: name, flight: flight, db: db, d: d}
			}
			swiss := start("swiss", swissFlight, 10)
			easyjet := start("easyjet", easyjetFlight, 10)
			// One booking at a time: on SQLite a barrier confirm holds the
			// airline's database until the round's outcome.
			book := func(args ...string) []*trip.Booking {
				t.Helper()
				all := append([]string{"book", "--json", "--coordinator", co.URL(), "--leg", swiss.leg(), "--leg", easyjet.leg(), "--style", "barrier"}, args...)
				return e2e.Lines[*trip.Booking](t, e2e.Run(t, bins["trip"], all...))
			}
			var confirmed []*trip.Booking
			for _, b := range book("--count", "3") {
				if b.Outcome != trip.Confirmed || b.Style != trip.Barrier || len(b.Seats) != 2 {
					t.Fatalf("barrier booking: %+v", b)
				}
				confirmed = append(confirmed, b)
			}
			checkSeats(t, "barrier bookings", swiss, confirmed)
			checkSeats(t, "barrier bookings", easyjet, confirmed)

			easyjet.Arm("confirm", 1)
			failed := book()
			if len(failed) != 1 || failed[0].Outcome != trip.Cancelled || len(failed[0].Seats) != 2 {
				t.Fatalf("booking whose easyjet confirm fails: %+v", failed)
			}
			if got := easyjet.Faults().Fired["confirm"]; got != 1 {
				t.Fatalf("easyjet's confirm failed %d times, want 1: the test did not test a failing confirm", got)
			}
			// Neither seat sold: both released (cancelled), the sold seats
			// are exactly those of the confirmed bookings.
			for _, a := range []*airline{swiss, easyjet} {
				e2e.Eventually(t, 10*time.Second, func() error { return settled(t, a, failed, participant.Cancelled) })
				checkSeats(t, "failed confirm", a, confirmed)
			}
			tx := e2e.Transactions(t, co.URL(), "cancelled")
			if len(tx) != 1 || tx[0].ID != failed[0].TxID || !tx[0].Barrier {
				t.Fatalf("the coordinator's cancelled transactions: %+v; want the barrier booking %s", tx, failed[0].TxID)
			}
		})
	}
}
