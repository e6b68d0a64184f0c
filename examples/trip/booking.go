package trip

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/examples/internal/outcome"
	"github.com/tccd/tccd/examples/internal/reserve"
)

// Style is how a booking uses the coordinator.
type Style string

const (
	// OneShot: try at each airline with a plain HTTP client, collect the
	// participant links, and confirm them in one call
	// (client.Confirm, the Atomikos protocol's PUT /coordinator/confirm).
	// The coordinator hears of the booking only when asked to confirm.
	OneShot Style = "one-shot"
	// Registered: begin a transaction (client.Begin), try through the
	// client's propagating transport — which sends the transaction along
	// and enlists the reservation found in each answer — then tx.Confirm.
	// The coordinator cancels the transaction if it is left active past
	// its timeout.
	Registered Style = "registered"
	// Barrier: as Registered, but the transaction is begun in barrier mode
	// (client.WithBarrier; the airlines run with the coordinator's URL):
	// each airline applies its confirm, reports it, and commits only once
	// both have reported confirmed. A confirm that fails at one airline
	// rolls back the other's too, and the booking ends Cancelled with
	// neither seat sold — where Registered would have retried it, or, had
	// it kept failing, ended heuristic with one seat sold.
	Barrier Style = "barrier"
)

// Outcome is how a booking ended.
type Outcome = outcome.Outcome

// Outcomes of a booking.
const (
	Confirmed = outcome.Confirmed // both seats sold
	Refused   = outcome.Refused   // an airline refused its try (the flight is full); what was held is released
	Failed    = outcome.Failed    // a try failed (an airline unreachable); what was held is released
	Cancelled = outcome.Cancelled // asked to confirm, the coordinator cancelled instead (a seat had expired)
	Heuristic = outcome.Heuristic // the airlines did not all end the same way
	Unknown   = outcome.Unknown   // the confirm's outcome is not known yet (the coordinator finishes it)
	Held      = outcome.Held      // tried at every airline, not decided yet (after Reserve)
	Abandoned = outcome.Abandoned // the booking process walked away after the tries: expiry releases the seats
)

// Leg is one seat to book: an airline and the URL of its flight,
// e.g. http://127.0.0.1:9101/flights/LX318.
type Leg struct {
	Airline string
	URL     string
}

// ParseLeg reads "airline=flight URL", e.g.
// "swiss=http://127.0.0.1:9101/flights/LX318".
func ParseLeg(s string) (Leg, error) {
	name, u, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return Leg{}, fmt.Errorf("leg %q: want airline=http://host:port/flights/FLIGHT", s)
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || !strings.Contains(pu.Path, "/flights/") {
		return Leg{}, fmt.Errorf("leg %q: want airline=http://host:port/flights/FLIGHT", s)
	}
	return Leg{Airline: name, URL: strings.TrimRight(u, "/")}, nil
}

// Flight returns the flight code at the end of the leg's URL.
func (l Leg) Flight() string { return path.Base(l.URL) }

// BookedSeat is a seat held (and perhaps sold) for a booking.
type BookedSeat struct {
	Airline string    `json:"airline"`
	Flight  string    `json:"flight"`
	Seat    string    `json:"seat"`
	URI     string    `json:"uri"` // the reservation's participant link
	Expires time.Time `json:"expires"`
}

// Reservation returns the reservation id, the last segment of the URI.
func (s BookedSeat) Reservation() string { return path.Base(s.URI) }

// Booking is one trip booking and what happened to it.
type Booking struct {
	N       int          `json:"n"`
	Style   Style        `json:"style"`
	Outcome Outcome      `json:"outcome"`
	Reason  string       `json:"reason,omitempty"`
	TxID    string       `json:"tx,omitempty"` // registered style
	Seats   []BookedSeat `json:"seats"`        // the seats held, in leg order

	tx *client.Tx
}

// String is the booking on one line, for people.
func (b *Booking) String() string {
	var seats []string
	for _, s := range b.Seats {
		seats = append(seats, fmt.Sprintf("%s %s %s", s.Airline, s.Flight, s.Seat))
	}
	out := fmt.Sprintf("#%d %-10s %-9s %s", b.N, b.Style, b.Outcome, strings.Join(seats, ", "))
	if b.Reason != "" {
		out += " (" + b.Reason + ")"
	}
	return out
}

func (b *Booking) links() []client.Link {
	links := make([]client.Link, len(b.Seats))
	for i, s := range b.Seats {
		links[i] = client.Link{URI: s.URI, Expires: s.Expires}
	}
	return links
}

// Booker is the booking process: the initiator of the transactions.
type Booker struct {
	Coordinator *client.Client
	// HTTP makes the tries (the registered style wraps it with the
	// coordinator client's transport). Default: a client with a 10s
	// timeout.
	HTTP *http.Client
	// TTL is the lifetime asked of every seat reservation; zero leaves it
	// to the airline.
	TTL time.Duration
	// Timeout is a registered transaction's timeout; zero leaves it to the
	// coordinator.
	Timeout time.Duration
}

var defaultHTTP = &http.Client{Timeout: 10 * time.Second}

func (b *Booker) httpClient() *http.Client {
	if b.HTTP != nil {
		return b.HTTP
	}
	return defaultHTTP
}

// Book books a seat on every leg and confirms them all, or releases what
// it held: Reserve, then Confirm.
func (b *Booker) Book(ctx context.Context, n int, style Style, legs ...Leg) *Booking {
	bk := b.Reserve(ctx, n, style, legs...)
	if bk.Outcome == Held {
		b.Confirm(ctx, bk)
	}
	return bk
}

// Reserve tries at every leg in order. If every try succeeds the booking
// is Held, waiting for Confirm (or abandoned). If one fails, what was
// held is cancelled through the coordinator and the booking ends Refused
// or Failed.
func (b *Booker) Reserve(ctx context.Context, n int, style Style, legs ...Leg) *Booking {
	bk := &Booking{N: n, Style: style, Outcome: Held}
	hc := b.httpClient()
	tctx := ctx
	if style == Registered || style == Barrier {
		var opts []client.BeginOption
		if style == Barrier {
			opts = append(opts, client.WithBarrier())
		}
		if b.Timeout > 0 {
			opts = append(opts, client.WithTimeout(b.Timeout))
		}
		tx, err := b.Coordinator.Begin(ctx, append(opts, client.WithName(fmt.Sprintf("trip-%d", n)))...)
		if err != nil {
			bk.Outcome, bk.Reason = Failed, "begin: "+err.Error()
			return bk
		}
		bk.tx, bk.TxID = tx, tx.ID()
		tctx = client.NewContext(ctx, tx)
		hc = b.Coordinator.WrapHTTPClient(hc)
	}
	for _, leg := range legs {
		ans, err := reserve.Post(tctx, hc, reserve.WithTTL(leg.URL+"/bookings", b.TTL), nil)
		if err != nil {
			bk.Outcome, bk.Reason = outcome.OfTry(leg.Airline, err)
			if rerr := b.release(ctx, bk); rerr != nil {
				bk.Reason += "; release failed, the seats held expire instead: " + rerr.Error()
			}
			return bk
		}
		var hold Hold
		_ = json.Unmarshal(ans.Data, &hold)
		bk.Seats = append(bk.Seats, BookedSeat{Airline: leg.Airline, Flight: leg.Flight(), Seat: hold.Seat,
			URI: ans.Link.URI, Expires: ans.Link.Expires})
	}
	return bk
}

// release cancels what a failed booking holds.
func (b *Booker) release(ctx context.Context, bk *Booking) error {
	if bk.tx != nil {
		_, err := bk.tx.Cancel(ctx)
		return err
	}
	if len(bk.Seats) == 0 {
		return nil
	}
	return b.Coordinator.Cancel(ctx, bk.links()...)
}

// Confirm asks the coordinator to confirm a Held booking and records the
// outcome.
func (b *Booker) Confirm(ctx context.Context, bk *Booking) {
	var err error
	if bk.tx != nil {
		_, err = bk.tx.Confirm(ctx)
	} else {
		err = b.Coordinator.Confirm(ctx, bk.links()...)
	}
	bk.Outcome, bk.Reason = outcome.OfConfirm(err)
	if bk.Style == Barrier && bk.Outcome == Cancelled {
		bk.Reason = "an airline's confirm failed (or a seat expired): the barrier rolled back every airline's confirm"
	}
}

// Abandon marks a Held booking as walked away from: nobody confirms or
// cancels it, and each airline's expiry sweeper releases its seat.
func (b *Booker) Abandon(bk *Booking) {
	bk.Outcome, bk.Reason = Abandoned, "walked away after the tries"
}
