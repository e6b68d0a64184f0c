package testpart

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Fault makes the next Count calls of an operation misbehave.
type Fault struct {
	// Op is "confirm", "cancel", "compensate" or "any" — or "outcome": a barrier-mode
	// confirm once the coordinator has answered its report, before the kit
	// commits or rolls back; only Hold applies to it.
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

// AddFault installs a fault.
func (s *Service) AddFault(f Fault) {
	s.mu.Lock()
	s.faults = append(s.faults, &f)
	s.mu.Unlock()
}

// fault returns the fault that applies to this call, consuming one use,
// and the channel that releases held calls.
func (s *Service) fault(op string) (*Fault, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release == nil {
		s.release = make(chan struct{})
	}
	for i, f := range s.faults {
		if f.Op != op && (f.Op != "any" || op == "outcome") {
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

// preamble applies latency and faults; it reports whether the call is
// answered already (or its caller gone), and whether to fail after doing
// the work.
func (s *Service) preamble(w http.ResponseWriter, r *http.Request, op string) (answered bool, after *Fault) {
	if lat := time.Duration(s.latency.Load()); lat > 0 {
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

// loseReply ends a call whose work is done without its answer: the
// connection is reset, or, where it cannot be, the fault's status is
// answered.
func (s *Service) loseReply(w http.ResponseWriter, f *Fault) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	status := f.Status
	if status == 0 {
		status = http.StatusBadGateway
	}
	w.WriteHeader(status)
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

// ClearFaults removes every fault and lets held calls go on.
func (s *Service) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	if s.release != nil {
		close(s.release)
		s.release = nil
	}
}

// reporter is the transport of the kit's barrier reports: it counts them
// and applies the "outcome" faults to their answers.
type reporter struct {
	s    *Service
	next http.RoundTripper
}

func (t *reporter) RoundTrip(r *http.Request) (*http.Response, error) {
	t.s.reports.Add(1)
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	f, release := t.s.fault("outcome")
	if f == nil || !f.Hold {
		return resp, nil
	}
	// Read the answer first: it is what the kit acts on when let go.
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	t.s.held.Add(1)
	defer t.s.held.Add(-1)
	select {
	case <-release:
	case <-r.Context().Done():
		// The confirm's caller went away (a coordinator killed): the kit
		// hears nothing and rolls back.
		return nil, r.Context().Err()
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}
