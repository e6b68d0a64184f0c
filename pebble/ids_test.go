package pebble

import (
	"fmt"
	"testing"
	"time"

	"github.com/tccd/tccd"
)

// waitFilter waits until no build is in progress and a filter is current.
func waitFilter(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.ids.mu.Lock()
		done := s.ids.cur != nil && s.ids.next == nil
		s.ids.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the id filter was not built")
		}
		time.Sleep(time.Millisecond)
	}
}

func createN(t *testing.T, s *Store, prefix string, n int) {
	t.Helper()
	for i := range n {
		tx := &tccd.Transaction{ID: fmt.Sprintf("%s%d", prefix, i), State: tccd.StateActive, CreatedAt: time.Now()}
		if err := s.Create(t.Context(), tx, false); err != nil {
			t.Fatal(err)
		}
	}
}

// allConflict checks that creating any of the ids again is refused.
func allConflict(t *testing.T, s *Store, prefix string, n int) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("%s%d", prefix, i)
		err := s.Create(t.Context(), &tccd.Transaction{ID: id, State: tccd.StateActive, CreatedAt: time.Now()}, false)
		if tccd.ErrorCode(err) != tccd.EConflict {
			t.Fatalf("Create(%s) again = %v, want EConflict", id, err)
		}
	}
}

// TestIDFilter: whatever the state of the id filter — being built at
// Open, built, rebuilt larger — an id in the store is never taken for new.
func TestIDFilter(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	createN(t, s, "a", 500)
	allConflict(t, s, "a", 500)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened: right away (the build may be running), then built.
	s, err = Open(dir, Options{CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	allConflict(t, s, "a", 500)
	waitFilter(t, s)
	allConflict(t, s, "a", 500)
	s.ids.mu.Lock()
	rulesOut := !s.ids.cur.TestString("never-written") || !s.ids.cur.TestString("nor-this") || !s.ids.cur.TestString("nor-that")
	s.ids.mu.Unlock()
	if !rulesOut {
		t.Fatal("the filter rules nothing out")
	}

	// Outgrown: a smaller planned capacity makes the next ids start a
	// rebuild, during and after which every id still conflicts.
	s.ids.mu.Lock()
	old := s.ids.cur
	s.ids.capacity = 100
	s.ids.mu.Unlock()
	createN(t, s, "b", 300)
	allConflict(t, s, "a", 500)
	allConflict(t, s, "b", 300)
	waitFilter(t, s)
	s.ids.mu.Lock()
	rebuilt := s.ids.cur != old
	s.ids.mu.Unlock()
	if !rebuilt {
		t.Fatal("the filter was not rebuilt when outgrown")
	}
	allConflict(t, s, "a", 500)
	allConflict(t, s, "b", 300)
}
