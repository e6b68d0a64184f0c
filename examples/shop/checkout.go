// Package shop is the inventory-and-funds example (seed 001): an order
// holds stock in the warehouse and money in the customer's wallet — two
// quantity participants (package holds: try deducts and records a hold,
// confirm spends it, cancel or expiry gives it back), each with its own
// database — and the checkout confirms both with one call to the
// coordinator, in the style of the Atomikos protocol: it collects the
// participant links of its tries and hands them to client.Confirm. The
// coordinator hears of an order only then.
//
// With --nats, the stock service also publishes an order.placed message
// (OrderPlaced) to NATS JetStream when an order's stock reservation
// confirms, exactly once and never for an order that does not go through:
// the participant kit's outbox stores the message in the try's
// transaction, and its relay publishes it once the reservation confirms.
//
// Command shop (./cmd/shop) runs the stock service (`shop stock`), the
// wallet (`shop wallet`) and the checkout (`shop checkout`).
package shop

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/examples/holds"
	"github.com/tccd/tccd/examples/internal/outcome"
	"github.com/tccd/tccd/examples/internal/reserve"
)

// Prices are the catalogue's prices, in cents.
var Prices = map[string]int64{"apple": 40, "fig": 90, "pear": 55, "plum": 25}

// Order is one order and what happened to it.
type Order struct {
	N       int             `json:"n"`
	Account string          `json:"account"`
	Lines   []holds.Line    `json:"lines"`  // SKU and quantity, sorted by SKU
	Amount  int64           `json:"amount"` // cents
	Outcome outcome.Outcome `json:"outcome"`
	Reason  string          `json:"reason,omitempty"`
	// Stock and Payment are the reservations' participant links, once made.
	Stock   string `json:"stock,omitempty"`
	Payment string `json:"payment,omitempty"`

	links []client.Link
}

// String is the order on one line, for people.
func (o *Order) String() string {
	var items []string
	for _, l := range o.Lines {
		items = append(items, fmt.Sprintf("%d %s", l.Amount, l.Key))
	}
	s := fmt.Sprintf("#%d %-6s %-9s %s for %d.%02d", o.N, o.Account, o.Outcome, strings.Join(items, ", "), o.Amount/100, o.Amount%100)
	if o.Reason != "" {
		s += " (" + o.Reason + ")"
	}
	return s
}

// Checkout places orders: the initiator.
type Checkout struct {
	Coordinator *client.Client
	// HTTP makes the tries; default: a client with a 10s timeout.
	HTTP *http.Client
	// Stock and Wallet are the URLs of the two participants' collections,
	// e.g. http://127.0.0.1:9301/reservations and http://127.0.0.1:9302/payments.
	Stock, Wallet string
	// TTL is the lifetime asked of every reservation; zero leaves it to
	// the participants.
	TTL time.Duration
}

// Place reserves the order's stock and money and confirms both: Reserve,
// then Confirm.
func (c *Checkout) Place(ctx context.Context, n int, account string, lines []holds.Line) *Order {
	o := c.Reserve(ctx, n, account, lines)
	if o.Outcome == outcome.Held {
		c.Confirm(ctx, o)
	}
	return o
}

// Reserve holds the stock, then the money. If the money cannot be held
// (too little, the wallet down), the stock already held is cancelled with
// one call to the coordinator (client.Cancel).
func (c *Checkout) Reserve(ctx context.Context, n int, account string, lines []holds.Line) *Order {
	o := &Order{N: n, Account: account}
	lines, err := holds.Normalize(lines)
	if err != nil {
		o.Outcome, o.Reason = outcome.Refused, err.Error()
		return o
	}
	o.Lines = lines
	for _, l := range lines {
		price, ok := Prices[l.Key]
		if !ok {
			o.Outcome, o.Reason = outcome.Refused, "no such product: "+l.Key
			return o
		}
		o.Amount += price * l.Amount
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}

	stock, err := reserve.Post(ctx, hc, reserve.WithTTL(c.Stock, c.TTL), holds.Request{Lines: lines})
	if err != nil {
		o.Outcome, o.Reason = outcome.OfTry("stock", err)
		return o
	}
	o.Stock, o.links = stock.Link.URI, append(o.links, stock.Link)

	pay, err := reserve.Post(ctx, hc, reserve.WithTTL(c.Wallet, c.TTL), holds.Request{Lines: []holds.Line{{Key: account, Amount: o.Amount}}})
	if err != nil {
		o.Outcome, o.Reason = outcome.OfTry("wallet", err)
		if cerr := c.Coordinator.Cancel(ctx, o.links...); cerr != nil {
			o.Reason += "; the cancel failed, the stock held expires instead: " + cerr.Error()
		}
		return o
	}
	o.Payment, o.links = pay.Link.URI, append(o.links, pay.Link)
	o.Outcome = outcome.Held
	return o
}

// Confirm asks the coordinator to confirm a Held order's reservations in
// one call (client.Confirm) and records the outcome.
func (c *Checkout) Confirm(ctx context.Context, o *Order) {
	o.Outcome, o.Reason = outcome.OfConfirm(c.Coordinator.Confirm(ctx, o.links...))
}

// Abandon marks a Held order as walked away from: the holds expire.
func (c *Checkout) Abandon(o *Order) {
	o.Outcome, o.Reason = outcome.Abandoned, "walked away after the tries"
}

// RandomOrder makes up an order from rng: one of accounts, and one to three
// products of the catalogue, one to three of each.
func RandomOrder(rng *rand.Rand, accounts []string) (string, []holds.Line) {
	skus := make([]string, 0, len(Prices))
	for k := range Prices {
		skus = append(skus, k)
	}
	slices.Sort(skus)
	rng.Shuffle(len(skus), func(i, j int) { skus[i], skus[j] = skus[j], skus[i] })
	lines := make([]holds.Line, 1+rng.IntN(3))
	for i := range lines {
		lines[i] = holds.Line{Key: skus[i], Amount: 1 + rng.Int64N(3)}
	}
	return accounts[rng.IntN(len(accounts))], lines
}
