package shop_test

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"testing"
	"time"

	"github.com/tccd/tccd/examples/internal/e2e"
	"github.com/tccd/tccd/examples/internal/outcome"
	"github.com/tccd/tccd/examples/shop"
	"github.com/tccd/tccd/internal/natstest"
	"github.com/tccd/tccd/participant"
)

// TestShopMessages runs the stock service with --nats against the real
// NATS server and a stream made for the test (the test is the operator),
// and checks that a shipping department reading the stream with a durable
// consumer gets one order.placed per confirmed order, with its lines, and
// none for an order refused by the wallet (its stock cancelled) or
// abandoned after its tries (its stock expired).
func TestShopMessages(t *testing.T) {
	url := natstest.URL(t)
	for _, backend := range e2e.Backends {
		t.Run(backend, func(t *testing.T) {
			testShopMessages(t, e2e.New(t, backend), url)
		})
	}
}

func testShopMessages(t *testing.T, env *e2e.Env, url string) {
	st := natstest.NewStream(t, url, 0)
	subject := st.Subject("order.placed")
	co := env.StartTccd(bins["tccd"])
	stockDSN, walletDSN := env.DSN("stock"), env.DSN("wallet")
	stock := env.Start("stock", bins["shop"], "stock", "--db", stockDSN, "--fund", "apple=20", "--fund", "pear=20",
		"--sweep-every", "100ms", "--nats", url, "--order-subject", subject)
	wallet := env.Start("wallet", bins["shop"], "wallet", "--db", walletDSN, "--fund", "alice=100000", "--fund", "carol=50",
		"--sweep-every", "100ms")
	stockDB, stockD := env.Open(stockDSN)
	checkout := func(args ...string) []*shop.Order {
		t.Helper()
		all := append([]string{"checkout", "--json", "--coordinator", co.URL(),
			"--stock", stock.URL() + "/reservations", "--wallet", wallet.URL() + "/payments"}, args...)
		return e2e.Lines[*shop.Order](t, e2e.Run(t, bins["shop"], all...))
	}

	placed := checkout("--count", "6", "--concurrency", "3", "--accounts", "alice", "--basket", "apple=1,pear=2")
	// carol cannot pay 80 cents: the wallet refuses, the stock is cancelled.
	refused := checkout("--count", "2", "--accounts", "carol", "--basket", "apple=2")
	abandoned := checkout("--count", "2", "--accounts", "alice", "--basket", "pear=1", "--ttl", "1s", "--vanish-after-try")

	for _, o := range placed {
		if o.Outcome != outcome.Confirmed {
			t.Fatalf("order %v, want confirmed", o)
		}
	}
	var gone []*shop.Order
	for _, o := range append(refused, abandoned...) {
		if o.Stock == "" || o.Outcome == outcome.Confirmed {
			t.Fatalf("order %v: want one whose stock was held and that did not go through", o)
		}
		gone = append(gone, o)
	}
	e2e.Eventually(t, 30*time.Second, func() error {
		for _, o := range gone {
			if st := e2e.StateOf(t, stockDB, o.Stock); st != participant.Cancelled && st != participant.Expired {
				return fmt.Errorf("stock reservation of order %d is %q", o.N, st)
			}
		}
		return nil
	})
	// Nothing left to publish, and the stream holds what was published.
	e2e.Eventually(t, 30*time.Second, func() error {
		var pending int
		if err := stockDB.QueryRow("SELECT COUNT(*) FROM " + participant.DefaultTable + participant.OutboxSuffix +
			" WHERE state <> 'published'").Scan(&pending); err != nil {
			return err
		}
		if n := st.Stored(); pending != 0 || n != uint64(len(placed)) {
			return fmt.Errorf("%d messages not yet published, %d in the stream, want %d", pending, n, len(placed))
		}
		return nil
	})

	want := map[string]*shop.Order{}
	for _, o := range placed {
		want[path.Base(o.Stock)] = o
	}
	got := map[string]int{}
	for _, m := range st.ReadAll("shipping") {
		var op shop.OrderPlaced
		if err := json.Unmarshal([]byte(m.Data), &op); err != nil {
			t.Fatalf("message %s: %v: %s", m.ID, err, m.Data)
		}
		got[op.Reservation]++
		o := want[op.Reservation]
		switch {
		case o == nil:
			t.Errorf("order.placed for reservation %s, which is no confirmed order's", op.Reservation)
		case !slices.Equal(op.Lines, o.Lines):
			t.Errorf("order.placed of order %d has lines %v, want %v", o.N, op.Lines, o.Lines)
		case m.ID != op.Reservation+"/1" || m.Header.Get("Content-Type") != "application/json" || m.Subject != subject:
			t.Errorf("order.placed of order %d: id %q, subject %q, headers %v", o.N, m.ID, m.Subject, m.Header)
		}
	}
	for id, o := range want {
		if got[id] != 1 {
			t.Errorf("order %d: %d order.placed messages, want 1", o.N, got[id])
		}
	}
	for _, o := range gone {
		if got[path.Base(o.Stock)] != 0 {
			t.Errorf("order %d (%s) was published", o.N, o.Outcome)
		}
		var rows int
		if err := stockDB.QueryRow(stockD.Rebind("SELECT COUNT(*) FROM "+participant.DefaultTable+participant.OutboxSuffix+
			" WHERE reservation = ?"), path.Base(o.Stock)).Scan(&rows); err != nil || rows != 0 {
			t.Errorf("order %d (%s) keeps %d outbox rows (%v)", o.N, o.Outcome, rows, err)
		}
	}
}
