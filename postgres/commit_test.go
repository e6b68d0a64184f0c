package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/internal/pgtest"
)

func newTx(id string, state tccd.State) *tccd.Transaction {
	now := time.Now()
	return &tccd.Transaction{
		ID: id, Protocol: tccd.ProtocolAtomikos, State: state, CreatedAt: now, UpdatedAt: now,
		Participants: []tccd.Participant{{URI: "http://127.0.0.1:9/" + id, Expires: now.Add(time.Minute), State: tccd.ParticipantPending}},
	}
}

// waitFor polls cond until it holds, failing t after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// queueBehindLock opens a store on a fresh database, runs the setup
// statements, and gets every committer stuck: another connection holds
// the row lock of a transaction each committer is updating. It returns
// the store, the lock's transaction (roll it back to let the committers
// go) and the stuck updates' results.
func queueBehindLock(t *testing.T, committers int, setup ...string) (*Store, pgx.Tx, <-chan error) {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	s, err := Open(ctx, dsn, Options{Committers: committers, MaxBatch: 128})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, sql := range setup {
		pgtest.Exec(t, dsn, sql)
	}
	blocker := newTx("blocker", tccd.StateActive)
	if err := s.Create(ctx, blocker, true); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	lock, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, "SELECT 1 FROM tccd_transactions WHERE id = 'blocker' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	// One at a time: a committer takes every write waiting.
	stuck := make(chan error, committers)
	for i := 1; i <= committers; i++ {
		go func() {
			tx := blocker.Clone()
			tx.Name = "stuck"
			stuck <- s.Update(ctx, tx, true)
		}()
		waitFor(t, fmt.Sprintf("%d committers wait for the row lock", i), func() bool {
			var n int
			// Not on conn: in its transaction the statistics views are a snapshot.
			err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
			return err == nil && n == i
		})
	}
	return s, lock, stuck
}

// TestGroupCommit: writes that queue while the committers are busy go
// into one transaction, each with its own result — a duplicate id, a
// stale version or an illegal transition fails alone.
func TestGroupCommit(t *testing.T) {
	const committers, n = 2, 40
	// The rows the duplicates and the stale updates aim at.
	s, lock, stuck := queueBehindLock(t, committers, `INSERT INTO tccd_transactions (id, state, created_at, created_ns, version, record)
		SELECT 'old-' || i, 'active', now(), i, 1, '{}' FROM generate_series(0, 9) i`)
	ctx := context.Background()

	type result struct {
		kind string
		err  error
	}
	results := make(chan result, n)
	for i := 0; i < n; i++ {
		var kind string
		var do func() error
		switch i % 4 {
		case 0, 1:
			kind = "new"
			do = func() error { return s.Create(ctx, newTx(fmt.Sprintf("new-%02d", i), tccd.StateConfirming), i%2 == 0) }
		case 2:
			kind = "duplicate"
			do = func() error { return s.Create(ctx, newTx(fmt.Sprintf("old-%d", i%10), tccd.StateConfirming), true) }
		default:
			kind = "stale"
			do = func() error {
				tx := newTx(fmt.Sprintf("old-%d", i%10), tccd.StateConfirming)
				tx.Version = 5
				return s.Update(ctx, tx, true)
			}
		}
		go func() { results <- result{kind, do()} }()
	}
	waitFor(t, "every write is queued", func() bool { return len(s.writes) == n })
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	won := 0
	for i := 0; i < committers; i++ {
		if err := <-stuck; err == nil {
			won++
		} else if tccd.ErrorCode(err) != tccd.EConflict {
			t.Errorf("stuck update: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d of the updates from one version won, want 1", won)
	}
	for i := 0; i < n; i++ {
		r := <-results
		want := tccd.EConflict
		if r.kind == "new" {
			want = ""
		}
		if got := tccd.ErrorCode(r.err); got != want {
			t.Errorf("%s write: %v, want code %q", r.kind, r.err, want)
		}
	}
	// The new rows share commits: at most one transaction per committer.
	var xids int
	err := s.pool.QueryRow(ctx, "SELECT count(DISTINCT xmin::text) FROM tccd_transactions WHERE id LIKE 'new-%'").Scan(&xids)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d new transactions written in %d commits", n/2, xids)
	if xids > committers {
		t.Errorf("%d new transactions took %d commits, want at most %d", n/2, xids, committers)
	}
}

// TestGroupCommitStatementFails: a statement PostgreSQL refuses rolls its
// batch back; the other writes of the batch are made all the same, and
// only the refused one fails.
func TestGroupCommitStatementFails(t *testing.T) {
	s, lock, stuck := queueBehindLock(t, 1,
		`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.id = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF;
			RETURN NEW;
		END $$`,
		`CREATE TRIGGER refuse_poison BEFORE INSERT ON tccd_transactions
		FOR EACH ROW EXECUTE FUNCTION refuse_poison()`)
	ctx := context.Background()
	const n = 10
	errs := make(map[string]chan error)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("good-%d", i)
		if i == n/2 {
			id = "poison"
		}
		ch := make(chan error, 1)
		errs[id] = ch
		go func() { ch <- s.Create(ctx, newTx(id, tccd.StateCancelling), true) }()
	}
	waitFor(t, "every write is queued", func() bool { return len(s.writes) == n })
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	<-stuck
	for id, ch := range errs {
		err := <-ch
		switch {
		case id == "poison" && (err == nil || tccd.ErrorCode(err) != tccd.EInternal):
			t.Errorf("poison: %v, want a store error", err)
		case id != "poison" && err != nil:
			t.Errorf("%s: %v", id, err)
		}
	}
	var good int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM tccd_transactions WHERE id LIKE 'good-%'").Scan(&good); err != nil || good != n-1 {
		t.Fatalf("%d good rows (%v), want %d", good, err, n-1)
	}
}

// TestTwoStoresOneDatabase: two stores on one database — two nodes —
// update one transaction at once; the compare-and-set is the database's,
// so every version is won once across both.
func TestTwoStoresOneDatabase(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	var stores [2]*Store
	for i := range stores {
		s, err := Open(ctx, dsn, Options{MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	tx := newTx("shared", tccd.StateActive)
	if err := stores[0].Create(ctx, tx, true); err != nil {
		t.Fatal(err)
	}
	if err := stores[1].Create(ctx, newTx("shared", tccd.StateActive), true); tccd.ErrorCode(err) != tccd.EConflict {
		t.Fatalf("second node's Create of the same id: %v, want conflict", err)
	}
	const writers, wins = 6, 5
	var mu sync.Mutex
	byVersion := map[uint64]int{}
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(s *Store) {
			defer wg.Done()
			for won := 0; won < wins; {
				cur, err := s.Get(ctx, "shared")
				if err != nil {
					t.Error(err)
					return
				}
				cur.Participants[0].Attempts++
				if err := s.Update(ctx, cur, true); err == nil {
					won++
					mu.Lock()
					byVersion[cur.Version]++
					mu.Unlock()
				} else if tccd.ErrorCode(err) != tccd.EConflict {
					t.Error(err)
					return
				}
			}
		}(stores[g%2])
	}
	wg.Wait()
	for v := uint64(2); v <= 1+writers*wins; v++ {
		if byVersion[v] != 1 {
			t.Errorf("version %d won %d times", v, byVersion[v])
		}
	}
	got, err := stores[1].Get(ctx, "shared")
	if err != nil || got.Participants[0].Attempts != writers*wins {
		t.Fatalf("attempts %v (%v), want %d", got, err, writers*wins)
	}
}
