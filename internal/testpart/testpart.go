// Package testpart is a reservation service that keeps the TCC participant
// contract, for tccd's integration, crash and benchmark tests. It runs
// in-process (as an http.Handler) or as its own process (cmd/testpart).
// It records every call so tests can check invariants: no reservation both
// confirmed and cancelled, confirmed only after try, and so on.
package testpart

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// State of a reservation.
type State string

// Reservation states.
const (
	Tried     State = "tried"
	Confirmed State = "confirmed"
	Cancelled State = "cancelled"
	Expired   State = "expired"
)

// Reservation is one try.
type Reservation struct {
	ID      string    `json:"id"`
	State   State     `json:"state"`
	Expires time.Time `json:"expires"`
	// Confirms and Cancels count the calls received.
	Confirms int `json:"confirms"`
	Cancels  int `json:"cancels"`
	// CancelAfterConfirm counts DELETEs refused because the reservation was
	// already confirmed: a coordinator that cancels a confirmed participant.
	CancelAfterConfirm int `json:"cancel_after_confirm"`
}

// Stats are the service's counters.
type Stats struct {
	Tried              int   `json:"tried"`
	Confirmed          int   `json:"confirmed"`
	Cancelled          int   `json:"cancelled"`
	Expired            int   `json:"expired"`
	Pending            int   `json:"pending"`
	ConfirmCalls       int64 `json:"confirm_calls"`
	CancelCalls        int64 `json:"cancel_calls"`
	CancelAfterConfirm int   `json:"cancel_after_confirm"`
	// Held counts the calls a Hold fault is holding now.
	Held int64 `json:"held"`
}

// Fault makes the next Count calls of an operation misbehave.
type Fault struct {
	// Op is "confirm", "cancel" or "any".
	Op string `json:"op"`
	// Count is how many calls are affected; -1 means until cleared.
	Count int `json:"count"`
	// Status, when set, is answered instead of doing the work.
	Status int `json:"status,omitempty"`
	// RetryAfter, when set with Status, is sent as Retry-After (seconds).
	RetryAfter int `json:"retry_after,omitempty"`
	// Delay is slept before answering (or before doing the work).
	Delay string `json:"delay,omitempty"`
	// ApplyThenFail does the work and then answers Status: a lost reply.
	ApplyThenFail bool `json:"apply_then_fail,omitempty"`
	// Hold holds the call, before anything else, until the faults are
	// cleared; then it goes on as the rest of the fault says (with nothing
	// else set, it does the work). A call whose caller goes away meanwhile
	// (a coordinator killed) ends there, undone. A test can so have calls
	// in flight at the moment of its choosing.
	Hold bool `json:"hold,omitempty"`
}

// Service is the reservation service. Create it with New.
type Service struct {
	mux  *http.ServeMux
	ttl  time.Duration
	next atomic.Int64

	confirmCalls, cancelCalls atomic.Int64
	held                      atomic.Int64

	mu     sync.Mutex
	res    map[string]*Reservation
	faults []*Fault
	// release is closed when the faults are cleared: held calls go on.
	release chan struct{}
	// latency is added to every confirm and cancel (simulated work).
	latency time.Duration
}

// New returns a service whose reservations live for ttl unless a try asks
// for another (?ttl=…).
func New(ttl time.Duration) *Service {
	s := &Service{mux: http.NewServeMux(), ttl: ttl, res: make(map[string]*Reservation), release: make(chan struct{})}
	s.mux.HandleFunc("POST /reservations", s.try)
	s.mux.HandleFunc("PUT /reservations/{id}", s.confirm)
	s.mux.HandleFunc("DELETE /reservations/{id}", s.cancel)
	s.mux.HandleFunc("GET /reservations/{id}", s.get)
	s.mux.HandleFunc("GET /reservations", s.list)
	s.mux.HandleFunc("GET /stats", s.stats)
	s.mux.HandleFunc("POST /faults", s.addFault)
	s.mux.HandleFunc("DELETE /faults", s.clearFaults)
	return s
}

// SetLatency adds d to every confirm and cancel.
func (s *Service) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Try makes a reservation directly and returns its id.
func (s *Service) Try(ttl time.Duration) *Reservation {
	if ttl <= 0 {
		ttl = s.ttl
	}
	id := strconv.FormatInt(s.next.Add(1), 10)
	r := &Reservation{ID: id, State: Tried, Expires: time.Now().Add(ttl)}
	s.mu.Lock()
	s.res[id] = r
	s.mu.Unlock()
	c := *r
	return &c
}

// AddFault installs a fault.
func (s *Service) AddFault(f Fault) {
	s.mu.Lock()
	s.faults = append(s.faults, &f)
	s.mu.Unlock()
}

// Get returns a copy of a reservation.
func (s *Service) Get(id string) (Reservation, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.res[id]
	if !ok {
		return Reservation{}, false
	}
	s.expire(r, time.Now())
	return *r, true
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	st := Stats{ConfirmCalls: s.confirmCalls.Load(), CancelCalls: s.cancelCalls.Load(), Held: s.held.Load()}
	for _, r := range s.res {
		s.expire(r, now)
		st.Tried++
		st.CancelAfterConfirm += r.CancelAfterConfirm
		switch r.State {
		case Confirmed:
			st.Confirmed++
		case Cancelled:
			st.Cancelled++
		case Expired:
			st.Expired++
		case Tried:
			st.Pending++
		}
	}
	return st
}

// expire moves a tried reservation past its expiry to Expired: the
// participant cancels on its own. Callers hold s.mu.
func (s *Service) expire(r *Reservation, now time.Time) {
	if r.State == Tried && !now.Before(r.Expires) {
		r.State = Expired
	}
}

// fault returns the fault that applies to this call, consuming one use,
// and the channel that releases held calls.
func (s *Service) fault(op string) (*Fault, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Op != op && f.Op != "any" {
			continue
		}
		c := *f
		if f.Count > 0 {
			f.Count--
			if f.Count == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
		}
		return &c, s.release
	}
	return nil, nil
}

func (s *Service) try(w http.ResponseWriter, r *http.Request) {
	ttl := s.ttl
	if v := r.URL.Query().Get("ttl"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			http.Error(w, "bad ttl", http.StatusBadRequest)
			return
		}
		ttl = d
	}
	res := s.Try(ttl)
	uri := fmt.Sprintf("http://%s/reservations/%s", r.Host, res.ID)
	exp := res.Expires.UTC().Format(time.RFC3339Nano)
	w.Header().Set("Location", uri)
	w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="tcc"; expires="%s"`, uri, exp))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"participantLink": map[string]string{"uri": uri, "expires": exp, "rel": "tcc"}})
}

// preamble applies latency and faults; it reports whether the call is
// answered already (or its caller gone), and whether to fail after doing
// the work.
func (s *Service) preamble(w http.ResponseWriter, r *http.Request, op string) (answered bool, after *Fault) {
	s.mu.Lock()
	lat := s.latency
	s.mu.Unlock()
	if lat > 0 {
		time.Sleep(lat)
	}
	f, release := s.fault(op)
	if f == nil {
		return false, nil
	}
	if f.Hold {
		s.held.Add(1)
		select {
		case <-release:
			s.held.Add(-1)
		case <-r.Context().Done():
			s.held.Add(-1)
			return true, nil
		}
	}
	if d, err := time.ParseDuration(f.Delay); err == nil && d > 0 {
		time.Sleep(d)
	}
	if f.ApplyThenFail {
		return false, f
	}
	if f.Status != 0 {
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
		}
		w.WriteHeader(f.Status)
		return true, nil
	}
	return false, nil
}

func (s *Service) finish(w http.ResponseWriter, status int, after *Fault) {
	if after != nil {
		// The work is done but the reply is lost: reset the connection.
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		status = after.Status
	}
	w.WriteHeader(status)
}

func (s *Service) confirm(w http.ResponseWriter, r *http.Request) {
	s.confirmCalls.Add(1)
	s.settle(w, r, "confirm", func(res *Reservation) int {
		res.Confirms++
		switch res.State {
		case Tried:
			res.State = Confirmed
			return http.StatusNoContent
		case Confirmed:
			return http.StatusNoContent
		}
		return http.StatusNotFound
	})
}

func (s *Service) cancel(w http.ResponseWriter, r *http.Request) {
	s.cancelCalls.Add(1)
	s.settle(w, r, "cancel", func(res *Reservation) int {
		res.Cancels++
		switch res.State {
		case Tried:
			res.State = Cancelled
			return http.StatusNoContent
		case Cancelled, Expired:
			return http.StatusNoContent
		case Confirmed:
			res.CancelAfterConfirm++
			return http.StatusConflict
		}
		return http.StatusNotFound
	})
}

// settle applies faults, then change to the reservation named in the path
// (404 if unknown), and answers with the status change returns.
func (s *Service) settle(w http.ResponseWriter, r *http.Request, op string, change func(*Reservation) int) {
	answered, after := s.preamble(w, r, op)
	if answered {
		return
	}
	s.mu.Lock()
	status := http.StatusNotFound
	if res, ok := s.res[r.PathValue("id")]; ok {
		s.expire(res, time.Now())
		status = change(res)
	}
	s.mu.Unlock()
	s.finish(w, status, after)
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	res, ok := s.Get(r.PathValue("id"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	now := time.Now()
	out := make([]Reservation, 0, len(s.res))
	for _, res := range s.res {
		s.expire(res, now)
		out = append(out, *res)
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (s *Service) stats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.Stats())
}

func (s *Service) addFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.AddFault(f)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) clearFaults(w http.ResponseWriter, r *http.Request) {
	s.ClearFaults()
	w.WriteHeader(http.StatusNoContent)
}

// ClearFaults removes every fault and releases the calls held.
func (s *Service) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	close(s.release)
	s.release = make(chan struct{})
	s.mu.Unlock()
}
