package participant_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/internal/testproc"
	"github.com/tccd/tccd/participant"
)

// seatsProc is a running participant/internal/seats process and a client
// of it.
type seatsProc struct {
	t    *testing.T
	proc *testproc.Proc
	hc   *http.Client
}

type seatsAnswer struct {
	status int
	uri    string
	data   string
	state  string // a problem's state, or a GET's
	err    error  // no answer (the process died)
}

func (s *seatsProc) call(method, path, txID string) seatsAnswer {
	req, err := http.NewRequest(method, s.proc.URL()+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	if txID != "" {
		req.Header.Set(api.HeaderTransactionID, txID)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return seatsAnswer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return seatsAnswer{err: err}
	}
	var v struct {
		ParticipantLink struct{ URI string } `json:"participantLink"`
		Data            json.RawMessage      `json:"data"`
		State           string               `json:"state"`
	}
	_ = json.Unmarshal(body, &v)
	return seatsAnswer{status: resp.StatusCode, uri: v.ParticipantLink.URI, data: string(v.Data), state: v.State}
}

func (s *seatsProc) try(seat int, txID, query string) seatsAnswer {
	return s.call(http.MethodPost, "/seats?seat="+strconv.Itoa(seat)+query, txID)
}

// seats reads every seat: state and holder.
func (s *seatsProc) seats() map[int]struct{ State, Reservation string } {
	s.t.Helper()
	resp, err := s.hc.Get(s.proc.URL() + "/seats")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []struct {
		Seat               int
		State, Reservation string
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		s.t.Fatal(err)
	}
	out := map[int]struct{ State, Reservation string }{}
	for _, e := range list {
		out[e.Seat] = struct{ State, Reservation string }{e.State, e.Reservation}
	}
	return out
}

func idOf(uri string) string { return uri[len(uri)-26:] }

// TestRestart SIGKILLs a participant process on the kit while tries,
// confirms and cancels are in flight, restarts it on the same database and
// port, and checks every point of the contract on what it did before:
// confirmed stays confirmed (a repeated confirm 204, a cancel 409, a
// repeated try 200 with the same link and data), cancelled stays cancelled
// (a confirm 404, a repeated try 409), a tried reservation can be
// confirmed or cancelled, an empty cancel still refuses its late try, an
// expiry passes, and every call that got no answer can be repeated to the
// same end; the seats always agree with the bookkeeping.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	bin, err := testproc.Build(dir, "github.com/tccd/tccd/participant/internal/seats")
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "seats.db")
	start := func(listen string) *seatsProc {
		p := testproc.StartService(t, "seats", bin, "--listen", listen, "--db", db, "--seats", "2000")
		return &seatsProc{t: t, proc: p, hc: &http.Client{Timeout: 10 * time.Second}}
	}
	s := start("127.0.0.1:0")

	// The points of the contract, set up before the kill.
	confirmed := s.try(1, "tx-confirmed", "")
	wantSeats(t, "confirm", s.call(http.MethodPut, "/seats/"+idOf(confirmed.uri), ""), http.StatusNoContent)
	cancelled := s.try(2, "tx-cancelled", "")
	wantSeats(t, "cancel", s.call(http.MethodDelete, "/seats/"+idOf(cancelled.uri), ""), http.StatusNoContent)
	toConfirm := s.try(3, "tx-to-confirm", "&ttl=1h")
	toCancel := s.try(4, "tx-to-cancel", "&ttl=1h")
	voidID := participant.DeriveID("tx-void", "seat", "5")
	wantSeats(t, "empty cancel", s.call(http.MethodDelete, "/seats/"+voidID, ""), http.StatusNotFound)
	expiring := s.try(6, "tx-expiring", "&ttl=1500ms")
	for _, a := range []seatsAnswer{confirmed, cancelled, toConfirm, toCancel, expiring} {
		if a.status != http.StatusCreated {
			t.Fatalf("try: %+v", a)
		}
	}

	// Mid-flow: workers try, then confirm or cancel, each on seats of its
	// own, until the process is killed after 60 acknowledged operations.
	type op struct {
		tx         string
		seat       int
		uri        string
		settle     string // PUT or DELETE
		tryAcked   bool
		settleSent bool
		settleAck  int // the status, 0 if no answer
	}
	const workers = 4
	var (
		mu     sync.Mutex
		ops    []*op
		acked  atomic.Int64
		killed = make(chan struct{})
		once   sync.Once
		wg     sync.WaitGroup
	)
	kill := func() { once.Do(func() { s.proc.Kill(); close(killed) }) }
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-killed:
					return
				default:
				}
				o := &op{tx: fmt.Sprintf("tx-w%d-%d", w, i), seat: 100 + w*400 + i, settle: http.MethodPut}
				if i%3 == 2 {
					o.settle = http.MethodDelete
				}
				mu.Lock()
				ops = append(ops, o)
				mu.Unlock()
				a := s.try(o.seat, o.tx, "&ttl=1h")
				if a.err != nil {
					return
				}
				if a.status != http.StatusCreated {
					t.Errorf("try %s: %+v", o.tx, a)
					return
				}
				o.uri, o.tryAcked = a.uri, true
				o.settleSent = true
				a = s.call(o.settle, "/seats/"+idOf(o.uri), "")
				if a.err != nil {
					return
				}
				o.settleAck = a.status
				if a.status != http.StatusNoContent {
					t.Errorf("%s %s: %+v", o.settle, o.tx, a)
					return
				}
				if acked.Add(2) >= 60 {
					kill()
				}
			}
		})
	}
	wg.Wait()
	kill() // in case the workers failed first
	if t.Failed() {
		t.FailNow()
	}

	s = start(s.proc.Addr) // same database, same port: the old URIs are valid
	get := func(id string) string { return s.call(http.MethodGet, "/seats/"+id, "").state }

	// Confirmed stays confirmed.
	wantSeats(t, "repeated confirm", s.call(http.MethodPut, "/seats/"+idOf(confirmed.uri), ""), http.StatusNoContent)
	wantSeats(t, "cancel after confirm", s.call(http.MethodDelete, "/seats/"+idOf(confirmed.uri), ""), http.StatusConflict)
	if a := s.try(1, "tx-confirmed", ""); a.status != http.StatusOK || a.uri != confirmed.uri || a.data != confirmed.data || a.data != `{"seat":1}` {
		t.Errorf("repeated try of a confirmed reservation: %+v, first %+v", a, confirmed)
	}
	// Cancelled stays cancelled.
	wantSeats(t, "confirm after cancel", s.call(http.MethodPut, "/seats/"+idOf(cancelled.uri), ""), http.StatusNotFound)
	wantSeats(t, "repeated cancel", s.call(http.MethodDelete, "/seats/"+idOf(cancelled.uri), ""), http.StatusNoContent)
	wantSeats(t, "try after cancel", s.try(2, "tx-cancelled", ""), http.StatusConflict)
	// Tried: confirm or cancel now.
	wantSeats(t, "confirm after the restart", s.call(http.MethodPut, "/seats/"+idOf(toConfirm.uri), ""), http.StatusNoContent)
	wantSeats(t, "cancel after the restart", s.call(http.MethodDelete, "/seats/"+idOf(toCancel.uri), ""), http.StatusNoContent)
	// The empty cancel is remembered.
	wantSeats(t, "repeated empty cancel", s.call(http.MethodDelete, "/seats/"+voidID, ""), http.StatusNotFound)
	wantSeats(t, "hanging try", s.try(5, "tx-void", ""), http.StatusConflict)
	// The expiry passes, by the restarted sweeper.
	eventually(t, 20*time.Second, "the sweeper expires the reservation", func() bool { return get(idOf(expiring.uri)) == "expired" })
	wantSeats(t, "confirm after expiry", s.call(http.MethodPut, "/seats/"+idOf(expiring.uri), ""), http.StatusNotFound)

	// What was in flight: each operation's acknowledged effect holds, and
	// repeating what got no answer (as a coordinator and an initiator do)
	// reaches the same end.
	mu.Lock()
	defer mu.Unlock()
	var unanswered int
	for _, o := range ops {
		if !o.tryAcked {
			unanswered++
			a := s.try(o.seat, o.tx, "&ttl=1h") // the initiator repeats its try
			if a.status != http.StatusCreated && a.status != http.StatusOK {
				t.Errorf("repeated try %s: %+v", o.tx, a)
				continue
			}
			o.uri = a.uri
		}
		id := idOf(o.uri)
		want := map[string]string{http.MethodPut: "confirmed", http.MethodDelete: "cancelled"}[o.settle]
		if o.settleAck == http.StatusNoContent {
			if got := get(id); got != want {
				t.Errorf("%s %s acknowledged, but the reservation is %q", o.settle, o.tx, got)
			}
			continue
		}
		if o.settleSent {
			unanswered++
		}
		wantSeats(t, o.settle+" repeated after the restart", s.call(o.settle, "/seats/"+id, ""), http.StatusNoContent)
		if got := get(id); got != want {
			t.Errorf("%s %s: the reservation is %q", o.settle, o.tx, got)
		}
	}
	t.Logf("%d operations, %d unanswered at the kill", len(ops), unanswered)

	// The seats agree with the bookkeeping.
	for n, seat := range s.seats() {
		switch seat.State {
		case "AVAILABLE":
			if seat.Reservation != "" {
				t.Errorf("seat %d available but held by %s", n, seat.Reservation)
			}
		case "SOLD", "RESERVED":
			want := map[string]string{"SOLD": "confirmed", "RESERVED": "tried"}[seat.State]
			if got := get(seat.Reservation); got != want {
				t.Errorf("seat %d %s by %s, which is %q", n, seat.State, seat.Reservation, got)
			}
		default:
			t.Errorf("seat %d in state %q", n, seat.State)
		}
	}
	// And new tries work, with fresh ids.
	if a := s.try(7, "", ""); a.status != http.StatusCreated {
		t.Errorf("try after the restart: %+v", a)
	}
	if err := s.proc.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}

func wantSeats(t *testing.T, what string, a seatsAnswer, status int) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: %+v, want status %d", what, a, status)
	}
}
