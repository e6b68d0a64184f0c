package pebble

import (
	"fmt"
	"sync"
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

// TestIDFilterCreatesDuringBuild creates ids from several goroutines while
// the filter is being built at Open, and again around a rebuild, and then
// requires every id to be refused a second Create once the filter is
// current. An id written while a build scans must be in the filter the
// build produces, or the filter would call it new and a second Create
// would overwrite the stored record without reading it. Three ways to miss
// one, each of which this test caught: a Create before the build published
// its filter, the Create that starts a rebuild, and Creates tested against
// the old filter just before a rebuild began but written after its scan
// took its snapshot.
func TestIDFilterCreatesDuringBuild(t *testing.T) {
	const (
		rounds  = 8
		writers = 8
		perW    = 100
	)
	dir := t.TempDir()
	opts := Options{CacheSize: 1 << 20}
	// Ids already stored make the build's scan take a while.
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	createN(t, s, "old", 2000)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// concurrently creates writers×perW ids named after prefix, starting
	// all writers at once.
	concurrently := func(s *Store, prefix string) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := range perW {
					id := fmt.Sprintf("%s-%d-%d", prefix, w, i)
					// Created and then finished, so that the record leaves
					// the store's in-memory map of live ones: a second Create
					// depends on the filter (or a lookup), not on that map.
					tx := &tccd.Transaction{ID: id, State: tccd.StateConfirming, CreatedAt: time.Now()}
					if err := s.Create(t.Context(), tx, false); err != nil {
						errs <- fmt.Errorf("Create(%s): %w", id, err)
						return
					}
					tx.State = tccd.StateConfirmed
					if err := s.Update(t.Context(), tx, false); err != nil {
						errs <- fmt.Errorf("Update(%s): %w", id, err)
						return
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	refused := func(s *Store, prefix string) {
		t.Helper()
		for w := range writers {
			allConflict(t, s, fmt.Sprintf("%s-%d-", prefix, w), perW)
		}
	}

	for r := range rounds {
		s, err := Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		// Right after Open: the build has just started, or not yet.
		open := fmt.Sprintf("open%d", r)
		concurrently(s, open)
		waitFilter(t, s)
		refused(s, open)

		// An outgrown filter: midway through the next ids one starts a
		// rebuild, while others have been tested against the current
		// filter and are being written, and yet others are created while
		// it scans.
		s.ids.mu.Lock()
		s.ids.capacity = (s.ids.count + writers*perW/2) / 2
		s.ids.mu.Unlock()
		grown := fmt.Sprintf("grown%d", r)
		concurrently(s, grown)
		waitFilter(t, s)
		refused(s, grown)
		refused(s, open)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
