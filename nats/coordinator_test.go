package nats_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/internal/natstest"
	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/nats"
	"github.com/tccd/tccd/pebble"
)

// TestCoordinatorRepeatPastWindow: a publish repeated after the stream's
// duplicate window is not stored twice — the coordinator looks for the
// message first — and one that never reached the stream is published.
func TestCoordinatorRepeatPastWindow(t *testing.T) {
	url := natstest.URL(t)
	const window = time.Second
	st := natstest.NewStream(t, url, window)
	p := open(t, url)
	c := nats.NewCoordinator(p)
	ctx := context.Background()
	subj := st.Subject("order.placed")
	first := time.Now()
	if err := c.Publish(ctx, tccd.OutgoingMessage{ID: "tx1/1", Subject: subj, Data: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	// The premise: past the window, the stream itself stores a repeat.
	if err := p.Publish(ctx, subj, "probe/1", []byte("p"), nil); err != nil {
		t.Fatal(err)
	}
	for time.Since(first) < 2*window {
		time.Sleep(50 * time.Millisecond)
	}
	if err := p.Publish(ctx, subj, "probe/1", []byte("p"), nil); err != nil {
		t.Fatal(err)
	}
	// The coordinator's repeat of tx1/1 (its ack was lost, say), and a
	// message whose earlier attempts never reached the stream.
	if err := c.Publish(ctx, tccd.OutgoingMessage{ID: "tx1/1", Subject: subj, Data: []byte("a"), Since: first}); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, tccd.OutgoingMessage{ID: "tx2/1", Subject: subj, Data: []byte("b"), Since: first}); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, m := range st.ReadAll("check") {
		got[m.ID]++
	}
	if got["probe/1"] != 2 {
		t.Fatalf("premise: a repeat past the window stored %d times, want 2 (the window did not pass?)", got["probe/1"])
	}
	if got["tx1/1"] != 1 || got["tx2/1"] != 1 {
		t.Fatalf("stored %v: want tx1/1 and tx2/1 once each", got)
	}
}

// TestCoordinatorErrors: a subject without a stream is
// tccd.ErrSubjectNotCaptured, both when checked and when published (and
// then also tccd.ErrNotSent).
func TestCoordinatorErrors(t *testing.T) {
	url := natstest.URL(t)
	natstest.NewStream(t, url, 0)
	c := nats.NewCoordinator(open(t, url))
	ctx := context.Background()
	if err := c.CheckSubject(ctx, "tccdtest.nobody.listens"); !errors.Is(err, tccd.ErrSubjectNotCaptured) {
		t.Fatalf("check: %v", err)
	}
	err := c.Publish(ctx, tccd.OutgoingMessage{ID: "x/1", Subject: "tccdtest.nobody.listens", Data: []byte("a")})
	if !errors.Is(err, tccd.ErrSubjectNotCaptured) || !errors.Is(err, tccd.ErrNotSent) {
		t.Fatalf("publish: %v", err)
	}
}

// msgEnv is a coordinator with messages on the test's NATS server, and
// participants over HTTP.
type msgEnv struct {
	t     *testing.T
	coord *tccd.Coordinator
	st    *natstest.Stream
	parts []*testpart.Service
	urls  []string
}

func newMsgEnv(t *testing.T, withMessages bool) *msgEnv {
	t.Helper()
	url := natstest.URL(t)
	e := &msgEnv{t: t, st: natstest.NewStream(t, url, 0)}
	store, err := pebble.Open(t.TempDir(), pebble.Options{CacheSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cfg := tccd.Config{RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, CallTimeout: 5 * time.Second,
		ConfirmWait: 20 * time.Second, MarginFloor: 100 * time.Millisecond, ShutdownGrace: time.Second}
	if withMessages {
		cfg.Messages = nats.NewCoordinator(open(t, url))
	}
	e.coord = tccd.NewCoordinator(cfg, store, tccdhttp.NewCaller(), nil, nil)
	if err := e.coord.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.coord.Close(); store.Close() })
	for i := 0; i < 2; i++ {
		svc := testpart.NewTest(t, time.Minute)
		srv := httptest.NewServer(svc)
		t.Cleanup(srv.Close)
		e.parts, e.urls = append(e.parts, svc), append(e.urls, srv.URL)
	}
	return e
}

// begin starts a transaction with a reservation at each participant and
// the given messages.
func (e *msgEnv) begin(msgs ...tccd.Message) *tccd.Transaction {
	e.t.Helper()
	ctx := context.Background()
	var links []tccd.Link
	for i, svc := range e.parts {
		r, err := svc.Try(ctx, 0)
		if err != nil {
			e.t.Fatal(err)
		}
		links = append(links, tccd.Link{URI: e.urls[i] + "/reservations/" + r.ID, Expires: r.Expires})
	}
	tx, err := e.coord.Begin(ctx, tccd.BeginRequest{Timeout: time.Minute, Participants: links})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range msgs {
		if tx, _, err = e.coord.EnlistMessage(ctx, tx.ID, m); err != nil {
			e.t.Fatal(err)
		}
	}
	return tx
}

func (e *msgEnv) msg(name, data string) tccd.Message {
	return tccd.Message{Subject: e.st.Subject(name), Data: []byte(data), Headers: map[string]string{"Content-Type": "application/json"}}
}

// TestMessagesConfirm: a confirmed transaction's messages are published
// once each, with their ids, data and headers — and only after every
// participant has confirmed.
func TestMessagesConfirm(t *testing.T) {
	e := newMsgEnv(t, true)
	tx := e.begin(e.msg("order.placed", `{"order":1}`), e.msg("order.audit", `{"n":2}`))
	if n := tx.Messages(); n != 2 {
		t.Fatalf("%d messages enlisted", n)
	}
	e.parts[1].AddFault(testpart.Fault{Op: "confirm", Count: 1, Hold: true})
	done := make(chan error, 1)
	go func() {
		_, err := e.coord.Confirm(context.Background(), tx.ID, nil)
		done <- err
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st, err := e.parts[1].Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Held == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the confirm never reached the held participant")
		}
	}
	// One participant has not confirmed: nothing may be published yet.
	// The other's confirm may still be in flight; the stream must stay
	// empty all the same.
	for i := 0; i < 20; i++ {
		if n := e.st.Stored(); n != 0 {
			t.Fatalf("%d messages published while a participant had not confirmed", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.parts[1].ClearFaults()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := e.st.ReadAll("check")
	want := map[string]string{tx.ID + "/1": `{"order":1}`, tx.ID + "/2": `{"n":2}`}
	if len(got) != 2 {
		t.Fatalf("read %d messages, want 2: %+v", len(got), got)
	}
	for _, m := range got {
		if want[m.ID] != m.Data || m.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("message %+v; want the ids and data of %v", m, want)
		}
		delete(want, m.ID)
	}
	final, err := e.coord.Get(context.Background(), tx.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range final.Participants {
		if p.State != tccd.ParticipantConfirmed {
			t.Fatalf("participant %s is %s", p.URI, p.State)
		}
	}
}

// TestMessagesDropped: a cancelled transaction's messages are never
// published — cancelled by the initiator, or because a participant
// refused its confirm.
func TestMessagesDropped(t *testing.T) {
	e := newMsgEnv(t, true)
	ctx := context.Background()
	tx := e.begin(e.msg("order.placed", `{"order":1}`))
	end, err := e.coord.Cancel(ctx, tx.ID)
	if err != nil {
		t.Fatal(err)
	}
	tx = e.begin(e.msg("order.placed", `{"order":2}`))
	for _, svc := range e.parts {
		svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: 422})
	}
	refused, err := e.coord.Confirm(ctx, tx.ID, nil)
	if err == nil {
		t.Fatalf("confirm refused by every participant ended %s", refused.State)
	}
	refused, _ = e.coord.Get(ctx, tx.ID)
	for _, x := range []*tccd.Transaction{end, refused} {
		if x.State != tccd.StateCancelled {
			t.Fatalf("transaction %s, want cancelled", x.State)
		}
		if p := x.Participants[x.Participant(tccd.MessageURI(1))]; p.State != tccd.ParticipantCancelled || p.Attempts != 0 {
			t.Fatalf("message participant %+v, want cancelled without an attempt", p)
		}
	}
	if n := e.st.Stored(); n != 0 {
		t.Fatalf("%d messages of cancelled transactions published", n)
	}
}

// TestEnlistMessageRefusals: what EnlistMessage refuses, and that a
// refusal leaves the transaction as it was.
func TestEnlistMessageRefusals(t *testing.T) {
	e := newMsgEnv(t, true)
	off := newMsgEnv(t, false)
	ctx := context.Background()
	tx := e.begin()
	big := make([]byte, tccd.MaxMessageBytes+1)
	tests := []struct {
		name  string
		env   *msgEnv
		id    string
		m     tccd.Message
		code  tccd.Code
		field string
	}{
		{"no broker", off, "", e.msg("a", "{}"), tccd.ENotConfigured, ""},
		{"subject nobody captures", e, "", tccd.Message{Subject: "tccdtest.nobody.captures", Data: []byte("{}")}, tccd.ENotConfigured, "subject"},
		{"empty subject", e, "", tccd.Message{Data: []byte("{}")}, tccd.EInvalid, "subject"},
		{"wildcard", e, "", tccd.Message{Subject: e.st.Prefix + ".*", Data: []byte("{}")}, tccd.EInvalid, "subject"},
		{"full wildcard", e, "", tccd.Message{Subject: e.st.Prefix + ".>", Data: []byte("{}")}, tccd.EInvalid, "subject"},
		{"space", e, "", tccd.Message{Subject: e.st.Prefix + ".a b", Data: []byte("{}")}, tccd.EInvalid, "subject"},
		{"empty token", e, "", tccd.Message{Subject: e.st.Prefix + "..a", Data: []byte("{}")}, tccd.EInvalid, "subject"},
		{"too large", e, "", tccd.Message{Subject: e.st.Subject("a"), Data: big}, tccd.ETooLarge, "data"},
		{"broker's header", e, "", tccd.Message{Subject: e.st.Subject("a"), Data: []byte("{}"), Headers: map[string]string{"Nats-Msg-Id": "x"}}, tccd.EInvalid, "headers"},
		{"header name", e, "", tccd.Message{Subject: e.st.Subject("a"), Data: []byte("{}"), Headers: map[string]string{"a b": "x"}}, tccd.EInvalid, "headers"},
		{"header value", e, "", tccd.Message{Subject: e.st.Subject("a"), Data: []byte("{}"), Headers: map[string]string{"A": "x\r\nB: y"}}, tccd.EInvalid, "headers"},
		{"unknown transaction", e, "01NOSUCHTRANSACTION0000000", e.msg("a", "{}"), tccd.ENotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.id
			if id == "" {
				id = tx.ID
				if tt.env == off {
					id = off.begin().ID
				}
			}
			_, _, err := tt.env.coord.EnlistMessage(ctx, id, tt.m)
			var te *tccd.Error
			if !errors.As(err, &te) || te.Code != tt.code || te.Field != tt.field {
				t.Fatalf("error %v, want code %s field %q", err, tt.code, tt.field)
			}
		})
	}
	after, err := e.coord.Get(ctx, tx.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Messages() != 0 || after.State != tccd.StateActive || after.Version != tx.Version {
		t.Fatalf("after the refusals: %d messages, %s, version %d (was %d)", after.Messages(), after.State, after.Version, tx.Version)
	}
	// Once decided, no more messages.
	if _, err := e.coord.Cancel(ctx, tx.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.coord.EnlistMessage(ctx, tx.ID, e.msg("a", "{}")); tccd.ErrorCode(err) != tccd.EConflict {
		t.Fatalf("enlist into a cancelled transaction: %v", err)
	}
	// Numbering: the nth message of a transaction is <id>/<n>.
	tx = e.begin()
	for n := 1; n <= 3; n++ {
		_, p, err := e.coord.EnlistMessage(ctx, tx.ID, e.msg("a", fmt.Sprint(n)))
		if err != nil {
			t.Fatal(err)
		}
		if got := tccd.MessageID(tx.ID, p); got != fmt.Sprintf("%s/%d", tx.ID, n) || !strings.HasPrefix(p.URI, "urn:tccd:message:") {
			t.Fatalf("message %d: id %s, uri %s", n, got, p.URI)
		}
	}
}
