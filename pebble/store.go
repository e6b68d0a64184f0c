// Package pebble is the embedded transaction log of tccd, on the Pebble
// LSM engine. Synced writes go through Pebble's write-ahead log, whose
// commit pipeline lets concurrent synced batches share one fsync (group
// commit). See docs/ARCHITECTURE.md for why Pebble.
package pebble

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	pdb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tccd/tccd"
)

// Key layout:
//
//	t/<id>                         → the transaction (header + body, record.go)
//	s/<state><created be64><id>    → (empty) transactions by state, then creation
//
// The one index serves recovery (the unfinished states), listing (one
// state, or all of them merged by creation time) and purging (the final
// states, oldest first). Every key written costs on the confirm path —
// an insert into the memtable's skiplist, then flushes and compactions —
// so a transaction writes its record and one index key when created, and
// its record and the move of that key when it finishes. Stores written
// before this layout also kept c/ (by creation) and f/ (by finish) keys;
// Open drops them.
const (
	pfxTx    = "t/"
	pfxState = "s/"
	// pfxNotify indexes the transactions whose notification is pending:
	// n/<id> → (empty).
	pfxNotify = "n/"
	// Prefixes of the earlier layout, dropped at Open.
	oldPfxCreated  = "c/"
	oldPfxFinished = "f/"
)

// Defaults for Options.
const (
	DefaultCacheSize    = 64 << 20
	DefaultMemTableSize = 32 << 20
)

// Options configure the store.
type Options struct {
	// CacheSize is Pebble's block cache in bytes.
	CacheSize int64
	// WALMinSyncInterval, when positive, is the least time between two
	// syncs of the write-ahead log.
	WALMinSyncInterval time.Duration
	// MinFreeBytes is the free space the store keeps in reserve on the
	// disk of its directory: below it every write is refused with a clear
	// error (EUnavailable) instead of failing inside Pebble, whose log
	// cannot survive a failed write. Reads go on. 0 means no reserve.
	MinFreeBytes int64
	// MemTableSize is the size of Pebble's memtable in bytes.
	MemTableSize int64
	// Logger receives Pebble's own messages; nil discards them.
	Logger *slog.Logger
	// FS is the file system the store's files are on; nil means the real
	// disk. Tests pass Pebble's crashable in-memory file system
	// (vfs.NewCrashableMem) to see what a power loss leaves: its CrashClone
	// keeps only what was synced.
	FS vfs.FS
}

// Store is a tccd.Store in a directory on local disk.
type Store struct {
	// closeOnce makes Close safe to call again: the later calls return
	// the first one's error.
	closeOnce sync.Once
	closeErr  error

	db      *pdb.DB
	dirLock *dirLocks // on dir, taken before Pebble opens it
	dir     string
	space   spaceGuard
	cache   *pdb.Cache
	seed    maphash.Seed
	// stripes serialise the read-check-write of one id, and hold the
	// records of the unfinished transactions this process has written.
	stripes [256]stripe

	ids          idFilter
	filterCtx    context.Context
	filterCancel context.CancelFunc
	filterWG     sync.WaitGroup
}

// stripe is one lock of the store and the records of the unfinished
// transactions whose ids hash to it. Every write of a record goes through
// the store under its stripe's lock, so a record here is the stored one:
// Get decodes it and Update checks the version against it without reading
// Pebble, and Create knows such an id exists. A final record leaves the
// map; so does an id whose write failed (the store cannot tell what is on
// disk then, and reads it next time). The map holds only transactions in
// flight, each as its encoded record (a few hundred bytes).
type stripe struct {
	mu   sync.Mutex
	live map[string]liveRecord
}

// liveRecord is the stored value of an unfinished transaction and its
// decoded header. The value is never changed once here; a write replaces it.
type liveRecord struct {
	header
	value []byte
}

var _ tccd.Store = (*Store)(nil)

// Open opens (creating if needed) the store in dir. Only one process may
// have a directory open at a time: while another has it, Open fails with an
// *InUseError. It fails with a *DamagedError when files of the directory
// are missing or damaged, as far as it can tell (see dir.go).
func Open(dir string, opts Options) (*Store, error) {
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.MemTableSize == 0 {
		opts.MemTableSize = DefaultMemTableSize
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	lock, err := lockDir(opts.FS, dir)
	if err != nil {
		return nil, err
	}
	if err := inspect(opts.FS, dir); err != nil {
		lock.Close()
		return nil, err
	}
	cache := pdb.NewCache(opts.CacheSize)
	popts := &pdb.Options{
		FS:                 opts.FS,
		Lock:               lock.pebble,
		Cache:              cache,
		FormatMajorVersion: pdb.FormatNewest,
		Logger:             pebbleLogger{log},
	}
	// Bloom filters make the point lookups of ids that do not exist (every
	// new transaction is looked up once) cheap; later levels inherit L0's.
	popts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	// A larger memtable keeps the records of recent (mostly in-flight)
	// transactions in memory, where lookups are cheap, and flushes less
	// often. It counts against memory like the block cache.
	popts.MemTableSize = uint64(opts.MemTableSize)
	if opts.WALMinSyncInterval > 0 {
		// Lets more concurrent synced commits share one fdatasync, at the
		// cost of up to this much latency.
		popts.WALMinSyncInterval = func() time.Duration { return opts.WALMinSyncInterval }
	}
	db, err := pdb.Open(dir, popts)
	if err != nil {
		cache.Unref()
		lock.Close()
		return nil, openError(dir, err)
	}
	s := &Store{db: db, dirLock: lock, dir: dir, cache: cache, seed: maphash.MakeSeed(), space: spaceGuard{fs: opts.FS, dir: dir, min: opts.MinFreeBytes}}
	if err := s.dropOldIndexes(); err != nil {
		db.Close()
		cache.Unref()
		lock.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s.filterCtx, s.filterCancel = context.WithCancel(context.Background())
	s.ids.start = s.startFilter
	// Before Open returns: the filter being built must exist before the
	// first Create, or an id written while the build scans could be
	// missing from it (see idFilter).
	s.startFilter(0)
	return s, nil
}

// dropOldIndexes deletes the index keys of the earlier layout (see the
// key layout above), if there are any.
func (s *Store) dropOldIndexes() error {
	for _, pfx := range []string{oldPfxCreated, oldPfxFinished} {
		lower, upper := []byte(pfx), []byte(pfx+"\xff")
		it, err := s.db.NewIter(&pdb.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return err
		}
		found := it.First()
		err = it.Close()
		if err != nil {
			return err
		}
		if found {
			if err := s.db.DeleteRange(lower, upper, pdb.Sync); err != nil {
				return fmt.Errorf("drop old index %s: %w", pfx, err)
			}
		}
	}
	return nil
}

// Close flushes and closes the store. Calling it again does nothing and
// returns the first call's error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.stopFilter()
		err := s.db.Flush()
		if cerr := s.db.Close(); err == nil {
			err = cerr
		}
		if cerr := s.dirLock.Close(); err == nil {
			err = cerr
		}
		s.cache.Unref()
		s.closeErr = err
	})
	return s.closeErr
}

// lock locks the stripe of id and returns it.
func (s *Store) lock(id string) *stripe {
	st := &s.stripes[maphash.String(s.seed, id)%uint64(len(s.stripes))]
	st.mu.Lock()
	return st
}

// remember records a written record: kept while the transaction is
// unfinished, dropped when it is final.
func (st *stripe) remember(id string, h header, value []byte, final bool) {
	if final {
		delete(st.live, id)
		return
	}
	if st.live == nil {
		st.live = make(map[string]liveRecord)
	}
	st.live[id] = liveRecord{header: h, value: value}
}

func txKey(id string) []byte { return append([]byte(pfxTx), id...) }

func notifyKey(id string) []byte { return append([]byte(pfxNotify), id...) }

func be64(b []byte, v int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(v)) }

func stateKey(state byte, created int64, id string) []byte {
	return append(be64(append([]byte(pfxState), state), created), id...)
}

func writeOpts(durable bool) *pdb.WriteOptions {
	if durable {
		return pdb.Sync
	}
	return pdb.NoSync
}

func (s *Store) get(id string) ([]byte, error) {
	v, closer, err := s.db.Get(txKey(id))
	if errors.Is(err, pdb.ErrNotFound) {
		return nil, tccd.Errorf(tccd.ENotFound, "transaction %s not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", id, err)
	}
	out := bytes.Clone(v)
	closer.Close()
	return out, nil
}

// Create stores a new transaction.
func (s *Store) Create(ctx context.Context, tx *tccd.Transaction, durable bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.space.check(); err != nil {
		return err
	}
	if !tccd.CanCreate(tx.State) {
		return tccd.Errorf(tccd.EInvalid, "a transaction cannot be created in state %q", tx.State)
	}
	st := s.lock(tx.ID)
	defer st.mu.Unlock()
	if _, ok := st.live[tx.ID]; ok {
		return tccd.Errorf(tccd.EConflict, "transaction %s already exists", tx.ID)
	}
	// Into the filter before the write: a failed write may have happened.
	if s.ids.testAndAdd(tx.ID) {
		if _, err := s.get(tx.ID); err == nil {
			return tccd.Errorf(tccd.EConflict, "transaction %s already exists", tx.ID)
		} else if tccd.ErrorCode(err) != tccd.ENotFound {
			return err
		}
	}
	v, err := encode(tx, 1)
	if err != nil {
		return err
	}
	created := nanos(tx.CreatedAt)
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(txKey(tx.ID), v, nil)
	_ = b.Set(stateKey(stateCode(tx.State), created, tx.ID), nil, nil)
	pending := tx.Notification.State == tccd.NotificationPending
	if pending {
		_ = b.Set(notifyKey(tx.ID), nil, nil)
	}
	if err := b.Commit(writeOpts(durable)); err != nil {
		return fmt.Errorf("create %s: %w", tx.ID, err)
	}
	tx.Version = 1
	st.remember(tx.ID, header{version: 1, state: stateCode(tx.State), created: created, pending: pending}, v, tx.State.Final())
	return nil
}

// Get returns a transaction.
func (s *Store) Get(ctx context.Context, id string) (*tccd.Transaction, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st := s.lock(id)
	rec, ok := st.live[id]
	st.mu.Unlock()
	if ok {
		return decode(rec.value)
	}
	v, err := s.get(id)
	if err != nil {
		return nil, err
	}
	return decode(v)
}

// Update replaces a transaction if its stored version is tx.Version.
func (s *Store) Update(ctx context.Context, tx *tccd.Transaction, durable bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.space.check(); err != nil {
		return err
	}
	st := s.lock(tx.ID)
	defer st.mu.Unlock()
	rec, ok := st.live[tx.ID]
	h := rec.header
	if !ok {
		old, err := s.get(tx.ID)
		if err != nil {
			return err
		}
		if h, err = decodeHeader(old); err != nil {
			return err
		}
	}
	if h.version != tx.Version {
		return tccd.Errorf(tccd.EConflict, "transaction %s was changed concurrently (version %d, not %d)", tx.ID, h.version, tx.Version)
	}
	from, ok := stateOfCode(h.state)
	if !ok {
		return fmt.Errorf("corrupt record %s: state code %d", tx.ID, h.state)
	}
	if !tccd.CanTransition(from, tx.State) {
		return tccd.Errorf(tccd.EConflict, "transaction %s cannot move from %s to %s", tx.ID, from, tx.State)
	}
	v, err := encode(tx, tx.Version+1)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(txKey(tx.ID), v, nil)
	if code := stateCode(tx.State); code != h.state {
		_ = b.Delete(stateKey(h.state, h.created, tx.ID), nil)
		_ = b.Set(stateKey(code, h.created, tx.ID), nil, nil)
	}
	pending := tx.Notification.State == tccd.NotificationPending
	switch {
	case pending && !h.pending:
		_ = b.Set(notifyKey(tx.ID), nil, nil)
	case !pending && h.pending:
		_ = b.Delete(notifyKey(tx.ID), nil)
	}
	if err := b.Commit(writeOpts(durable)); err != nil {
		delete(st.live, tx.ID)
		return fmt.Errorf("update %s: %w", tx.ID, err)
	}
	tx.Version++
	st.remember(tx.ID, header{version: tx.Version, state: stateCode(tx.State), created: h.created, pending: pending}, v, tx.State.Final())
	return nil
}

// List returns transactions newest first. Without a state filter it
// merges the state index's per-state ranges by creation time.
func (s *Store) List(ctx context.Context, f tccd.Filter) ([]*tccd.Transaction, string, error) {
	if f.Limit <= 0 {
		return nil, "", tccd.FieldError("limit", "limit must be positive")
	}
	codes := make([]byte, 0, len(tccd.States))
	if f.State != "" {
		code := stateCode(f.State)
		if code == 0 {
			return nil, "", tccd.FieldError("state", "unknown state %q", f.State)
		}
		codes = append(codes, code)
	} else {
		for _, st := range tccd.States {
			codes = append(codes, stateCode(st))
		}
	}
	var cursor []byte // created be64 + id: list what sorts before it
	if f.Cursor != "" {
		c, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil || len(c) < 9 {
			return nil, "", tccd.FieldError("cursor", "invalid cursor")
		}
		cursor = c
	}
	// One iterator per state, each at its newest entry before the cursor;
	// the newest of their entries is next. They read one snapshot, so a
	// transaction changing state meanwhile is listed once.
	snap := s.db.NewSnapshot()
	defer snap.Close()
	type head struct {
		it     *pdb.Iterator
		prefix int
		ok     bool
	}
	heads := make([]*head, 0, len(codes))
	defer func() {
		for _, h := range heads {
			h.it.Close()
		}
	}()
	for _, code := range codes {
		prefix := []byte{pfxState[0], pfxState[1], code}
		upper := append(bytes.Clone(prefix), 0xff)
		if cursor != nil {
			upper = append(bytes.Clone(prefix), cursor...)
		}
		it, err := snap.NewIterWithContext(ctx, &pdb.IterOptions{LowerBound: prefix, UpperBound: upper})
		if err != nil {
			return nil, "", fmt.Errorf("list: %w", err)
		}
		heads = append(heads, &head{it: it, prefix: len(prefix), ok: it.Last()})
	}
	var out []*tccd.Transaction
	var last []byte
	for len(out) < f.Limit {
		var next *head
		for _, h := range heads {
			if h.ok && (next == nil || bytes.Compare(h.it.Key()[h.prefix:], next.it.Key()[next.prefix:]) > 0) {
				next = h
			}
		}
		if next == nil {
			break
		}
		suffix := next.it.Key()[next.prefix:]
		tx, err := s.Get(ctx, string(suffix[8:]))
		switch {
		case tccd.ErrorCode(err) == tccd.ENotFound:
			// purged between the index read and now
		case err != nil:
			return nil, "", err
		default:
			out = append(out, tx)
			last = bytes.Clone(suffix)
		}
		next.ok = next.it.Prev()
	}
	more := false
	for _, h := range heads {
		if err := h.it.Error(); err != nil {
			return nil, "", fmt.Errorf("list: %w", err)
		}
		more = more || h.ok
	}
	cur := ""
	if len(out) == f.Limit && more {
		cur = base64.RawURLEncoding.EncodeToString(last)
	}
	return out, cur, nil
}

// Unfinished calls fn for every transaction not in a final state, then
// for every one whose notification is pending.
func (s *Store) Unfinished(ctx context.Context, fn func(*tccd.Transaction) error) error {
	var prefixes [][]byte
	for _, st := range tccd.States {
		if !st.Final() {
			prefixes = append(prefixes, pfx(st))
		}
	}
	prefixes = append(prefixes, []byte(pfxNotify))
	for _, prefix := range prefixes {
		idAt := len(prefix) + 8 // after the creation time
		if string(prefix) == pfxNotify {
			idAt = len(prefix)
		}
		it, err := s.db.NewIterWithContext(ctx, &pdb.IterOptions{LowerBound: prefix, UpperBound: append(bytes.Clone(prefix), 0xff)})
		if err != nil {
			return fmt.Errorf("scan %s: %w", prefix, err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			id := string(it.Key()[idAt:])
			tx, err := s.Get(ctx, id)
			if err == nil {
				err = fn(tx)
			}
			if err != nil && tccd.ErrorCode(err) != tccd.ENotFound {
				it.Close()
				return err
			}
		}
		err = it.Error()
		it.Close()
		if err != nil {
			return fmt.Errorf("scan %s: %w", prefix, err)
		}
	}
	return nil
}

// pfx is the prefix of the state index's entries of a state.
func pfx(st tccd.State) []byte { return append([]byte(pfxState), stateCode(st)) }

// Purge deletes finished transactions that ended before the given time,
// oldest (by creation) first within each final state. It walks the final states' ranges of the
// state index up to that time — a transaction cannot have finished before
// it was created — and reads each record for its finish time; the few
// created before but finished after are passed over.
func (s *Store) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	n := 0
	for _, st := range tccd.States {
		if !st.Final() || n >= limit {
			continue
		}
		prefix := []byte{pfxState[0], pfxState[1], stateCode(st)}
		it, err := s.db.NewIterWithContext(ctx, &pdb.IterOptions{LowerBound: prefix, UpperBound: be64(bytes.Clone(prefix), nanos(before))})
		if err != nil {
			return n, fmt.Errorf("purge: %w", err)
		}
		// The iterator reads a snapshot: deleting as it goes is safe.
		for ok := it.First(); ok && n < limit; ok = it.Next() {
			deleted, perr := s.purgeOne(string(it.Key()[len(prefix)+8:]), before)
			if perr != nil {
				it.Close()
				return n, perr
			}
			if deleted {
				n++
			}
		}
		err = it.Error()
		it.Close()
		if err != nil {
			return n, fmt.Errorf("purge: %w", err)
		}
	}
	return n, nil
}

// purgeOne deletes a transaction if it is final and finished before the
// given time.
func (s *Store) purgeOne(id string, before time.Time) (bool, error) {
	st := s.lock(id)
	defer st.mu.Unlock()
	v, err := s.get(id)
	if tccd.ErrorCode(err) == tccd.ENotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	tx, err := decode(v)
	if err != nil {
		return false, err
	}
	if !tx.State.Final() || !tx.FinishedAt.Before(before) {
		return false, nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Delete(txKey(id), nil)
	_ = b.Delete(stateKey(stateCode(tx.State), nanos(tx.CreatedAt), id), nil)
	if tx.Notification.State == tccd.NotificationPending {
		_ = b.Delete(notifyKey(id), nil)
	}
	if err := b.Commit(pdb.NoSync); err != nil {
		return false, fmt.Errorf("purge %s: %w", id, err)
	}
	return true, nil
}

// pebbleLogger routes Pebble's messages to slog.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}
