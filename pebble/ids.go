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
// It holds every id in the store. The filter a build fills (next) exists
// before any Create can run beside the build — Open makes it before it
// returns, and a rebuild is started by the Create that outgrew the filter,
// under the filter's lock — and every Create tested after that adds its
// id to it before its write. The build's scan waits for the writes of the
// Creates tested before (see buildFilter), then reads every stored id. So
// the built filter holds an id whenever its write committed. Until the
// first build has finished, no answer is certain and Create looks up;
// during a rebuild the current filter, which every new id is added to as
// well, keeps answering. Purged ids stay in it until the next build, which
// costs only a lookup. When the filter has taken twice its planned
// capacity it is built again, twice as large, while the old one serves.
type idFilter struct {
	mu       sync.Mutex
	cur      *bloom.BloomFilter  // nil until the first build is done
	next     *bloom.BloomFilter  // being built, or nil
	count    uint                // ids in cur
	capacity uint                // what cur was sized for
	closed   bool                // no build starts
	start    func(capacity uint) // starts a build (see Store.startFilter); called with mu held
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
	mayExist = true
	if f.cur != nil && !f.cur.TestOrAddString(id) {
		mayExist = false
		f.count++
		if f.next == nil && !f.closed && f.count > 2*f.capacity {
			f.start(2 * f.count)
		}
	}
	// Into the filter being built too, including the one this call may
	// just have started: the id's write may commit after the build's scan
	// took its snapshot.
	if f.next != nil {
		f.next.AddString(id)
	}
	return mayExist
}

// startFilter starts a build of a filter of the given capacity (or the
// least size, if smaller) in the background: it makes the filter to fill
// and publishes it as next before it returns, so every id created from
// then on is added to it. Called with s.ids.mu held, or by Open before the
// store is shared. Only one build runs at a time: the first is started by
// Open, the next by testAndAdd once next is nil again.
func (s *Store) startFilter(capacity uint) {
	capacity = max(capacity, minFilterIDs)
	next := bloom.NewWithEstimates(capacity, filterFP)
	s.ids.next = next
	s.filterWG.Add(1)
	go s.buildFilter(s.filterCtx, next, capacity)
}

// buildFilter scans the ids of the store into next, the filter startFilter
// published, and makes it current. Every id is in next by then: one tested
// by testAndAdd after next was published was added to it before its write;
// one tested before (against the current filter, in a rebuild) was
// written before the scan's snapshot, because the scan first waits for
// those writes (below). The scan reads every other stored id.
func (s *Store) buildFilter(ctx context.Context, next *bloom.BloomFilter, capacity uint) {
	defer s.filterWG.Done()
	f := &s.ids
	// A Create holds its stripe's lock from its testAndAdd to the end of
	// its write. Once every stripe has been free after next was published,
	// every Create that tested its id before has committed (or failed), and
	// the snapshot the scan takes next holds its id.
	for i := range s.stripes {
		s.stripes[i].mu.Lock()
		s.stripes[i].mu.Unlock()
	}
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
	f.count, f.capacity = n, max(capacity, n)
	f.mu.Unlock()
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
