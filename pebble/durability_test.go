package pebble_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/pebble"
)

// The tests here check the store's durability contract (tccd.Store) on
// Pebble's crashable in-memory file system. fs.CrashClone, taken while the
// store is open and writing, is what the disk holds after a power loss at
// that instant: everything synced, and of the rest nothing (the zero
// config) or a random part, 4 KiB block by block (UnsyncedDataPercent).
// With UnsyncedDataPercent 100 it is what a process kill leaves: every
// byte handed to the operating system, synced or not.

const dbDir = "db"

func openOn(t *testing.T, fs vfs.FS) *pebble.Store {
	t.Helper()
	s, err := pebble.Open(dbDir, pebble.Options{CacheSize: 1 << 20, FS: fs})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// afterPowerLoss opens a store on what the disk of fs holds after a power
// loss now.
func afterPowerLoss(t *testing.T, fs *vfs.MemFS, cfg vfs.CrashCloneCfg) *pebble.Store {
	t.Helper()
	return openOn(t, fs.CrashClone(cfg))
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// txAt returns transaction id as written for the n-th time: every field a
// write may change differs between versions, so a record mixing two writes
// is told from each.
func txAt(id string, n int, st tccd.State) *tccd.Transaction {
	at := t0.Add(time.Duration(n) * time.Second)
	tx := &tccd.Transaction{
		ID: id, Protocol: tccd.ProtocolNative, State: st, Timeout: time.Minute,
		Labels:    map[string]string{"n": fmt.Sprint(n)},
		CreatedAt: t0, Deadline: t0.Add(time.Minute), UpdatedAt: at,
		// Padding spreads a series of writes over several 4 KiB blocks of
		// the log, which a power loss keeps or drops one by one.
		Name: fmt.Sprintf("%s-v%d-%s", id, n, strings.Repeat("x", 1000)),
	}
	for i := range n%3 + 1 {
		tx.Participants = append(tx.Participants, tccd.Participant{
			URI: fmt.Sprintf("http://127.0.0.1:%d/r/%s", 9000+i, id), Expires: t0.Add(time.Hour),
			State: tccd.ParticipantPending, Attempts: n, LastError: fmt.Sprintf("attempt %d", n),
		})
	}
	if st.Decided() {
		tx.DecidedAt = at
	}
	return tx
}

func mustGet(t *testing.T, s tccd.Store, id string) *tccd.Transaction {
	t.Helper()
	tx, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return tx
}

// indexed returns the states under which List finds id: the state index
// must agree with the record (one state, the record's), never be a mix.
func indexed(t *testing.T, s tccd.Store, id string) []tccd.State {
	t.Helper()
	var in []tccd.State
	for _, st := range tccd.States {
		txs, _, err := s.List(context.Background(), tccd.Filter{State: st, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, tx := range txs {
			if tx.ID == id {
				in = append(in, st)
			}
		}
	}
	return in
}

// TestPowerLossKeepsDurableWrites: a write acknowledged with durable=true
// is on the disk after a power loss, record and index.
func TestPowerLossKeepsDurableWrites(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openOn(t, fs)
	ctx := context.Background()
	tx := txAt("a", 1, tccd.StateActive)
	if err := s.Create(ctx, tx, true); err != nil {
		t.Fatal(err)
	}
	next := txAt("a", 2, tccd.StateConfirming)
	next.Version = tx.Version
	if err := s.Update(ctx, next, true); err != nil {
		t.Fatal(err)
	}

	got := afterPowerLoss(t, fs, vfs.CrashCloneCfg{})
	if tx := mustGet(t, got, "a"); !reflect.DeepEqual(tx, next) {
		t.Fatalf("after a power loss:\n got  %+v\n want %+v", tx, next)
	}
	if in := indexed(t, got, "a"); !reflect.DeepEqual(in, []tccd.State{tccd.StateConfirming}) {
		t.Fatalf("indexed under %v, want [confirming]", in)
	}
}

// write is one write of the series in TestPowerLossNonDurableWrites.
type write struct {
	tx    *tccd.Transaction // as stored, with its version
	index int               // position in the series
}

// TestPowerLossNonDurableWrites: writes with durable=false may be lost,
// but what a power loss leaves is the state after some prefix of the
// writes, in the order they were made — every record one that was
// written, indexed under its own state — and a later durable write makes
// every earlier one durable too (Pebble writes its log in order).
func TestPowerLossNonDurableWrites(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openOn(t, fs)
	ctx := context.Background()
	ids := []string{"p", "q", "r", "s", "t", "u"}
	// history[id] lists the writes of id in order; the first is durable.
	history := map[string][]write{}
	n := 0
	for _, id := range ids {
		tx := txAt(id, 0, tccd.StateActive)
		if err := s.Create(ctx, tx, true); err != nil {
			t.Fatal(err)
		}
		history[id] = []write{{tx.Clone(), n}}
		n++
	}
	durableUpTo := n
	// Progress and a decision per transaction, interleaved across them,
	// none synced: about 160 KiB of log, some of it handed to the
	// operating system (whole blocks of Pebble's log), the rest still in
	// Pebble's buffer.
	var states []tccd.State
	for i := range 20 {
		states = append(states, []tccd.State{tccd.StateActive, tccd.StateConfirming}[min(i/10, 1)])
	}
	for round := 1; round <= len(states); round++ {
		for _, id := range ids {
			h := history[id]
			next := txAt(id, round, states[round-1])
			next.Version = h[len(h)-1].tx.Version
			if err := s.Update(ctx, next, false); err != nil {
				t.Fatal(err)
			}
			history[id] = append(h, write{next.Clone(), n})
			n++
		}
	}

	// check opens the store a power loss with cfg leaves and returns the
	// length of the prefix of the series it holds.
	check := func(t *testing.T, cfg vfs.CrashCloneCfg) int {
		t.Helper()
		got := afterPowerLoss(t, fs, cfg)
		// The prefix holds every write up to the latest that survived, and
		// none after the earliest that was lost.
		latestKept, firstLost := -1, n
		for _, id := range ids {
			tx := mustGet(t, got, id)
			h := history[id]
			i := int(tx.Version) - 1
			if i < 0 || i >= len(h) || !reflect.DeepEqual(tx, h[i].tx) {
				t.Fatalf("%s after a power loss is no version that was written:\n got %+v", id, tx)
			}
			if in := indexed(t, got, id); !reflect.DeepEqual(in, []tccd.State{tx.State}) {
				t.Fatalf("%s (%s) indexed under %v", id, tx.State, in)
			}
			latestKept = max(latestKept, h[i].index)
			if i+1 < len(h) {
				firstLost = min(firstLost, h[i+1].index)
			}
		}
		if latestKept >= firstLost {
			t.Fatalf("write %d survived but the earlier write %d was lost: writes reordered", latestKept, firstLost)
		}
		return firstLost
	}

	t.Run("process kill", func(t *testing.T) {
		// Pebble hands unsynced log records to the operating system only
		// in whole 32 KiB blocks, or at the next sync: a kill loses the
		// tail still in its buffer. How much depends on timing; that what
		// is kept is a prefix does not.
		kept := check(t, vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(0, 1))})
		t.Logf("a process kill keeps %d of %d writes", kept, n)
	})
	t.Run("only synced data", func(t *testing.T) {
		if kept := check(t, vfs.CrashCloneCfg{}); kept != durableUpTo {
			t.Fatalf("%d writes kept, want the %d durable ones: unsynced writes reached the disk", kept, durableUpTo)
		}
	})
	t.Run("part of the unsynced data", func(t *testing.T) {
		seen := map[int]bool{}
		for seed := range uint64(40) {
			kept := check(t, vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(seed, 1))})
			seen[kept] = true
		}
		// Not a property of the store: a check that the series spans
		// blocks, so that prefixes of several lengths were tried.
		if len(seen) < 2 {
			t.Fatalf("every power loss kept the same prefix %v: the test tries too little", seen)
		}
		t.Logf("prefix lengths kept: %v", seen)
	})
	t.Run("a later durable write", func(t *testing.T) {
		if err := s.Create(ctx, txAt("z", 0, tccd.StateActive), true); err != nil {
			t.Fatal(err)
		}
		if kept := check(t, vfs.CrashCloneCfg{}); kept != n {
			t.Fatalf("%d of %d writes kept: a durable write did not make the earlier ones durable", kept, n)
		}
	})
}
