package tccd

import (
	"sync"
	"testing"
	"time"
)

func stateEv(id string, st State) Event { return Event{Type: EventState, Transaction: id, State: st} }

func TestBrokerSeqReplayAndGap(t *testing.T) {
	b := NewBroker(4, 8, nil)
	for i := 0; i < 6; i++ {
		b.Publish(stateEv("t", StateActive))
	}
	// Seq 1..6 published, the ring keeps 3..6.
	tests := []struct {
		name  string
		after uint64
		want  []uint64 // Seqs replayed; 0 is the gap event
	}{
		{"new only", 0, nil},
		{"all kept", 2, []uint64{3, 4, 5, 6}},
		{"some kept", 4, []uint64{5, 6}},
		{"up to date", 6, nil},
		{"older than the ring", 1, []uint64{0, 3, 4, 5, 6}},
		{"from an earlier run", 99, []uint64{0, 3, 4, 5, 6}},
		{"from the oldest, some dropped", FromOldest, []uint64{0, 3, 4, 5, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := b.Subscribe(EventFilter{}, tt.after)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got []uint64
			for _, ev := range s.Replay {
				got = append(got, ev.Seq)
				if (ev.Seq == 0) != (ev.Type == EventGap) {
					t.Errorf("event %+v", ev)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("replay %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("replay %v, want %v", got, tt.want)
				}
			}
		})
	}
	// From the oldest while the ring still holds the first event: no gap.
	fresh := NewBroker(4, 8, nil)
	fresh.Publish(stateEv("t", StateActive))
	fresh.Publish(stateEv("t", StateConfirming))
	if s, _ := fresh.Subscribe(EventFilter{}, FromOldest); len(s.Replay) != 2 || s.Replay[0].Seq != 1 || s.Replay[1].Seq != 2 {
		t.Fatalf("from the oldest of a full history: %+v", s.Replay)
	}
	if s, _ := NewBroker(4, 8, nil).Subscribe(EventFilter{}, FromOldest); len(s.Replay) != 0 {
		t.Fatalf("from the oldest of nothing: %+v", s.Replay)
	}
	// Live events follow the replay without a hole or a duplicate.
	s, _ := b.Subscribe(EventFilter{}, 5)
	b.Publish(stateEv("t", StateConfirming))
	if len(s.Replay) != 1 || s.Replay[0].Seq != 6 {
		t.Fatalf("replay %+v", s.Replay)
	}
	if ev := <-s.C; ev.Seq != 7 || ev.State != StateConfirming || ev.Time.IsZero() {
		t.Fatalf("live event %+v", ev)
	}
}

func TestBrokerFilters(t *testing.T) {
	b := NewBroker(100, 100, nil)
	subs := map[string]EventFilter{
		"all":       {},
		"one tx":    {Transaction: "a"},
		"attempts":  {Types: []EventType{EventAttempt}},
		"heuristic": {States: []State{StateHeuristic}},
		"alice's":   {Owner: "alice", OnlyOwner: true},
	}
	got := map[string]*Subscription{}
	for name, f := range subs {
		s, _ := b.Subscribe(f, 0)
		got[name] = s
	}
	b.Publish(Event{Type: EventState, Transaction: "a", Owner: "alice", State: StateConfirming})
	b.Publish(Event{Type: EventAttempt, Transaction: "a", Owner: "alice", Status: 503})
	b.Publish(Event{Type: EventState, Transaction: "b", Owner: "bob", State: StateHeuristic})
	want := map[string]int{"all": 3, "one tx": 2, "attempts": 1, "heuristic": 1, "alice's": 2}
	for name, s := range got {
		if n := len(s.C); n != want[name] {
			t.Errorf("%s received %d events, want %d", name, n, want[name])
		}
	}
}

// TestBrokerSlowSubscriberIsDropped: a subscriber whose buffer is full
// gets a lagged event as its last and is dropped; Publish never waits,
// and the others go on receiving.
func TestBrokerSlowSubscriberIsDropped(t *testing.T) {
	b := NewBroker(10, 3, nil)
	slow, _ := b.Subscribe(EventFilter{}, 0)
	fast, _ := b.Subscribe(EventFilter{}, 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 10; i++ {
			b.Publish(stateEv("t", StateActive))
			<-fast.C
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a slow subscriber")
	}
	var last Event
	n := 0
	for ev := range slow.C {
		last = ev
		n++
	}
	if n != 4 || last.Type != EventLagged || last.Seq != 0 {
		t.Fatalf("slow subscriber got %d events, the last %+v; want 3 and a lagged one without a Seq", n, last)
	}
	if b.Subscribers() != 1 {
		t.Fatalf("%d subscribers, want the fast one only", b.Subscribers())
	}
	fast.Close()
	if _, ok := <-fast.C; ok {
		t.Fatal("C open after Close")
	}
	fast.Close() // twice is fine
}

// TestBrokerLaggedResume: a subscriber that lagged and subscribes again
// after the last Seq it saw — as a client resuming with Last-Event-ID
// does — gets every event it missed: across the two subscriptions each
// event it selects arrives exactly once.
func TestBrokerLaggedResume(t *testing.T) {
	tests := []struct {
		name   string
		filter EventFilter
	}{
		{"every event", EventFilter{}},
		{"one transaction", EventFilter{Transaction: "b"}},
		{"state events", EventFilter{Types: []EventType{EventState}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBroker(100, 3, nil)
			publish := func(i int) {
				ev := stateEv(string(rune('a'+i%2)), StateActive)
				if i%3 == 2 {
					ev.Type = EventAttempt
				}
				b.Publish(ev)
			}
			first, _ := b.Subscribe(tt.filter, 0)
			for i := 0; i < 30; i++ {
				publish(i)
			}
			got := map[uint64]int{}
			var last uint64 // the last Seq seen, as EventSource keeps it
			var lagged bool
			for ev := range first.C {
				if ev.Seq > 0 {
					last = ev.Seq
				}
				if ev.Type == EventLagged {
					lagged = true
					continue
				}
				got[ev.Seq]++
			}
			if !lagged {
				t.Fatal("the subscriber did not lag")
			}
			second, _ := b.Subscribe(tt.filter, last)
			defer second.Close()
			for i := 30; i < 33; i++ { // fewer than its buffer holds
				publish(i)
			}
			for _, ev := range second.Replay {
				got[ev.Seq]++
			}
			for len(second.C) > 0 {
				ev := <-second.C
				if ev.Type == EventLagged {
					t.Fatal("the second subscription lagged")
				}
				got[ev.Seq]++
			}
			want := 0
			for seq := uint64(1); seq <= 33; seq++ {
				ev := stateEv(string(rune('a'+(seq-1)%2)), StateActive)
				if (seq-1)%3 == 2 {
					ev.Type = EventAttempt
				}
				if !tt.filter.match(&ev) {
					continue
				}
				want++
				if got[seq] != 1 {
					t.Errorf("event %d arrived %d times (resumed after %d)", seq, got[seq], last)
				}
			}
			if len(got) != want {
				t.Errorf("%d events, want %d: %v", len(got), want, got)
			}
		})
	}
}

func TestKeyedMutex(t *testing.T) {
	var k keyedMutex
	unlockA := k.lock("a")
	got := make(chan string, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		u := k.lock("a")
		got <- "a"
		u()
	}()
	go func() {
		defer wg.Done()
		u := k.lock("b")
		got <- "b"
		u()
	}()
	if first := <-got; first != "b" {
		t.Fatalf("%s got the lock first; a is held", first)
	}
	unlockA()
	if second := <-got; second != "a" {
		t.Fatalf("got %s", second)
	}
	wg.Wait()
	for i := range k.shards {
		if len(k.shards[i].m) != 0 {
			t.Fatalf("entries left in shard %d", i)
		}
	}
}
