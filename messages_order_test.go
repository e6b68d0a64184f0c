package tccd_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd"
)

// orderPublisher records the order in which messages are tried and
// stored; the first message of a transaction fails a few times first.
type orderPublisher struct {
	mu     sync.Mutex
	fails  int
	tried  []string
	stored []string
}

func (p *orderPublisher) CheckSubject(context.Context, string) error { return nil }

func (p *orderPublisher) Publish(_ context.Context, m tccd.OutgoingMessage) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tried = append(p.tried, m.ID)
	if strings.HasSuffix(m.ID, "/1") && p.fails > 0 {
		p.fails--
		return fmt.Errorf("%w: not connected", tccd.ErrNotSent)
	}
	p.stored = append(p.stored, m.ID)
	return nil
}

// TestMessagesPublishedInOrder: the messages of a transaction are
// published one at a time in the order they were enlisted — a later one
// is not tried before the one before it was stored — even with many
// participant calls allowed in parallel and the first one failing twice.
func TestMessagesPublishedInOrder(t *testing.T) {
	cfg := testConfig()
	cfg.MaxParallel = 16
	pub := &orderPublisher{fails: 2}
	cfg.Messages = pub
	e := newEnv(t, cfg, 1)
	tx := e.begin(time.Minute, e.parts[0].link(0))
	const n = 6
	for i := 0; i < n; i++ {
		if _, _, err := e.coord.EnlistMessage(context.Background(), tx.ID, tccd.Message{Subject: "orders.placed", Data: []byte(fmt.Sprintf(`{"n":%d}`, i+1))}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.coord.Confirm(context.Background(), tx.ID, nil)
	if err != nil || got.State != tccd.StateConfirmed {
		t.Fatalf("confirm: %v, %v", got, err)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprintf("%s/%d", tx.ID, i))
	}
	if strings.Join(pub.stored, " ") != strings.Join(want, " ") {
		t.Errorf("stored in the order %v, want %v", pub.stored, want)
	}
	wantTried := append([]string{want[0], want[0]}, want...)
	if strings.Join(pub.tried, " ") != strings.Join(wantTried, " ") {
		t.Errorf("tried in the order %v, want %v", pub.tried, wantTried)
	}
}
