package shop_test

import (
	"fmt"
	"github.com/tccd/tccd/internal/testproc"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/examples/internal/e2e"
	"github.com/tccd/tccd/examples/internal/outcome"
	"github.com/tccd/tccd/examples/shop"
	"github.com/tccd/tccd/participant"
)

var bins = map[string]string{}

func TestMain(m *testing.M) {
	testproc.Main(m, bins, "github.com/tccd/tccd/cmd/tccd", "github.com/tccd/tccd/examples/shop/cmd/shop")
}

// TestShop runs the inventory-and-funds example across real processes —
// tccd, the stock service, the wallet, the checkout — and checks after
// every phase that stock and money are conserved (funded = available +
// held + spent for every SKU and account), nothing stays held, and what
// was spent is exactly what the confirmed orders bought and paid.
func TestShop(t *testing.T) {
	for _, backend := range e2e.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			testShop(t, e2e.New(t, backend))
		})
	}
}

func testShop(t *testing.T, env *e2e.Env) {
	co := env.StartTccd(bins["tccd"])
	stockDSN, walletDSN := env.DSN("stock"), env.DSN("wallet")
	common := []string{"--sweep-every", "100ms", "--test-faults"}
	stock := env.Start("stock", bins["shop"], append([]string{"stock", "--db", stockDSN,
		"--fund", "apple=60", "--fund", "pear=40", "--fund", "plum=60", "--fund", "fig=6"}, common...)...)
	wallet := env.Start("wallet", bins["shop"], append([]string{"wallet", "--db", walletDSN,
		"--fund", "alice=100000", "--fund", "bob=100000", "--fund", "carol=150"}, common...)...)
	stockDB, stockD := env.Open(stockDSN)
	walletDB, walletD := env.Open(walletDSN)
	checkout := func(args ...string) []*shop.Order {
		t.Helper()
		all := append([]string{"checkout", "--json", "--coordinator", co.URL(),
			"--stock", stock.URL() + "/reservations", "--wallet", wallet.URL() + "/payments"}, args...)
		return e2e.Lines[*shop.Order](t, e2e.Run(t, bins["shop"], all...))
	}
	var confirmed []*shop.Order
	check := func(phase string, orders []*shop.Order) {
		t.Helper()
		for _, o := range orders {
			if o.Outcome == outcome.Confirmed {
				confirmed = append(confirmed, o)
			}
		}
		units, cents := map[string]int64{}, map[string]int64{}
		for _, o := range confirmed {
			for _, l := range o.Lines {
				units[l.Key] += l.Amount
			}
			cents[o.Account] += o.Amount
		}
		e2e.CheckLedger(t, phase, "stock", stockDB, stockD, units, len(confirmed))
		e2e.CheckLedger(t, phase, "wallet", walletDB, walletD, cents, len(confirmed))
	}

	// Many orders at once. Some are refused: carol can hardly pay, and
	// figs run out. The stock of an order the wallet refuses was held
	// first: the checkout's one-shot cancel released it.
	orders := checkout("--count", "40", "--concurrency", "6", "--accounts", "alice,bob,carol")
	count := map[string]int{}
	for _, o := range orders {
		switch {
		case o.Outcome == outcome.Confirmed:
			count["confirmed"]++
		case o.Outcome == outcome.Refused && strings.HasPrefix(o.Reason, "stock: "):
			count["no stock"]++
		case o.Outcome == outcome.Refused && strings.HasPrefix(o.Reason, "wallet: "):
			count["no funds"]++
			if st := e2e.StateOf(t, stockDB, o.Stock); st != participant.Cancelled {
				t.Errorf("order %d refused by the wallet: its stock reservation is %q, want cancelled", o.N, st)
			}
		default:
			t.Errorf("order %v", o)
		}
	}
	if count["confirmed"] == 0 || count["no funds"] == 0 || count["no stock"] == 0 {
		t.Errorf("outcomes %v: want some of each (confirmed, no stock, no funds) for the test to mean something", count)
	}
	t.Logf("orders: %v", count)
	check("orders", orders)

	// The wallet is down during the tries: the orders fail, and the stock
	// they held is released at once by the checkout's cancel.
	wallet.Kill()
	failed := checkout("--count", "2", "--accounts", "alice", "--basket", "apple=1,pear=1")
	for _, o := range failed {
		if o.Outcome != outcome.Failed || !strings.Contains(o.Reason, "wallet unreachable") || o.Stock == "" {
			t.Fatalf("order with the wallet down: %+v", o)
		}
	}
	e2e.Eventually(t, 10*time.Second, func() error {
		for _, o := range failed {
			if st := e2e.StateOf(t, stockDB, o.Stock); st != participant.Cancelled {
				return fmt.Errorf("stock reservation of order %d is %q", o.N, st)
			}
		}
		return nil
	})
	wallet.Restart()
	check("wallet down during try", failed)

	// The wallet fails its confirm once: the coordinator retries.
	wallet.Arm("confirm", 1)
	placed := checkout("--accounts", "bob", "--basket", "plum=2")
	if len(placed) != 1 || placed[0].Outcome != outcome.Confirmed {
		t.Fatalf("order with a failing confirm: %+v", placed)
	}
	if got := wallet.Faults().Fired["confirm"]; got != 1 {
		t.Fatalf("the wallet's confirm failed %d times, want 1: the test did not test a retry", got)
	}
	check("wallet fails confirm once", placed)

	// The checkout walks away after its tries: the sweepers release the
	// stock and the money at expiry.
	abandoned := checkout("--count", "2", "--accounts", "alice", "--basket", "apple=2", "--ttl", "1s", "--vanish-after-try")
	for _, o := range abandoned {
		if o.Outcome != outcome.Abandoned || o.Stock == "" || o.Payment == "" {
			t.Fatalf("abandoned order: %+v", o)
		}
	}
	e2e.Eventually(t, 20*time.Second, func() error {
		for _, o := range abandoned {
			if st := e2e.StateOf(t, stockDB, o.Stock); st != participant.Expired {
				return fmt.Errorf("stock reservation of order %d is %q", o.N, st)
			}
			if st := e2e.StateOf(t, walletDB, o.Payment); st != participant.Expired {
				return fmt.Errorf("payment of order %d is %q", o.N, st)
			}
		}
		return nil
	})
	check("checkout vanished", nil)

	if got := len(e2e.Transactions(t, co.URL(), "confirmed")); got != len(confirmed) {
		t.Errorf("the coordinator has %d confirmed transactions for %d confirmed orders", got, len(confirmed))
	}
}
