package participant_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd/participant"
)

// kit is a participant with an arbitrary application, over real HTTP.
type kit struct {
	h *harness // only its HTTP helpers and clock are used
	p *participant.Participant
}

// newKit serves a participant whose Try, Confirm and Cancel are given, on
// space sp, with the kit's table migrated.
func newKit(t *testing.T, sp space, try participant.TryFunc, confirm, cancel participant.SettleFunc) *kit {
	t.Helper()
	ctx := context.Background()
	table := sp.q("tcc_reservation")
	if err := participant.Migrate(ctx, sp.db, sp.d, table); err != nil {
		t.Fatal(err)
	}
	clock := newClock()
	p, err := participant.New(ctx, participant.Config{
		DB: sp.db, Dialect: sp.d, Table: table, Try: try, Confirm: confirm, Cancel: cancel,
		DefaultTTL: time.Minute, Now: clock.Now, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return &kit{h: &harness{t: t, sp: sp, clock: clock, p: p, srv: srv, table: table}, p: p}
}

// runConcurrently runs fn(i) for i in [0, n) at once and waits for all.
func runConcurrently(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}

func TestStateItem(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *server) {
		sp := s.newSpace(t)
		ctx := context.Background()
		seats := participant.StateItem{Dialect: sp.d, Table: sp.q("seats"), IDColumn: "id", StateColumn: "state", ReservationColumn: "reservation"}
		if err := seats.Validate(); err != nil {
			t.Fatal(err)
		}
		const nSeats = 6
		sp.exec(t, "CREATE TABLE "+seats.Table+" (id INTEGER NOT NULL PRIMARY KEY, state VARCHAR(16) NOT NULL, reservation VARCHAR(128) NULL)")
		for i := 1; i <= nSeats; i++ {
			sp.exec(t, fmt.Sprintf("INSERT INTO %s (id, state) VALUES (%d, 'AVAILABLE')", seats.Table, i))
		}
		k := newKit(t, sp, func(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
			var items []any
			for _, v := range r.URL.Query()["seat"] {
				n, err := strconv.Atoi(v)
				if err != nil {
					return participant.Reservation{}, participant.Rejectf(http.StatusBadRequest, "bad seat %q", v)
				}
				items = append(items, n)
			}
			return participant.Reservation{}, seats.Reserve(ctx, tx, id, items...)
		}, seats.Confirm, seats.Cancel)
		h := k.h

		// What the test knows: the seats of each reservation made, and
		// which reservations were confirmed.
		var mu sync.Mutex
		held := map[string][]int{}
		confirmed := map[string]bool{}

		tryRandom := func(rng *rand.Rand) {
			a, b := 1+rng.IntN(nSeats), 1+rng.IntN(nSeats)
			query := fmt.Sprintf("?seat=%d", a)
			want := []int{a}
			if a != b && rng.IntN(2) == 0 {
				query += fmt.Sprintf("&seat=%d", b)
				want = append(want, b)
			}
			var l tryLink
			for range 20 {
				if l = h.try(query, ""); l.status != http.StatusServiceUnavailable {
					break
				}
			}
			switch l.status {
			case http.StatusCreated:
				mu.Lock()
				held[l.id] = want
				mu.Unlock()
			case http.StatusConflict:
			default:
				t.Errorf("try %s: %d %s", query, l.status, l.body)
			}
		}
		check := func(phase string) {
			t.Helper()
			rows, err := sp.db.QueryContext(ctx, "SELECT id, state, reservation FROM "+seats.Table+" ORDER BY id")
			if err != nil {
				t.Fatal(err)
			}
			type seat struct {
				state string
				res   sql.NullString
			}
			got := map[int]seat{}
			for rows.Next() {
				var id int
				var st seat
				if err := rows.Scan(&id, &st.state, &st.res); err != nil {
					t.Fatal(err)
				}
				got[id] = st
			}
			rows.Close()
			mu.Lock()
			defer mu.Unlock()
			for id, st := range got {
				switch st.state {
				case "AVAILABLE":
					if st.res.Valid {
						t.Errorf("%s: seat %d available but held by %s", phase, id, st.res.String)
					}
				case "RESERVED", "SOLD":
					want := participant.Tried
					if st.state == "SOLD" {
						want = participant.Confirmed
					}
					if rec := h.record(st.res.String); rec.State != want {
						t.Errorf("%s: seat %d %s by %q whose reservation is %q", phase, id, st.state, st.res.String, rec.State)
					}
				default:
					t.Errorf("%s: seat %d in state %q", phase, id, st.state)
				}
			}
			// No seat sold twice: the seats of the confirmed reservations
			// are distinct, and each is SOLD by its reservation.
			soldBy := map[int]string{}
			for res := range confirmed {
				for _, s := range held[res] {
					if other, dup := soldBy[s]; dup {
						t.Errorf("%s: seat %d sold to %s and %s", phase, s, other, res)
					}
					soldBy[s] = res
					if st := got[s]; st.state != "SOLD" || st.res.String != res {
						t.Errorf("%s: seat %d of confirmed %s is %s/%s", phase, s, res, st.state, st.res.String)
					}
				}
			}
		}

		runConcurrently(16, func(i int) { tryRandom(rand.New(rand.NewPCG(uint64(i), 1))) })
		check("after the first tries")
		if len(held) == 0 {
			t.Fatal("no try succeeded")
		}

		// Confirm a third, cancel a third while new tries race for the
		// seats; leave the rest to expire.
		var ids []string
		for id := range held {
			ids = append(ids, id)
		}
		runConcurrently(len(ids)+8, func(i int) {
			if i >= len(ids) {
				tryRandom(rand.New(rand.NewPCG(uint64(i), 2)))
				return
			}
			id := ids[i]
			switch i % 3 {
			case 0:
				if a := retryBusy(h, func() answer { return h.confirm(h.uriOf(id)) }); a.status == http.StatusNoContent {
					mu.Lock()
					confirmed[id] = true
					mu.Unlock()
				} else {
					t.Errorf("confirm %s: %d %s", id, a.status, a.body)
				}
			case 1:
				if a := retryBusy(h, func() answer { return h.cancel(h.uriOf(id)) }); a.status != http.StatusNoContent {
					t.Errorf("cancel %s: %d %s", id, a.status, a.body)
				}
			}
		})
		check("after confirms and cancels")

		h.clock.Advance(2 * time.Minute)
		if _, err := k.p.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		check("after the sweep")
		var reserved int
		if err := sp.db.QueryRow("SELECT COUNT(*) FROM " + seats.Table + " WHERE state = 'RESERVED'").Scan(&reserved); err != nil || reserved != 0 {
			t.Errorf("%d seats still reserved after the sweep (%v)", reserved, err)
		}
		for res := range confirmed {
			a := h.try("?seat="+strconv.Itoa(held[res][0]), "")
			wantStatus(t, "try a sold seat", a.answer, http.StatusConflict)
			break
		}
		wantStatus(t, "try no seat", h.try("", "").answer, http.StatusBadRequest)
	})
}

func TestQuantity(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *server) {
		sp := s.newSpace(t)
		ctx := context.Background()
		stock := participant.Quantity{
			Dialect: sp.d, Table: sp.q("stock"), KeyColumn: "sku", AvailableColumn: "available",
			HoldTable: sp.q("holds"), HoldIDColumn: "reservation", HoldKeyColumn: "sku", HoldQuantityColumn: "quantity",
		}
		if err := stock.Validate(); err != nil {
			t.Fatal(err)
		}
		initial := map[string]int64{"apple": 50, "pear": 30}
		sp.exec(t,
			"CREATE TABLE "+stock.Table+" (sku VARCHAR(32) NOT NULL PRIMARY KEY, available BIGINT NOT NULL)",
			"CREATE TABLE "+stock.HoldTable+" (reservation VARCHAR(128) NOT NULL, sku VARCHAR(32) NOT NULL, quantity BIGINT NOT NULL, PRIMARY KEY (reservation, sku))",
			"INSERT INTO "+stock.Table+" (sku, available) VALUES ('apple', 50), ('pear', 30)",
		)
		// ?take=apple:3&take=pear:2
		k := newKit(t, sp, func(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
			for _, v := range r.URL.Query()["take"] {
				sku, n, _ := strings.Cut(v, ":")
				q, err := strconv.ParseInt(n, 10, 64)
				if err != nil {
					return participant.Reservation{}, participant.Rejectf(http.StatusBadRequest, "bad quantity %q", n)
				}
				if err := stock.Reserve(ctx, tx, id, sku, q); err != nil {
					return participant.Reservation{}, err
				}
			}
			return participant.Reservation{}, nil
		}, stock.Confirm, stock.Cancel)
		h := k.h

		var mu sync.Mutex
		asked := map[string]map[string]int64{}
		spent := map[string]int64{}

		tryRandom := func(rng *rand.Rand) {
			want := map[string]int64{"apple": 1 + rng.Int64N(12)}
			query := fmt.Sprintf("?take=apple:%d", want["apple"])
			if rng.IntN(2) == 0 {
				want["pear"] = 1 + rng.Int64N(8)
				query += fmt.Sprintf("&take=pear:%d", want["pear"])
			}
			l := h.try(query, "")
			for range 20 {
				if l.status != http.StatusServiceUnavailable {
					break
				}
				l = h.try(query, "")
			}
			switch l.status {
			case http.StatusCreated:
				mu.Lock()
				asked[l.id] = want
				mu.Unlock()
			case http.StatusConflict:
			default:
				t.Errorf("try %s: %d %s", query, l.status, l.body)
			}
		}
		check := func(phase string) {
			t.Helper()
			mu.Lock()
			defer mu.Unlock()
			for sku, total := range initial {
				var avail, holds int64
				if err := sp.db.QueryRow(sp.d.Rebind("SELECT available FROM "+stock.Table+" WHERE sku = ?"), sku).Scan(&avail); err != nil {
					t.Fatal(err)
				}
				if err := sp.db.QueryRow(sp.d.Rebind("SELECT COALESCE(SUM(quantity), 0) FROM "+stock.HoldTable+" WHERE sku = ?"), sku).Scan(&holds); err != nil {
					t.Fatal(err)
				}
				if avail < 0 || avail+holds+spent[sku] != total {
					t.Errorf("%s: %s available %d + held %d + spent %d != %d", phase, sku, avail, holds, spent[sku], total)
				}
			}
			// Holds exist exactly for the reservations still tried.
			for id, want := range asked {
				rec := h.record(id)
				for sku, n := range want {
					var got int64
					err := sp.db.QueryRow(sp.d.Rebind("SELECT quantity FROM "+stock.HoldTable+" WHERE reservation = ? AND sku = ?"), id, sku).Scan(&got)
					if rec.State == participant.Tried && got != n || rec.State != participant.Tried && err != sql.ErrNoRows {
						t.Errorf("%s: reservation %s (%s) holds %d of %s, asked %d (%v)", phase, id, rec.State, got, sku, n, err)
					}
				}
			}
		}

		runConcurrently(16, func(i int) { tryRandom(rand.New(rand.NewPCG(uint64(i), 3))) })
		check("after the first tries")
		var ids []string
		for id := range asked {
			ids = append(ids, id)
		}
		if len(ids) < 2 {
			t.Fatalf("only %d tries succeeded", len(ids))
		}
		runConcurrently(len(ids)+8, func(i int) {
			if i >= len(ids) {
				tryRandom(rand.New(rand.NewPCG(uint64(i), 4)))
				return
			}
			id := ids[i]
			switch i % 3 {
			case 0:
				if a := retryBusy(h, func() answer { return h.confirm(h.uriOf(id)) }); a.status == http.StatusNoContent {
					mu.Lock()
					for sku, n := range asked[id] {
						spent[sku] += n
					}
					mu.Unlock()
				} else {
					t.Errorf("confirm %s: %d %s", id, a.status, a.body)
				}
			case 1:
				if a := retryBusy(h, func() answer { return h.cancel(h.uriOf(id)) }); a.status != http.StatusNoContent {
					t.Errorf("cancel %s: %d %s", id, a.status, a.body)
				}
			}
		})
		check("after confirms and cancels")
		h.clock.Advance(2 * time.Minute)
		if _, err := k.p.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		check("after the sweep")

		// Rejections.
		for _, c := range []struct {
			query  string
			status int
			detail string
		}{
			{"?take=apple:0", http.StatusBadRequest, "positive"},
			{"?take=plum:1", http.StatusNotFound, "no stock plum"},
			{"?take=apple:1000", http.StatusConflict, "available, 1000 asked"},
			{"?take=apple:1&take=pear:1000", http.StatusConflict, "of pear available"},
		} {
			a := h.try(c.query, "")
			wantStatus(t, c.query, a.answer, c.status)
			if p := a.problem(t); !strings.Contains(p.Detail, c.detail) {
				t.Errorf("%s: detail %q", c.query, p.Detail)
			}
		}
		check("after the rejections") // the apple of the last one was given back by the rollback
	})
}
