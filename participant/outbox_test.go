package participant_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd/participant"
)

// pubCall is one call of Publish.
type pubCall struct {
	subject, id, data string
	headers           map[string][]string
}

// fakePublisher is a broker in memory: it stores a message unless it has
// stored its id already (a duplicate window without end), and answers a
// repeat as success, as JetStream does. fail, when set, may refuse a call
// before anything is stored.
type fakePublisher struct {
	mu     sync.Mutex
	calls  []pubCall
	stored []pubCall
	fail   func(c pubCall) error
}

func (f *fakePublisher) Publish(ctx context.Context, subject, msgID string, data []byte, headers map[string][]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := pubCall{subject: subject, id: msgID, data: string(data), headers: headers}
	f.calls = append(f.calls, c)
	if f.fail != nil {
		if err := f.fail(c); err != nil {
			return err
		}
	}
	if !slices.ContainsFunc(f.stored, func(s pubCall) bool { return s.id == msgID }) {
		f.stored = append(f.stored, c)
	}
	return nil
}

// ids returns the ids of the calls and of the stored messages.
func (f *fakePublisher) ids() (calls, stored []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		calls = append(calls, c.id)
	}
	for _, c := range f.stored {
		stored = append(stored, c.id)
	}
	return calls, stored
}

func (f *fakePublisher) setFail(fn func(c pubCall) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fn
}

// brokerError is a publisher's error that says whether retrying helps,
// as package nats's does.
type brokerError struct{ temporary bool }

func (e brokerError) Error() string   { return fmt.Sprintf("broker error (temporary %v)", e.temporary) }
func (e brokerError) Temporary() bool { return e.temporary }

// obKit is a harness whose participant has an outbox over a fake broker.
// Its try adds one message per ?msg=<subject>, with data
// "<subject>#<n>" and a header X-Seq: n.
type obKit struct {
	*harness
	ob  *participant.Outbox
	pub *fakePublisher
	cfg participant.OutboxConfig
}

func newOutboxKit(t *testing.T, s *server, tweak ...func(*participant.OutboxConfig)) *obKit {
	t.Helper()
	k := &obKit{pub: &fakePublisher{}}
	k.harness = newHarness(t, s, func(cfg *participant.Config) {
		k.cfg = participant.OutboxConfig{DB: cfg.DB, Dialect: cfg.Dialect, Table: cfg.Table, Publisher: k.pub,
			RetryMin: time.Second, RetryMax: 8 * time.Second, Now: cfg.Now, Logger: cfg.Logger}
		for _, f := range tweak {
			f(&k.cfg)
		}
		ob, err := participant.NewOutbox(context.Background(), k.cfg)
		if err != nil {
			t.Fatal(err)
		}
		k.ob, cfg.Outbox = ob, ob
		try := cfg.Try
		// The messages first, so that a try failing after them (?fail=1)
		// shows they roll back with it.
		cfg.Try = func(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
			for i, subject := range r.URL.Query()["msg"] {
				n := strconv.Itoa(i + 1)
				msg := participant.Message{Subject: subject, Data: []byte(subject + "#" + n), Headers: map[string][]string{"X-Seq": {n}}}
				if err := ob.Add(ctx, tx, id, msg); err != nil {
					return participant.Reservation{}, err
				}
			}
			return try(ctx, tx, id, r)
		}
	})
	return k
}

// relay makes one relay pass and returns how many it published.
func (k *obKit) relay(ob *participant.Outbox) (int, error) {
	k.t.Helper()
	return ob.Relay(context.Background())
}

// mustRelay makes one relay pass that must succeed and publish want.
func (k *obKit) mustRelay(want int) {
	k.t.Helper()
	n, err := k.relay(k.ob)
	if err != nil || n != want {
		k.t.Fatalf("relay: published %d (%v), want %d", n, err, want)
	}
}

// messages reads the outbox rows of reservation id.
func (k *obKit) messages(id string) []participant.OutboxMessage {
	k.t.Helper()
	ms, err := k.ob.Messages(context.Background(), id)
	if err != nil {
		k.t.Fatal(err)
	}
	return ms
}

// states are the states of reservation id's messages, in order.
func (k *obKit) states(id string) []participant.MessageState {
	k.t.Helper()
	var out []participant.MessageState
	for _, m := range k.messages(id) {
		out = append(out, m.State)
	}
	return out
}

// otherRelay is another relay (as in another process) over the same
// tables, publishing through pub.
func (k *obKit) otherRelay(pub participant.Publisher) *participant.Outbox {
	k.t.Helper()
	cfg := k.cfg
	cfg.Publisher = pub
	ob, err := participant.NewOutbox(context.Background(), cfg)
	if err != nil {
		k.t.Fatal(err)
	}
	return ob
}

func TestOutbox(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *server)
	}{
		{"confirm publishes once, in order", testOutboxConfirm},
		{"cancel, expiry and a failed try publish nothing", testOutboxCancel},
		{"a message added by the confirm", testOutboxAddInConfirm},
		{"failed publishes are retried with back-off", testOutboxRetry},
		{"a refusal needing an operator is retried at RetryMax", testOutboxPermanent},
		{"relays in parallel publish each message once", testOutboxConcurrentRelays},
		{"a pass goes past a full page", testOutboxPages},
		{"a lease keeps other relays off until it runs out", testOutboxLease},
		{"Add refuses", testOutboxAddRefusals},
		{"cleanup of published rows", testOutboxCleanup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { forEachBackend(t, tt.fn) })
	}
}

func testOutboxConfirm(t *testing.T, s *server) {
	k := newOutboxKit(t, s, func(c *participant.OutboxConfig) { c.IDPrefix = "stock/" })
	l := k.mustTry("?msg=order.placed&msg=order.audit", "")
	if got := k.states(l.id); !slices.Equal(got, []participant.MessageState{participant.MessageHeld, participant.MessageHeld}) {
		t.Fatalf("after the try: %v, want two held messages", got)
	}
	k.mustRelay(0) // held messages are not published
	wantStatus(t, "confirm", k.confirm(l.uri), http.StatusNoContent)
	if got := k.states(l.id); !slices.Equal(got, []participant.MessageState{participant.MessageDue, participant.MessageDue}) {
		t.Fatalf("after the confirm: %v, want two due messages", got)
	}
	k.mustRelay(2)
	wantStatus(t, "confirm again", k.confirm(l.uri), http.StatusNoContent)
	k.mustRelay(0)
	calls, stored := k.pub.ids()
	want := []string{"stock/" + l.id + "/1", "stock/" + l.id + "/2"}
	if !slices.Equal(calls, want) || !slices.Equal(stored, want) {
		t.Fatalf("published %v (stored %v), want %v", calls, stored, want)
	}
	for i, c := range k.pub.stored {
		n := strconv.Itoa(i + 1)
		subject := []string{"order.placed", "order.audit"}[i]
		if c.subject != subject || c.data != subject+"#"+n || !slices.Equal(c.headers["X-Seq"], []string{n}) {
			t.Errorf("message %d: %+v", i+1, c)
		}
	}
	for _, m := range k.messages(l.id) {
		if m.State != participant.MessagePublished || m.Published.IsZero() || m.Attempts != 0 || m.ID != "stock/"+l.id+"/"+strconv.Itoa(m.N) {
			t.Errorf("row after publishing: %+v", m)
		}
	}
}

func testOutboxCancel(t *testing.T, s *server) {
	k := newOutboxKit(t, s)
	cancelled := k.mustTry("?msg=order.placed", "")
	expired := k.mustTry("?msg=order.placed&ttl=30s", "")
	live := k.mustTry("?msg=order.placed", "")
	// A try that fails after adding its message rolls the message back.
	failed := k.try("?msg=order.placed&fail=1", "")
	wantStatus(t, "failing try", failed.answer, http.StatusInternalServerError)

	wantStatus(t, "cancel", k.cancel(cancelled.uri), http.StatusNoContent)
	k.clock.Advance(45 * time.Second)
	if n, err := k.p.Sweep(context.Background()); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	k.mustRelay(0)
	for _, id := range []string{cancelled.id, expired.id} {
		if ms := k.messages(id); len(ms) != 0 {
			t.Errorf("reservation %s (%s) keeps messages: %+v", id, k.record(id).State, ms)
		}
	}
	// A cancel that fails keeps the message held, for the retry.
	k.app.failCancel.Store(1)
	wantStatus(t, "failing cancel", k.cancel(live.uri), http.StatusInternalServerError)
	if got := k.states(live.id); !slices.Equal(got, []participant.MessageState{participant.MessageHeld}) {
		t.Fatalf("after a failed cancel: %v", got)
	}
	wantStatus(t, "cancel again", k.cancel(live.uri), http.StatusNoContent)
	k.mustRelay(0)
	if calls, _ := k.pub.ids(); len(calls) != 0 {
		t.Fatalf("published %v", calls)
	}
	var rows int
	if err := k.sp.db.QueryRow("SELECT COUNT(*) FROM " + k.table + participant.OutboxSuffix).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("the outbox holds %d rows (%v), want none", rows, err)
	}
}

func testOutboxAddInConfirm(t *testing.T, s *server) {
	// A participant whose confirm adds a message: it is due at once.
	sp := s.newSpace(t)
	app := newBizApp(t, sp)
	ctx := context.Background()
	table := sp.q("tcc_reservation")
	if err := participant.Migrate(ctx, sp.db, sp.d, table); err != nil {
		t.Fatal(err)
	}
	pub, clock := &fakePublisher{}, newClock()
	ob, err := participant.NewOutbox(ctx, participant.OutboxConfig{DB: sp.db, Dialect: sp.d, Table: table, Publisher: pub, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	p, err := participant.New(ctx, participant.Config{DB: sp.db, Dialect: sp.d, Table: table, Outbox: ob, Now: clock.Now, Logger: testLogger(t),
		Try: app.try, Cancel: app.cancel,
		Confirm: func(ctx context.Context, tx *sql.Tx, id string) error {
			if err := app.confirm(ctx, tx, id); err != nil {
				return err
			}
			return ob.Add(ctx, tx, id, participant.Message{Subject: "order.confirmed", Data: []byte(id)})
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	h := &harness{t: t, sp: sp, clock: clock, app: app, p: p, srv: srv, table: table}
	l := h.mustTry("", "")
	wantStatus(t, "confirm", h.confirm(l.uri), http.StatusNoContent)
	if n, err := ob.Relay(ctx); err != nil || n != 1 {
		t.Fatalf("relay: %d, %v", n, err)
	}
	if _, stored := pub.ids(); !slices.Equal(stored, []string{l.id + "/1"}) {
		t.Fatalf("stored %v", stored)
	}
}

func testOutboxRetry(t *testing.T, s *server) {
	k := newOutboxKit(t, s)
	a := k.mustTry("?msg=a.one&msg=a.two", "")
	b := k.mustTry("?msg=b.one", "")
	for _, l := range []tryLink{a, b} {
		wantStatus(t, "confirm", k.confirm(l.uri), http.StatusNoContent)
	}
	// a/1 fails twice; b is not held up by it.
	failures := 0
	k.pub.setFail(func(c pubCall) error {
		if c.id == a.id+"/1" && failures < 2 {
			failures++
			return brokerError{temporary: true}
		}
		return nil
	})
	n, err := k.relay(k.ob)
	if n != 1 || err == nil || !strings.Contains(err.Error(), a.id+"/1") {
		t.Fatalf("relay with a/1 failing: published %d, %v", n, err)
	}
	ms := k.messages(a.id)
	if ms[0].Attempts != 1 || ms[0].LastError == "" || ms[0].State != participant.MessageDue || ms[1].State != participant.MessageDue {
		t.Fatalf("after one failure: %+v", ms)
	}
	// The back-off after the first failure is within [RetryMin/2, RetryMin],
	// and a/2 waits with a/1, keeping their order.
	wait := ms[0].Next.Sub(k.clock.Now())
	if wait < 500*time.Millisecond || wait > time.Second || !ms[1].Next.Equal(ms[0].Next) {
		t.Fatalf("back-off %v (a/2 next %v, a/1 next %v)", wait, ms[1].Next, ms[0].Next)
	}
	k.mustRelay(0) // not yet
	k.clock.Advance(time.Second)
	if n, err := k.relay(k.ob); n != 0 || err == nil {
		t.Fatalf("second attempt: %d, %v", n, err)
	}
	ms = k.messages(a.id)
	if wait := ms[0].Next.Sub(k.clock.Now()); ms[0].Attempts != 2 || wait < time.Second || wait > 2*time.Second {
		t.Fatalf("after two failures: attempts %d, back-off %v", ms[0].Attempts, wait)
	}
	k.clock.Advance(2 * time.Second)
	k.mustRelay(2)
	calls, stored := k.pub.ids()
	want := []string{b.id + "/1", a.id + "/1", a.id + "/2"}
	if !slices.Equal(stored, want) {
		t.Fatalf("stored %v, want %v", stored, want)
	}
	if len(calls) != 5 {
		t.Fatalf("calls %v: want 5 (b/1, a/1 three times, a/2)", calls)
	}
	if idx := slices.Index(calls, a.id+"/2"); idx < slices.Index(calls, a.id+"/1") || idx != len(calls)-1 {
		t.Fatalf("a/2 was published before a/1 was stored: %v", calls)
	}
}

func testOutboxPermanent(t *testing.T, s *server) {
	k := newOutboxKit(t, s)
	l := k.mustTry("?msg=nowhere", "")
	wantStatus(t, "confirm", k.confirm(l.uri), http.StatusNoContent)
	k.pub.setFail(func(pubCall) error { return fmt.Errorf("wrapped: %w", brokerError{temporary: false}) })
	if n, err := k.relay(k.ob); n != 0 || err == nil {
		t.Fatalf("relay: %d, %v", n, err)
	}
	ms := k.messages(l.id)
	if wait := ms[0].Next.Sub(k.clock.Now()); wait < 4*time.Second || wait > 8*time.Second {
		t.Fatalf("back-off after a permanent refusal %v, want within [RetryMax/2, RetryMax]", wait)
	}
	// Once the operator fixed it, the message goes out.
	k.pub.setFail(nil)
	k.clock.Advance(8 * time.Second)
	k.mustRelay(1)
}

func testOutboxConcurrentRelays(t *testing.T, s *server) {
	k := newOutboxKit(t, s)
	const reservations = 24
	var want []string
	for range reservations {
		l := k.mustTry("?msg=x.one&msg=x.two", "")
		wantStatus(t, "confirm", k.confirm(l.uri), http.StatusNoContent)
		want = append(want, l.id+"/1", l.id+"/2")
	}
	relays := []*participant.Outbox{k.ob}
	for range 3 {
		relays = append(relays, k.otherRelay(k.pub))
	}
	var mu sync.Mutex
	total := 0
	runConcurrently(len(relays), func(i int) {
		// On SQLite the relays take turns at the write lock; a pass may
		// meet a busy database and leave work to the next.
		for range 20 {
			n, err := relays[i].Relay(context.Background())
			mu.Lock()
			total += n
			mu.Unlock()
			if err == nil {
				return
			}
			t.Logf("relay %d: %v", i, err)
		}
	})
	calls, stored := k.pub.ids()
	slices.Sort(want)
	slices.Sort(calls)
	slices.Sort(stored)
	// The clock stands still, so no lease ran out: each message was
	// published by exactly one relay.
	if !slices.Equal(calls, want) || !slices.Equal(stored, want) || total != len(want) {
		t.Fatalf("%d published, calls %d, stored %d; want each of %d once", total, len(calls), len(stored), len(want))
	}
}

func testOutboxPages(t *testing.T, s *server) {
	k := newOutboxKit(t, s, func(c *participant.OutboxConfig) { c.RelayBatch = 3 })
	for range 4 {
		l := k.mustTry("?msg=x.one&msg=x.two", "")
		wantStatus(t, "confirm", k.confirm(l.uri), http.StatusNoContent)
	}
	k.mustRelay(8)
}

// blockingPublisher stores through inner, then signals the id on stored
// and waits for release before answering: a relay stuck (or dead) after
// the broker stored its message.
type blockingPublisher struct {
	inner   *fakePublisher
	stored  chan string
	release chan struct{}
}

func (b *blockingPublisher) Publish(ctx context.Context, subject, msgID string, data []byte, headers map[string][]string) error {
	if err := b.inner.Publish(ctx, subject, msgID, data, headers); err != nil {
		return err
	}
	b.stored <- msgID
	<-b.release
	return nil
}

func testOutboxLease(t *testing.T, s *server) {
	k := newOutboxKit(t, s, func(c *participant.OutboxConfig) { c.Lease, c.PublishTimeout = 30*time.Second, 10*time.Second })
	l := k.mustTry("?msg=x.one", "")
	wantStatus(t, "confirm", k.confirm(l.uri), http.StatusNoContent)
	stuck := &blockingPublisher{inner: k.pub, stored: make(chan string, 1), release: make(chan struct{})}
	slow := k.otherRelay(stuck)
	done := make(chan error, 1)
	go func() { _, err := slow.Relay(context.Background()); done <- err }()
	if id := <-stuck.stored; id != l.id+"/1" {
		t.Fatalf("stored %s", id)
	}
	// The message is stored but not marked: the slow relay's lease keeps
	// the others off it…
	k.mustRelay(0)
	k.clock.Advance(29 * time.Second)
	k.mustRelay(0)
	// …until it runs out: then another publishes again, and the broker
	// drops the repeat.
	k.clock.Advance(time.Second)
	k.mustRelay(1)
	close(stuck.release)
	if err := <-done; err != nil {
		t.Fatalf("the slow relay, answered at last: %v", err)
	}
	calls, stored := k.pub.ids()
	if len(calls) != 2 || !slices.Equal(stored, []string{l.id + "/1"}) {
		t.Fatalf("calls %v, stored %v: want two publishes of one message, stored once", calls, stored)
	}
	if got := k.states(l.id); !slices.Equal(got, []participant.MessageState{participant.MessagePublished}) {
		t.Fatalf("states %v", got)
	}
}

func testOutboxAddRefusals(t *testing.T, s *server) {
	k := newOutboxKit(t, s)
	ctx := context.Background()
	l := k.mustTry("", "")
	confirmed := k.mustTry("", "")
	wantStatus(t, "confirm", k.confirm(confirmed.uri), http.StatusNoContent)
	cancelled := k.mustTry("", "")
	wantStatus(t, "cancel", k.cancel(cancelled.uri), http.StatusNoContent)
	tests := []struct {
		name string
		id   string
		msg  participant.Message
		want string // part of the error; "" accepted
	}{
		{"tried", l.id, participant.Message{Subject: "a.b", Data: []byte("x")}, ""},
		{"confirmed: due at once", confirmed.id, participant.Message{Subject: "a.b"}, ""},
		{"cancelled", cancelled.id, participant.Message{Subject: "a.b"}, "is cancelled"},
		{"unknown reservation", "nosuchid", participant.Message{Subject: "a.b"}, "no reservation"},
		{"bad reservation id", "a/b", participant.Message{Subject: "a.b"}, "character"},
		{"empty subject", l.id, participant.Message{}, "subject"},
		{"wildcard", l.id, participant.Message{Subject: "a.*"}, "wildcard"},
		{"tail wildcard", l.id, participant.Message{Subject: "a.>"}, "wildcard"},
		{"empty token", l.id, participant.Message{Subject: "a..b"}, "empty token"},
		{"space", l.id, participant.Message{Subject: "a b"}, "white space"},
		{"long subject", l.id, participant.Message{Subject: strings.Repeat("a", 256)}, "1 to 255"},
		{"too large", l.id, participant.Message{Subject: "a.b", Data: make([]byte, participant.DefaultMaxMessage+1)}, "MaxMessage"},
		{"header name", l.id, participant.Message{Subject: "a.b", Headers: map[string][]string{"Bad Name": {"x"}}}, "header name"},
		{"header value", l.id, participant.Message{Subject: "a.b", Headers: map[string][]string{"X": {"a\r\nb"}}}, "line break"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := k.sp.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			err = k.ob.Add(ctx, tx, tt.id, tt.msg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Add: %v, want an error about %q", err, tt.want)
			}
			if err == nil {
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	if got := k.states(confirmed.id); !slices.Equal(got, []participant.MessageState{participant.MessageDue}) {
		t.Errorf("a message added to a confirmed reservation: %v, want due", got)
	}

	// An outbox that is in no participant's Config.Outbox refuses Add.
	loose := k.otherRelay(k.pub)
	tx, err := k.sp.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := loose.Add(ctx, tx, l.id, participant.Message{Subject: "a.b"}); err == nil || !strings.Contains(err.Error(), "Config.Outbox") {
		t.Fatalf("Add on a loose outbox: %v", err)
	}
}

func testOutboxCleanup(t *testing.T, s *server) {
	k := newOutboxKit(t, s)
	ctx := context.Background()
	old := k.mustTry("?msg=a.b", "")
	wantStatus(t, "confirm", k.confirm(old.uri), http.StatusNoContent)
	k.mustRelay(1)
	k.clock.Advance(time.Hour)
	young := k.mustTry("?msg=a.b", "")
	wantStatus(t, "confirm", k.confirm(young.uri), http.StatusNoContent)
	k.mustRelay(1)
	held := k.mustTry("?msg=a.b", "")
	if n, err := k.ob.Cleanup(ctx, 30*time.Minute); err != nil || n != 1 {
		t.Fatalf("cleanup: %d, %v", n, err)
	}
	for id, want := range map[string]int{old.id: 0, young.id: 1, held.id: 1} {
		if got := len(k.messages(id)); got != want {
			t.Errorf("reservation %s keeps %d messages, want %d", id, got, want)
		}
	}
	// A confirm of the old reservation again publishes nothing again.
	wantStatus(t, "confirm again", k.confirm(old.uri), http.StatusNoContent)
	k.mustRelay(0)
}

func TestOutboxConfig(t *testing.T) {
	s := openServer(t, backends[0]) // SQLite
	sp := s.newSpace(t)
	ctx := context.Background()
	if err := participant.Migrate(ctx, sp.db, sp.d, ""); err != nil {
		t.Fatal(err)
	}
	base := participant.OutboxConfig{DB: sp.db, Dialect: sp.d}
	long := strings.Repeat("t", 60)
	tests := []struct {
		name  string
		tweak func(*participant.OutboxConfig)
		want  string
	}{
		{"defaults", func(*participant.OutboxConfig) {}, ""},
		{"no DB", func(c *participant.OutboxConfig) { c.DB = nil }, "DB is required"},
		{"no dialect", func(c *participant.OutboxConfig) { c.Dialect = 0 }, "dialect"},
		{"lease within the publish timeout", func(c *participant.OutboxConfig) { c.Lease, c.PublishTimeout = time.Second, 2*time.Second }, "Lease"},
		{"RetryMax below RetryMin", func(c *participant.OutboxConfig) { c.RetryMin, c.RetryMax = time.Minute, time.Second }, "RetryMax"},
		{"negative", func(c *participant.OutboxConfig) { c.RelayEvery = -time.Second }, "negative"},
		{"prefix with space", func(c *participant.OutboxConfig) { c.IDPrefix = "a b" }, "IDPrefix"},
		{"table name too long for its outbox", func(c *participant.OutboxConfig) { c.Table = long }, "too long"},
		{"no outbox table", func(c *participant.OutboxConfig) { c.Table = "other" }, "participant.Migrate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.tweak(&cfg)
			_, err := participant.NewOutbox(ctx, cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("NewOutbox: %v, want an error about %q", err, tt.want)
			}
		})
	}

	// The outbox must be the participant's, and one participant's only.
	app := newBizApp(t, sp)
	pcfg := participant.Config{DB: sp.db, Dialect: sp.d, Try: app.try, Confirm: app.confirm, Cancel: app.cancel, Logger: testLogger(t)}
	if err := participant.Migrate(ctx, sp.db, sp.d, "other"); err != nil {
		t.Fatal(err)
	}
	other, err := participant.NewOutbox(ctx, participant.OutboxConfig{DB: sp.db, Dialect: sp.d, Table: "other"})
	if err != nil {
		t.Fatal(err)
	}
	pcfg.Outbox = other
	if _, err := participant.New(ctx, pcfg); err == nil || !strings.Contains(err.Error(), "Table") {
		t.Fatalf("New with another table's outbox: %v", err)
	}
	ob, err := participant.NewOutbox(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.Outbox = ob
	if _, err := participant.New(ctx, pcfg); err != nil {
		t.Fatal(err)
	}
	if _, err := participant.New(ctx, pcfg); err == nil || !strings.Contains(err.Error(), "another participant") {
		t.Fatalf("New with an outbox in use: %v", err)
	}
	// Without a Publisher it stores but does not relay.
	if _, err := ob.Relay(ctx); err == nil || !strings.Contains(err.Error(), "no Publisher") {
		t.Fatalf("Relay without a Publisher: %v", err)
	}
	if err := ob.Run(ctx); err == nil {
		t.Fatal("Run without a Publisher returned nil")
	}
}

func TestOutboxSchema(t *testing.T) {
	for _, d := range []participant.Dialect{participant.PostgreSQL, participant.SQLite, participant.MySQL} {
		s, err := participant.OutboxSchema(d, "app.holds")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"CREATE TABLE IF NOT EXISTS app.holds_outbox", "PRIMARY KEY (reservation, n)", "holds_outbox_due_idx", "holds_outbox_published_idx", "'published'"} {
			if !strings.Contains(s, want) {
				t.Errorf("%v: the outbox schema lacks %q:\n%s", d, want, s)
			}
		}
		if _, err := participant.OutboxSchema(d, "x; DROP TABLE y"); err == nil {
			t.Errorf("%v: bad table name accepted", d)
		}
	}
	if _, err := participant.OutboxSchema(participant.Dialect(0), ""); err == nil {
		t.Error("the zero Dialect was accepted")
	}
}

// TestOutboxRun: Participant.Run runs the relay, and returns once it has
// stopped.
func TestOutboxRun(t *testing.T) {
	k := newOutboxKit(t, openServer(t, backends[0]), func(c *participant.OutboxConfig) { c.RelayEvery = 10 * time.Millisecond })
	l := k.mustTry("?msg=a.b", "")
	wantStatus(t, "confirm", k.confirm(l.uri), http.StatusNoContent)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { k.p.Run(ctx); close(stopped) }()
	eventually(t, 30*time.Second, "the message published by Run's relay", func() bool {
		_, stored := k.pub.ids()
		return len(stored) == 1
	})
	cancel()
	<-stopped
	if got := k.states(l.id); !slices.Equal(got, []participant.MessageState{participant.MessagePublished}) {
		t.Fatalf("states %v", got)
	}
}
