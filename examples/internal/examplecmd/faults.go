package examplecmd

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/tccd/tccd/participant"
)

// Faults makes a service's confirm or cancel fail on purpose. It exists for
// the end-to-end tests and for demonstrations, and answers only when the
// service runs with --test-faults:
//
//	POST /admin/faults {"op":"confirm","count":1}   the next confirm fails
//	GET  /admin/faults                              {"armed":{…},"fired":{…}}
//
// The failure happens inside the business function, after the kit has
// moved its bookkeeping row: the kit rolls both back and answers 500,
// exactly as for a real failure, and the coordinator's retry runs the
// function again.
type Faults struct {
	mu    sync.Mutex
	armed map[string]int
	fired map[string]int
}

// errInjected is the failure Faults injects.
var errInjected = fmt.Errorf("fault injected for a test (--test-faults)")

// Wrap returns fn failing while a fault is armed for op ("confirm" or
// "cancel").
func (f *Faults) Wrap(op string, fn participant.SettleFunc) participant.SettleFunc {
	return func(ctx context.Context, tx *sql.Tx, id string) error {
		if f.take(op) {
			return fmt.Errorf("%s %s: %w", op, id, errInjected)
		}
		return fn(ctx, tx, id)
	}
}

func (f *Faults) take(op string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.armed[op] <= 0 {
		return false
	}
	f.armed[op]--
	if f.fired == nil {
		f.fired = make(map[string]int)
	}
	f.fired[op]++
	return true
}

// Arm makes the next count calls of op fail.
func (f *Faults) Arm(op string, count int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.armed == nil {
		f.armed = make(map[string]int)
	}
	f.armed[op] += count
}

// FaultState is what GET /admin/faults shows: the failures still armed and
// those that happened, per operation.
type FaultState struct {
	Armed map[string]int `json:"armed"`
	Fired map[string]int `json:"fired"`
}

// Fault is the body of POST /admin/faults.
type Fault struct {
	Op    string `json:"op"`
	Count int    `json:"count"`
}

func (f *Faults) state() FaultState {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := FaultState{Armed: map[string]int{}, Fired: map[string]int{}}
	for k, v := range f.armed {
		s.Armed[k] = v
	}
	for k, v := range f.fired {
		s.Fired[k] = v
	}
	return s
}

// register adds the admin routes to mux.
func (f *Faults) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/faults", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(f.state())
	})
	mux.HandleFunc("POST /admin/faults", func(w http.ResponseWriter, r *http.Request) {
		var in Fault
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&in); err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if (in.Op != "confirm" && in.Op != "cancel") || in.Count < 1 {
			http.Error(w, `want {"op":"confirm"|"cancel","count":n>0}`, http.StatusBadRequest)
			return
		}
		f.Arm(in.Op, in.Count)
		w.WriteHeader(http.StatusNoContent)
	})
}
