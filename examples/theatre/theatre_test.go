package theatre_test

import (
	"database/sql"
	"fmt"
	"github.com/tccd/tccd/internal/testproc"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/examples/internal/e2e"
	"github.com/tccd/tccd/examples/internal/outcome"
	"github.com/tccd/tccd/examples/theatre"
	"github.com/tccd/tccd/participant"
)

var bins = map[string]string{}

func TestMain(m *testing.M) {
	testproc.Main(m, bins, "github.com/tccd/tccd/cmd/tccd", "github.com/tccd/tccd/examples/theatre/cmd/theatre")
}

// TestTheatre runs the seat-reservation example across real processes —
// tccd, the seat service, the payment service, the box office — and
// checks after every phase that seats, money and bookings agree: the sold
// seats are exactly those of confirmed bookings (so none is sold twice),
// each confirmed booking was paid exactly its seats' price, money is
// conserved, and nothing stays reserved or held.
func TestTheatre(t *testing.T) {
	for _, backend := range e2e.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			testTheatre(t, e2e.New(t, backend))
		})
	}
}

func testTheatre(t *testing.T, env *e2e.Env) {
	co := env.StartTccd(bins["tccd"])
	seatsDSN, payDSN := env.DSN("seats"), env.DSN("payment")
	common := []string{"--sweep-every", "100ms", "--test-faults"}
	payment := env.Start("payment", bins["theatre"], append([]string{"payment", "--db", payDSN,
		"--fund", "alice=1000000", "--fund", "bob=1000000", "--fund", "dave=100"}, common...)...)
	seats := env.Start("seats", bins["theatre"], append([]string{"seats", "--db", seatsDSN,
		"--coordinator", co.URL(), "--payment", payment.URL() + "/payments", "--show", "hamlet=8x10"}, common...)...)
	seatsDB, seatsD := env.Open(seatsDSN)
	payDB, payD := env.Open(payDSN)
	show := seats.URL() + "/performances/hamlet"
	book := func(args ...string) []*theatre.Booking {
		t.Helper()
		all := append([]string{"book", "--json", "--coordinator", co.URL(), "--show", show}, args...)
		return e2e.Lines[*theatre.Booking](t, e2e.Run(t, bins["theatre"], all...))
	}
	var confirmed []*theatre.Booking
	check := func(phase string, bookings []*theatre.Booking) {
		t.Helper()
		for _, b := range bookings {
			if b.Outcome == outcome.Confirmed {
				confirmed = append(confirmed, b)
				if b.Enlisted != 2 {
					t.Errorf("%s: booking %d confirmed %d participants, want 2 (the seats and the payment)", phase, b.N, b.Enlisted)
				}
			}
		}
		soldPrice := checkSeats(t, phase, seatsDB, seatsD, confirmed)
		cents := map[string]int64{}
		var paid int64
		for _, b := range confirmed {
			cents[b.Account] += b.Amount
			paid += b.Amount
		}
		if paid != soldPrice {
			t.Errorf("%s: confirmed bookings paid %d for seats priced %d", phase, paid, soldPrice)
		}
		cents["dave"] += 0 // every funded account is checked
		e2e.CheckLedger(t, phase, "payment", payDB, payD, cents, len(confirmed))
	}

	// Many bookings at once, racing for seats: the losers are refused.
	bookings := book("--count", "30", "--concurrency", "6", "--accounts", "alice,bob")
	count := map[outcome.Outcome]int{}
	for _, b := range bookings {
		count[b.Outcome]++
		if b.Outcome != outcome.Confirmed && (b.Outcome != outcome.Refused || !strings.Contains(b.Reason, "is not available")) {
			t.Errorf("booking %v", b)
		}
	}
	t.Logf("bookings: %v", count)
	check("bookings", bookings)
	if len(confirmed) == 0 {
		t.Fatal("no booking confirmed")
	}

	// dave cannot pay: the payment is refused inside the seat service's
	// try, which rolls back: no seat is held.
	poor := book("--accounts", "dave")
	if len(poor) != 1 || poor[0].Outcome != outcome.Refused || !strings.Contains(poor[0].Reason, "payment refused") {
		t.Fatalf("booking without funds: %+v", poor)
	}
	check("payment refused", poor)

	// The payment service is down during the try: the booking fails and
	// nothing is held.
	payment.Kill()
	down := book("--accounts", "alice")
	if len(down) != 1 || down[0].Outcome != outcome.Failed || !strings.Contains(down[0].Reason, "payment service unavailable") {
		t.Fatalf("booking with the payment service down: %+v", down)
	}
	payment.Restart()
	check("payment down during try", down)

	// The payment service fails its confirm once: the coordinator —
	// which learnt of the payment only through the seat service's answer —
	// retries it.
	payment.Arm("confirm", 1)
	retried := book("--accounts", "bob")
	if len(retried) != 1 || retried[0].Outcome != outcome.Confirmed {
		t.Fatalf("booking with a failing confirm: %+v", retried)
	}
	if got := payment.Faults().Fired["confirm"]; got != 1 {
		t.Fatalf("the payment's confirm failed %d times, want 1: the test did not test a retry", got)
	}
	var tx api.Transaction
	e2e.GetJSON(t, co.URL()+"/api/v1/transactions/"+retried[0].TxID, &tx)
	for _, p := range tx.Participants {
		if p.URI == retried[0].PaymentLink && p.Attempts < 2 {
			t.Errorf("the coordinator confirmed the payment in %d attempts, want 2 or more", p.Attempts)
		}
	}
	check("payment fails confirm once", retried)

	// The box office walks away after its try: the seat service's and the
	// payment service's sweepers release the seats and the money.
	abandoned := book("--count", "2", "--accounts", "alice", "--ttl", "1s", "--vanish-after-try")
	for _, b := range abandoned {
		if b.Outcome != outcome.Abandoned || b.SeatsLink == "" || b.PaymentLink == "" {
			t.Fatalf("abandoned booking: %+v", b)
		}
	}
	e2e.Eventually(t, 20*time.Second, func() error {
		for _, b := range abandoned {
			if st := e2e.StateOf(t, seatsDB, b.SeatsLink); st != participant.Expired {
				return fmt.Errorf("seats of booking %d are %q", b.N, st)
			}
			if st := e2e.StateOf(t, payDB, b.PaymentLink); st != participant.Expired {
				return fmt.Errorf("payment of booking %d is %q", b.N, st)
			}
		}
		return nil
	})
	check("box office vanished", nil)

	if got := len(e2e.Transactions(t, co.URL(), "confirmed")); got != len(confirmed) {
		t.Errorf("the coordinator has %d confirmed transactions for %d confirmed bookings", got, len(confirmed))
	}
}

// checkSeats checks the seats against the confirmed bookings — the sold
// seats are exactly theirs, held by their reservations; no seat is
// reserved — and returns the price of the sold seats.
func checkSeats(t *testing.T, phase string, db *sql.DB, d participant.Dialect, confirmed []*theatre.Booking) int64 {
	t.Helper()
	want := map[string]string{} // seat → reservation id
	for _, b := range confirmed {
		for _, s := range b.Seats {
			if prev, dup := want[s]; dup {
				t.Fatalf("%s: seat %s sold to two bookings (%s and %s)", phase, s, prev, path.Base(b.SeatsLink))
			}
			want[s] = path.Base(b.SeatsLink)
		}
	}
	rows, err := db.Query(d.Rebind(`SELECT seat, price, state, reservation FROM seats WHERE show_ = ?`), "hamlet")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var sold int
	var price int64
	for rows.Next() {
		var seat, state string
		var p int64
		var res sql.NullString
		if err := rows.Scan(&seat, &p, &state, &res); err != nil {
			t.Fatal(err)
		}
		switch {
		case state == theatre.Sold:
			sold++
			price += p
			if want[seat] != res.String {
				t.Errorf("%s: seat %s is sold to reservation %q; the confirmed bookings say %q", phase, seat, res.String, want[seat])
			}
		case state == theatre.Available && !res.Valid:
			if _, ok := want[seat]; ok {
				t.Errorf("%s: seat %s of a confirmed booking is available", phase, seat)
			}
		default:
			t.Errorf("%s: seat %s is %s (reservation %q) with no booking in flight", phase, seat, state, res.String)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if sold != len(want) {
		t.Errorf("%s: %d seats sold for %d seats of confirmed bookings", phase, sold, len(want))
	}
	return price
}
