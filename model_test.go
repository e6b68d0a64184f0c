package tccd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/pebble"
)

// TestModel drives the coordinator through random interleavings of begin,
// enlist, confirm, cancel, timeouts and restarts, with participants whose
// behaviour is drawn at random, and checks every answer against a small
// reference model and every stored outcome against what the participants
// really did.
//
// The participants are scripted (scriptCaller): this test is about the
// state machine and its decisions, so it forces the participants' answers
// instead of running them. Confirm calls go one at a time (MaxParallel 1),
// which makes the expected outcome of a confirm exact.
func TestModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := newModel(rt)
		defer m.close()
		rt.Repeat(map[string]func(*rapid.T){
			"begin":   m.begin,
			"enlist":  m.enlist,
			"message": m.message,
			"confirm": m.confirm,
			"cancel":  m.cancel,
			"restart": m.restart,
			"":        m.check,
		})
	})
}

// behaviour is how a scripted participant answers confirm.
type behaviour int

const (
	confirms  behaviour = iota // 204
	flaky                      // 503 twice, then 204
	gone                       // 404: it had cancelled on its own
	refuses                    // 400: permanent failure
	lostReply                  // confirms, but its first two replies are lost (sent, no answer), then 204
	lostCall                   // the first two calls are lost before it acts (sent, no answer), then 204
	// silentApplied and silentGone answer nothing (sent, no answer) until
	// their link expires, soon after the try: the first confirm reaching
	// silentApplied before the expiry takes effect; silentGone never acts
	// and cancels itself at the expiry. After the expiry both answer the
	// truth. They leave the coordinator in doubt, so the model does not
	// predict their outcome (it depends on timing) but checks that what
	// the coordinator reports agrees with what they did.
	silentApplied
	silentGone
	// doer is a compensate-style participant: its try did the work;
	// nothing may be sent to it on confirm, and its DELETE undoes it.
	doer
)

var behaviours = []behaviour{confirms, flaky, gone, refuses, lostReply, lostCall, silentApplied, silentGone, doer}

// silent reports whether the model cannot predict b's outcome.
func (b behaviour) silent() bool { return b == silentApplied || b == silentGone }

// scriptedPart is one reservation at a scripted participant: its
// behaviour, and what really happened to it.
type scriptedPart struct {
	b                  behaviour
	failures           int
	expires            time.Time
	confirmed          bool // confirmed, or (a doer) its work is done
	cancelled          bool
	undone             bool // a confirm (or a doer's work) undone
	undoable           bool // it has a compensate URI
	cancelAfterConfirm int
	putOnDoer          int
}

// holds reports whether the participant ended with what its try began
// in effect: confirmed and not undone.
func (p *scriptedPart) holds() bool { return p.confirmed && !p.undone }

// scriptCaller answers participant calls from the script, keeping the
// participant contract: idempotent confirm and cancel, 404 on confirm
// once cancelled, never undoing a confirm.
type scriptCaller struct {
	mu    sync.Mutex
	parts map[string]*scriptedPart
}

var errLost = errors.New("connection reset after the request was written")

func (s *scriptCaller) Call(_ context.Context, call tccd.Call) tccd.CallResult {
	op, uri := call.Op, call.URI
	s.mu.Lock()
	defer s.mu.Unlock()
	if op == tccd.OpCompensate {
		p := s.parts[strings.TrimSuffix(uri, "/undo")]
		if p.confirmed {
			p.undone = true
		}
		return tccd.CallResult{Status: 204, Duration: time.Microsecond}
	}
	p := s.parts[uri]
	if p.b == doer {
		if op == tccd.OpConfirm {
			p.putOnDoer++
			return tccd.CallResult{Status: 204, Duration: time.Microsecond}
		}
		p.undone = true
		return tccd.CallResult{Status: 204, Duration: time.Microsecond}
	}
	lost := tccd.CallResult{Err: errLost, Sent: true, Duration: time.Microsecond}
	if p.b.silent() {
		if time.Now().Before(p.expires) {
			if op == tccd.OpConfirm && p.b == silentApplied && !p.cancelled {
				p.confirmed = true
			}
			return lost
		}
		if !p.confirmed {
			p.cancelled = true // at its expiry, on its own
		}
	}
	if op == tccd.OpCancel {
		if p.confirmed {
			p.cancelAfterConfirm++
			return tccd.CallResult{Status: 409, Duration: time.Microsecond}
		}
		p.cancelled = true
		return tccd.CallResult{Status: 204, Duration: time.Microsecond}
	}
	switch {
	case p.cancelled:
		return tccd.CallResult{Status: 404, Duration: time.Microsecond}
	case p.b == gone:
		p.cancelled = true
		return tccd.CallResult{Status: 404, Duration: time.Microsecond}
	case p.b == refuses:
		return tccd.CallResult{Status: 400, Duration: time.Microsecond}
	case p.b == flaky && p.failures > 0:
		p.failures--
		return tccd.CallResult{Status: 503, Duration: time.Microsecond}
	case p.b == lostReply && p.failures > 0:
		p.failures--
		p.confirmed = true
		return lost
	case p.b == lostCall && p.failures > 0:
		p.failures--
		return lost
	}
	p.confirmed = true
	return tccd.CallResult{Status: 204, Duration: time.Microsecond}
}

// mtx is the model of one transaction.
type mtx struct {
	id    string
	uris  []string
	short bool // its timeout may pass during the test
	msgs  int  // messages enlisted
	// decided is "", "confirm" or "cancel": what a request decided.
	decided string
	// outcome is the final state the model expects once decided.
	outcome tccd.State
}

type model struct {
	t      *rapid.T
	dir    string
	caller *scriptCaller
	pub    *scriptPublisher
	store  *pebble.Store
	coord  *tccd.Coordinator
	txs    []*mtx
	next   int
}

func newModel(t *rapid.T) *model {
	dir, err := os.MkdirTemp("", "tccd-model")
	if err != nil {
		t.Fatal(err)
	}
	caller := &scriptCaller{parts: map[string]*scriptedPart{}}
	m := &model{t: t, dir: dir, caller: caller, pub: &scriptPublisher{caller: caller, uris: map[string][]string{}, stored: map[string]int{}, fails: map[string]int{}, attempted: map[string]int{}}}
	m.open()
	return m
}

func (m *model) open() {
	s, err := pebble.Open(m.dir, pebble.Options{CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if err != nil {
		m.t.Fatal(err)
	}
	m.store = s
	m.coord = tccd.NewCoordinator(tccd.Config{
		MaxParallel: 1, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond,
		ConfirmWait: 30 * time.Second, MarginFloor: time.Millisecond, ShutdownGrace: time.Second,
		Messages: m.pub,
	}, s, m.caller, nil, nil)
	if err := m.coord.Open(context.Background()); err != nil {
		m.t.Fatal(err)
	}
}

func (m *model) shut() {
	m.coord.Close()
	m.store.Close()
}

func (m *model) close() {
	m.shut()
	os.RemoveAll(m.dir)
}

func (m *model) newPart(b behaviour) tccd.Link {
	m.next++
	uri := fmt.Sprintf("http://p%d.test/r/%d", m.next%3, m.next)
	m.caller.mu.Lock()
	expires := time.Now().Add(time.Hour)
	if b.silent() {
		expires = time.Now().Add(time.Duration(20+m.next%40) * time.Millisecond)
	}
	sp := &scriptedPart{b: b, failures: 2, expires: expires}
	link := tccd.Link{URI: uri, Expires: expires}
	switch {
	case b == doer:
		sp.confirmed = true // the try did the work
		link.Style = tccd.StyleCompensate
	case m.next%2 == 0:
		sp.undoable = true
		link.CompensateURI = uri + "/undo"
	}
	m.caller.parts[uri] = sp
	m.caller.mu.Unlock()
	return link
}

func (m *model) begin(t *rapid.T) {
	n := rapid.IntRange(0, 3).Draw(t, "participants")
	short := rapid.Bool().Draw(t, "short timeout")
	var links []tccd.Link
	var uris []string
	for i := 0; i < n; i++ {
		l := m.newPart(rapid.SampledFrom(behaviours).Draw(t, "behaviour"))
		links = append(links, l)
		uris = append(uris, l.URI)
	}
	timeout := time.Hour
	if short {
		timeout = time.Duration(rapid.IntRange(1, 30).Draw(t, "timeout ms")) * time.Millisecond
	}
	tx, err := m.coord.Begin(context.Background(), tccd.BeginRequest{Timeout: timeout, Participants: links})
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if tx.State != tccd.StateActive || len(tx.Participants) != n {
		t.Fatalf("begin: %+v", tx)
	}
	m.txs = append(m.txs, &mtx{id: tx.ID, uris: uris, short: short})
	m.pub.mu.Lock()
	m.pub.uris[tx.ID] = uris
	m.pub.mu.Unlock()
}

func (m *model) pick(t *rapid.T) *mtx {
	if len(m.txs) == 0 {
		t.Skip("no transaction yet")
	}
	return rapid.SampledFrom(m.txs).Draw(t, "tx")
}

// timedOut reports whether a short transaction's timer has cancelled it.
func (m *model) timedOut(x *mtx) bool {
	if !x.short || x.decided != "" {
		return false
	}
	tx, err := m.coord.Get(context.Background(), x.id)
	if err != nil {
		m.t.Fatalf("get %s: %v", x.id, err)
	}
	return tx.State != tccd.StateActive && tx.Reason == tccd.ReasonTimeout
}

func (m *model) enlist(t *rapid.T) {
	x := m.pick(t)
	l := m.newPart(rapid.SampledFrom(behaviours).Draw(t, "behaviour"))
	tx, added, err := m.coord.Enlist(context.Background(), x.id, l)
	switch {
	case err == nil:
		if x.decided != "" || !added {
			t.Fatalf("enlist into a %q transaction succeeded (added %v)", x.decided, added)
		}
		x.uris = append(x.uris, l.URI)
		m.pub.mu.Lock()
		m.pub.uris[x.id] = x.uris
		m.pub.mu.Unlock()
		if len(tx.Participants) != len(x.uris)+x.msgs {
			t.Fatalf("enlist: %d participants, model has %d", len(tx.Participants), len(x.uris))
		}
	case tccd.ErrorCode(err) == tccd.EConflict:
		if x.decided == "" && !m.timedOut(x) {
			t.Fatalf("enlist refused into an active transaction: %v", err)
		}
	default:
		t.Fatalf("enlist: %v", err)
	}
}

// message enlists a message: published once if the transaction
// confirms, never otherwise. Its publishes fail at random first — not
// sent, or stored with the acknowledgement lost — and a subject no stream
// captures is refused.
func (m *model) message(t *rapid.T) {
	x := m.pick(t)
	subject := rapid.SampledFrom([]string{"orders.placed", "orders.audit", "nostream.x"}).Draw(t, "subject")
	m.pub.mu.Lock()
	m.pub.nextFails = rapid.IntRange(0, 3).Draw(t, "publish failures")
	m.pub.mu.Unlock()
	tx, p, err := m.coord.EnlistMessage(context.Background(), x.id, tccd.Message{Subject: subject, Data: []byte(`{}`)})
	switch {
	case subject == "nostream.x":
		if tccd.ErrorCode(err) != tccd.ENotConfigured {
			t.Fatalf("message to a subject nothing captures: %v", err)
		}
	case err == nil:
		if x.decided != "" {
			t.Fatalf("message enlisted into a %q transaction", x.decided)
		}
		x.msgs++
		if p.URI != tccd.MessageURI(x.msgs) || tx.Messages() != x.msgs {
			t.Fatalf("message %d: uri %s, %d messages", x.msgs, p.URI, tx.Messages())
		}
	case tccd.ErrorCode(err) == tccd.EConflict:
		if x.decided == "" && !m.timedOut(x) {
			t.Fatalf("message refused in an active transaction: %v", err)
		}
	default:
		t.Fatalf("message: %v", err)
	}
}

// scriptPublisher is the broker of the model: it stores each message id
// once (as a stream with duplicate detection does), fails the first
// publishes of a message as scripted, and checks that nothing is
// published before every participant of its transaction has confirmed.
type scriptPublisher struct {
	mu        sync.Mutex
	caller    *scriptCaller
	uris      map[string][]string // by transaction id
	stored    map[string]int      // message id → times stored
	fails     map[string]int      // message id → failures left
	nextFails int
	early     string         // a message published before its transaction's participants confirmed, or out of order
	attempted map[string]int // transaction id → the highest message number published so far
}

func (s *scriptPublisher) CheckSubject(_ context.Context, subject string) error {
	if strings.HasPrefix(subject, "nostream.") {
		return tccd.ErrSubjectNotCaptured
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails["next"] = s.nextFails
	return nil
}

func (s *scriptPublisher) Publish(_ context.Context, m tccd.OutgoingMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	txid := m.ID[:strings.IndexByte(m.ID, '/')]
	s.caller.mu.Lock()
	for _, u := range s.uris[txid] {
		if p := s.caller.parts[u]; !p.holds() && s.early == "" {
			s.early = fmt.Sprintf("message %s published while participant %s had not confirmed", m.ID, u)
		}
	}
	s.caller.mu.Unlock()
	// One at a time, in the order enlisted: once message n was tried, no
	// earlier one of its transaction is published again.
	n, _ := strconv.Atoi(m.ID[strings.IndexByte(m.ID, '/')+1:])
	if n < s.attempted[txid] && s.early == "" {
		s.early = fmt.Sprintf("message %s published after message %d of its transaction", m.ID, s.attempted[txid])
	}
	s.attempted[txid] = max(s.attempted[txid], n)
	left, ok := s.fails[m.ID]
	if !ok {
		left = s.fails["next"]
	}
	if left > 0 {
		s.fails[m.ID] = left - 1
		if left%2 == 0 {
			return fmt.Errorf("%w: not connected", tccd.ErrNotSent)
		}
		s.stored[m.ID] = 1 // stored; the acknowledgement is lost
		return errors.New("nats: timeout waiting for the acknowledgement")
	}
	s.fails[m.ID] = 0
	s.stored[m.ID] = 1 // a repeat of a stored id is dropped
	return nil
}

// published counts the messages of x the broker holds.
func (s *scriptPublisher) published(x *mtx) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := 1; i <= x.msgs; i++ {
		n += s.stored[fmt.Sprintf("%s/%d", x.id, i)]
	}
	return n
}

// expectConfirm computes the outcome of confirming x's participants one at
// a time: everything confirms; or one had cancelled (or refuses) before any
// confirmed, so all are cancelled; or one did after another confirmed:
// heuristic.
// It returns "" when a participant's outcome depends on timing (a silent
// one).
func (m *model) expectConfirm(x *mtx) tccd.State {
	m.caller.mu.Lock()
	defer m.caller.mu.Unlock()
	for _, u := range x.uris {
		if m.caller.parts[u].b.silent() {
			return ""
		}
	}
	// Doers are not called on confirm: they do not take part in the order.
	// Once a TCC participant confirmed, the others are confirmed all the
	// same; then, if every one that confirmed can be undone, they are.
	confirmed, failed, undoable := 0, 0, true
	for _, u := range x.uris {
		p := m.caller.parts[u]
		switch p.b {
		case doer:
		case confirms, flaky, lostReply, lostCall:
			confirmed++
			undoable = undoable && p.undoable
		default:
			if confirmed == 0 {
				return tccd.StateCancelled
			}
			failed++
		}
	}
	switch {
	case failed == 0:
		return tccd.StateConfirmed
	case undoable:
		return tccd.StateCompensated
	}
	return tccd.StateHeuristic
}

func (m *model) confirm(t *rapid.T) {
	x := m.pick(t)
	tx, err := m.coord.Confirm(context.Background(), x.id, nil)
	got := stateOf(tx, err)
	switch x.decided {
	case "cancel":
		if tccd.ErrorCode(err) != tccd.EConflict {
			t.Fatalf("confirm after cancel: %v", err)
		}
		return
	case "confirm":
		if got != x.outcome {
			t.Fatalf("repeated confirm: %s, first time %s", got, x.outcome)
		}
		return
	}
	if m.wasTimedOut(x, err) {
		return
	}
	want := m.expectConfirm(x)
	if want == "" {
		// Not predictable: the answer must agree with the record, and
		// check compares the record with what the participants did.
		stored, gerr := m.coord.Get(context.Background(), x.id)
		if gerr != nil {
			t.Fatalf("get: %v", gerr)
		}
		wantCode := map[tccd.State]tccd.Code{tccd.StateConfirmed: "", tccd.StateCancelled: tccd.ETimedOut, tccd.StateHeuristic: tccd.EHeuristic, tccd.StateCompensated: tccd.ECompensated}
		if code, ok := wantCode[stored.State]; !ok || got != stored.State || tccd.ErrorCode(err) != code {
			t.Fatalf("confirm answered %s (err %v); the record says %s", got, err, stored.State)
		}
		x.decided, x.outcome = "confirm", stored.State
		return
	}
	if got != want {
		t.Fatalf("confirm of %d participants: %s (err %v), model says %s", len(x.uris), got, err, want)
	}
	wantCode := map[tccd.State]tccd.Code{tccd.StateConfirmed: "", tccd.StateCancelled: tccd.ETimedOut, tccd.StateHeuristic: tccd.EHeuristic, tccd.StateCompensated: tccd.ECompensated}[want]
	if tccd.ErrorCode(err) != wantCode {
		t.Fatalf("confirm ended %s with error %v, want code %q", got, err, wantCode)
	}
	x.decided, x.outcome = "confirm", want
}

// wasTimedOut accepts a timed-out answer for a transaction whose short
// timeout may have passed, and records it in the model.
func (m *model) wasTimedOut(x *mtx, err error) bool {
	tx := tccd.ErrorTx(err)
	if tx == nil || tx.Reason != tccd.ReasonTimeout {
		return false
	}
	if !x.short {
		m.t.Fatalf("transaction with a long timeout timed out: %v", err)
	}
	x.decided, x.outcome = "timeout", tccd.StateCancelled
	return true
}

func (m *model) cancel(t *rapid.T) {
	x := m.pick(t)
	tx, err := m.coord.Cancel(context.Background(), x.id)
	got := stateOf(tx, err)
	switch x.decided {
	case "", "cancel", "timeout":
		if err != nil || got != tccd.StateCancelled {
			t.Fatalf("cancel of a %q transaction: %s, %v", x.decided, got, err)
		}
		if x.decided == "" {
			x.decided, x.outcome = "cancel", tccd.StateCancelled
			if tx.Reason == tccd.ReasonTimeout {
				x.decided = "timeout"
			}
		}
	case "confirm":
		if x.outcome == tccd.StateCancelled {
			if err != nil || got != tccd.StateCancelled {
				t.Fatalf("cancel after a timed-out confirm: %s, %v", got, err)
			}
			return
		}
		want := tccd.EConflict
		if x.outcome == tccd.StateHeuristic {
			want = tccd.EHeuristic
		}
		if tccd.ErrorCode(err) != want {
			t.Fatalf("cancel after confirm (%s): %v, want %s", x.outcome, err, want)
		}
	}
}

func (m *model) restart(t *rapid.T) {
	m.shut()
	m.open()
}

func stateOf(tx *tccd.Transaction, err error) tccd.State {
	if err != nil {
		if etx := tccd.ErrorTx(err); etx != nil {
			return etx.State
		}
		return ""
	}
	return tx.State
}

// check holds after every step: each stored outcome agrees with the
// model and with what the participants really did, and no participant was
// asked to cancel a confirmed reservation.
func (m *model) check(t *rapid.T) {
	for _, x := range m.txs {
		tx, err := m.coord.Get(context.Background(), x.id)
		if err != nil {
			t.Fatalf("get %s: %v", x.id, err)
		}
		if x.decided != "" && x.decided != "timeout" && tx.State != x.outcome {
			t.Fatalf("transaction %s is %s, model says %s", x.id, tx.State, x.outcome)
		}
		if x.decided == "" && !x.short && tx.State != tccd.StateActive {
			t.Fatalf("undecided transaction %s is %s", x.id, tx.State)
		}
		if !tx.State.Final() {
			continue
		}
		confirmed := 0
		m.caller.mu.Lock()
		for i, u := range x.uris {
			p := m.caller.parts[u]
			// A DELETE may reach a confirmed participant only when the
			// coordinator could not know: its confirm was in doubt.
			if p.cancelAfterConfirm > 0 && !p.b.silent() && p.b != lostReply {
				m.caller.mu.Unlock()
				t.Fatalf("participant %s was asked to cancel after it confirmed", u)
			}
			if p.putOnDoer > 0 {
				m.caller.mu.Unlock()
				t.Fatalf("compensate-style participant %s was sent a confirm", u)
			}
			if p.holds() {
				confirmed++
			}
			// What the record says of each participant is what it did.
			rec := tx.Participants[tx.Participant(u)].State
			if (rec == tccd.ParticipantConfirmed) != p.holds() || (rec == tccd.ParticipantCompensated) != p.undone || rec == tccd.ParticipantPending {
				m.caller.mu.Unlock()
				t.Fatalf("transaction %s (%s): participant %d (%s) recorded %s, but holds=%v undone=%v", x.id, tx.State, i, u, rec, p.holds(), p.undone)
			}
		}
		m.caller.mu.Unlock()
		m.pub.mu.Lock()
		early := m.pub.early
		m.pub.mu.Unlock()
		if early != "" {
			t.Fatal(early)
		}
		// Messages: all of a confirmed transaction's, once each (the
		// broker counts an id once: the record must say each was
		// acknowledged); none of any other.
		pub := m.pub.published(x)
		for i := 1; i <= x.msgs; i++ {
			rec := tx.Participants[tx.Participant(tccd.MessageURI(i))].State
			if want := map[bool]tccd.ParticipantState{true: tccd.ParticipantConfirmed, false: tccd.ParticipantCancelled}[tx.State == tccd.StateConfirmed]; rec != want {
				t.Fatalf("%s transaction %s: message %d recorded %s, want %s", tx.State, x.id, i, rec, want)
			}
		}
		if (tx.State == tccd.StateConfirmed && pub != x.msgs) || (tx.State != tccd.StateConfirmed && pub != 0) {
			t.Fatalf("%s transaction %s: %d of its %d messages published", tx.State, x.id, pub, x.msgs)
		}
		switch tx.State {
		case tccd.StateConfirmed:
			if confirmed != len(x.uris) {
				t.Fatalf("confirmed transaction %s: %d of %d participants confirmed", x.id, confirmed, len(x.uris))
			}
		case tccd.StateCancelled, tccd.StateCompensated:
			if confirmed != 0 {
				t.Fatalf("%s transaction %s: %d participants confirmed", tx.State, x.id, confirmed)
			}
		case tccd.StateHeuristic:
			if confirmed == 0 || confirmed == len(x.uris) {
				t.Fatalf("heuristic transaction %s: %d of %d confirmed", x.id, confirmed, len(x.uris))
			}
		}
	}
}
