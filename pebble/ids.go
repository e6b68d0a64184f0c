package pebble

import (
	"context"
	"sync"

	"github.com/bits-and-blooms/bloom/v3"
	pdb "github.com/cockroachdb/pebble/v2"
)

// idFilter tells Create, without a lookup in Pebble, that an id is new.
// Every new transaction needs that answer, and a Pebble lookup of an
// absent key searches the whole memtable, a skiplist of tens of megabytes:
// it was the largest single cost of the log in profiles of the confirm
// path. The filter is a Bloom filter over every id in the store, built in
// the background at Open from the stored keys; until it is built, and for
// the ids it cannot rule out (1 %), Create looks up as before.
//
// It holds every id in the store: ids written before the build are read
// by the scan, which begins after the filter under construction is
// published; ids created later are added to it (and to the current
// filter) before their write. Purged ids stay in it until the next build,
// which costs only a lookup. When the filter has taken twice its planned
// capacity it is built again, twice as large, while the old one serves.
type idFilter struct {
	mu       sync.Mutex
	cur      *bloom.BloomFilter  // nil until the first build is done
	next     *bloom.BloomFilter  // being built, or nil
	count    uint                // ids in cur
	capacity uint                // what cur was sized for
	closed   bool                // no build starts
	start    func(capacity uint) // starts a build; called with mu held
}

// Sizing of the filter.
const (
	minFilterIDs = 1 << 20
	filterFP     = 0.01
)

// testAndAdd records an id that is about to be written — or found to be
// stored already, when adding it changes nothing — and reports whether it
// may have been in the store before; false is certain. One lock for both
// on the confirm path.
func (f *idFilter) testAndAdd(id string) (mayExist bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.next != nil {
		f.next.AddString(id)
	}
	if f.cur == nil {
		return true
	}
	if f.cur.TestOrAddString(id) {
		return true
	}
	f.count++
	if f.next == nil && !f.closed && f.count > 2*f.capacity {
		f.next = bloom.NewWithEstimates(2*f.count, filterFP)
		f.start(2 * f.count)
	}
	return false
}

// build scans the ids of the store into a new filter of the given
// capacity (or one sized from the ids at hand, if 0) and makes it current.
// Only one build runs at a time: the first is started by Open, the next
// by testAndAdd.
func (s *Store) buildFilter(ctx context.Context, capacity uint) {
	defer s.filterWG.Done()
	f := &s.ids
	f.mu.Lock()
	if f.next == nil {
		f.next = bloom.NewWithEstimates(max(capacity, minFilterIDs), filterFP)
	}
	next := f.next
	f.mu.Unlock()
	// The scan starts after next is published: an id written before is
	// seen by the scan, one written after is added by add.
	it, err := s.db.NewIterWithContext(ctx, &pdb.IterOptions{LowerBound: []byte(pfxTx), UpperBound: []byte(pfxTx + "\xff")})
	if err != nil {
		s.abandonBuild()
		return
	}
	var n uint
	batch := make([][]byte, 0, 1024)
	flush := func() {
		f.mu.Lock()
		for _, k := range batch {
			next.Add(k)
		}
		f.mu.Unlock()
		batch = batch[:0]
	}
	for ok := it.First(); ok; ok = it.Next() {
		batch = append(batch, append([]byte(nil), it.Key()[len(pfxTx):]...))
		n++
		if len(batch) == cap(batch) {
			flush()
			if ctx.Err() != nil {
				break
			}
		}
	}
	flush()
	err = it.Error()
	it.Close()
	if err != nil || ctx.Err() != nil {
		s.abandonBuild()
		return
	}
	f.mu.Lock()
	f.cur, f.next = next, nil
	f.count, f.capacity = n, max(capacity, minFilterIDs, n)
	f.mu.Unlock()
}

// startFilter starts a build in the background (see buildFilter); with
// s.ids.mu held or before the store is shared.
func (s *Store) startFilter(capacity uint) {
	s.filterWG.Add(1)
	go s.buildFilter(s.filterCtx, capacity)
}

// stopFilter stops a build in progress and keeps new ones from starting.
func (s *Store) stopFilter() {
	s.ids.mu.Lock()
	s.ids.closed = true
	s.ids.mu.Unlock()
	s.filterCancel()
	s.filterWG.Wait()
}

// abandonBuild drops a build that failed; Create keeps looking up.
func (s *Store) abandonBuild() {
	s.ids.mu.Lock()
	s.ids.next = nil
	s.ids.mu.Unlock()
}
