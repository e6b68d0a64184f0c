package theatre

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/examples/internal/outcome"
	"github.com/tccd/tccd/examples/internal/reserve"
)

// Booking is one booking at the box office and what happened to it.
type Booking struct {
	N       int             `json:"n"`
	Seats   []string        `json:"seats"`
	Account string          `json:"account"`
	Amount  int64           `json:"amount,omitempty"` // cents
	Outcome outcome.Outcome `json:"outcome"`
	Reason  string          `json:"reason,omitempty"`
	TxID    string          `json:"tx,omitempty"`
	// SeatsLink and PaymentLink are the participant links of the seats'
	// reservation and of the payment authorisation.
	SeatsLink   string `json:"seats_link,omitempty"`
	PaymentLink string `json:"payment_link,omitempty"`
	// Enlisted is how many participants the coordinator confirmed: 2, the
	// seats and the payment, whose link came back through the seat service.
	Enlisted int `json:"enlisted,omitempty"`

	tx *client.Tx
}

// String is the booking on one line, for people.
func (b *Booking) String() string {
	s := fmt.Sprintf("#%d %-6s %-9s %s", b.N, b.Account, b.Outcome, strings.Join(b.Seats, " "))
	if b.Amount > 0 {
		s += fmt.Sprintf(" for %d.%02d", b.Amount/100, b.Amount%100)
	}
	if b.Reason != "" {
		s += " (" + b.Reason + ")"
	}
	return s
}

// BoxOffice books seats: the initiator. Every booking is a registered
// transaction.
type BoxOffice struct {
	Coordinator *client.Client
	// HTTP makes the tries, wrapped with the coordinator client's
	// transport; default: a client with a 10s timeout.
	HTTP *http.Client
	// TTL is the lifetime asked of the reservations; zero leaves it to the
	// seat service.
	TTL time.Duration
	// Timeout is the transaction's timeout; zero leaves it to the
	// coordinator.
	Timeout time.Duration
}

// Book reserves and confirms: Reserve, then Confirm.
func (b *BoxOffice) Book(ctx context.Context, n int, show string, seats []string, account string) *Booking {
	bk := b.Reserve(ctx, n, show, seats, account)
	if bk.Outcome == outcome.Held {
		b.Confirm(ctx, bk)
	}
	return bk
}

// Reserve begins a transaction and tries at show (the performance's URL,
// e.g. http://127.0.0.1:9201/performances/hamlet) with the transaction in
// the request's context: the propagating transport sends it along and
// enlists every reservation the answer reports — the seats' and the
// payment's. If the try fails, the transaction is cancelled.
func (b *BoxOffice) Reserve(ctx context.Context, n int, show string, seats []string, account string) *Booking {
	bk := &Booking{N: n, Seats: seats, Account: account}
	opts := []client.BeginOption{client.WithName(fmt.Sprintf("%s-%d", showName(show), n))}
	if b.Timeout > 0 {
		opts = append(opts, client.WithTimeout(b.Timeout))
	}
	tx, err := b.Coordinator.Begin(ctx, opts...)
	if err != nil {
		bk.Outcome, bk.Reason = outcome.Failed, "begin: "+err.Error()
		return bk
	}
	bk.tx, bk.TxID = tx, tx.ID()
	hc := b.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	ans, err := reserve.Post(client.NewContext(ctx, tx), b.Coordinator.WrapHTTPClient(hc),
		reserve.WithTTL(show+"/bookings", b.TTL), Request{Seats: seats, Account: account})
	if err != nil {
		bk.Outcome, bk.Reason = outcome.OfTry("seats", err)
		// Whatever was enlisted (a payment authorisation reported by a
		// failed try) is released.
		if _, cerr := tx.Cancel(ctx); cerr != nil {
			bk.Reason += "; the cancel failed, what is held expires instead: " + cerr.Error()
		}
		return bk
	}
	var t Tickets
	_ = json.Unmarshal(ans.Data, &t)
	bk.Amount, bk.SeatsLink, bk.PaymentLink = t.Amount, ans.Link.URI, t.Payment
	bk.Outcome = outcome.Held
	return bk
}

// Confirm confirms a Held booking's transaction and records the outcome.
func (b *BoxOffice) Confirm(ctx context.Context, bk *Booking) {
	out, err := bk.tx.Confirm(ctx)
	bk.Outcome, bk.Reason = outcome.OfConfirm(err)
	if out != nil {
		bk.Enlisted = len(out.Participants)
	}
}

// Abandon marks a Held booking as walked away from: nobody confirms or
// cancels, and the seats and the payment authorisation expire.
func (b *BoxOffice) Abandon(bk *Booking) {
	bk.Outcome, bk.Reason = outcome.Abandoned, "walked away after the try"
}

func showName(url string) string { return url[strings.LastIndexByte(url, '/')+1:] }

// PickSeats chooses k of the available seats at random, sorted.
func PickSeats(rng *rand.Rand, seats []Seat, k int) []string {
	var free []string
	for _, s := range seats {
		if s.State == Available {
			free = append(free, s.Seat)
		}
	}
	rng.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	free = free[:min(k, len(free))]
	slices.Sort(free)
	return free
}
