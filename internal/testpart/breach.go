package testpart

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
)

// Breach is a way of breaking the TCC participant contract, for testing
// what checks a participant against it (tccd check-participant). Where
// a Fault makes calls fail as a network or a busy service does, a Breach
// makes the service answer as a wrongly written one would.
type Breach string

// The breaches. Each breaks one rule of the contract and nothing else.
const (
	// BreachConfirmTwice: a confirm of a confirmed reservation answers
	// 409 (confirm is not idempotent).
	BreachConfirmTwice Breach = "confirm_twice"
	// BreachCancelTwice: a cancel of a cancelled reservation answers 409
	// (cancel is not idempotent).
	BreachCancelTwice Breach = "cancel_twice"
	// BreachCancelUnknown: a cancel of a reservation never tried answers
	// 500.
	BreachCancelUnknown Breach = "cancel_unknown"
	// BreachConfirmUnknown: a confirm of a reservation never tried
	// answers 204.
	BreachConfirmUnknown Breach = "confirm_unknown"
	// BreachConfirmCancelled: a confirm of a cancelled reservation
	// answers 204 (and leaves it cancelled).
	BreachConfirmCancelled Breach = "confirm_cancelled"
	// BreachCancelConfirmed: a cancel of a confirmed reservation answers
	// 204 (and leaves it confirmed).
	BreachCancelConfirmed Breach = "cancel_confirmed"
	// BreachNoExpiry: a confirm of an expired reservation answers 204.
	BreachNoExpiry Breach = "no_expiry"
	// BreachTryTwice: a repeated try with the same Idempotency-Key makes
	// a new reservation.
	BreachTryTwice Breach = "try_twice"
	// BreachTryContentType: the try's JSON answer is labelled text/plain
	// (its Link header still names the reservation).
	BreachTryContentType Breach = "try_content_type"
	// BreachRedirect: confirms and cancels answer 307 Temporary Redirect
	// to the reservation's URI with a slash added.
	BreachRedirect Breach = "redirect"
)

// Breaches lists every Breach.
var Breaches = []Breach{
	BreachConfirmTwice, BreachCancelTwice, BreachCancelUnknown, BreachConfirmUnknown, BreachConfirmCancelled,
	BreachCancelConfirmed, BreachNoExpiry, BreachTryTwice, BreachTryContentType, BreachRedirect,
}

// HeaderIdempotencyKey carries a try's key to a BreachHandler.
const HeaderIdempotencyKey = "Idempotency-Key"

// BreachHandler serves a Service with breaches of the contract switched
// on and off through the service's fault API: POST /faults with
// {"breach": "<name>"} switches one on, DELETE /faults clears them with
// the faults. Other requests to /faults go to the service.
//
// It also makes tries idempotent: a try with an Idempotency-Key header
// that was seen before is answered the first answer again, as a service
// that recognises repeated tries does.
type BreachHandler struct {
	svc *Service

	mu       sync.Mutex
	breaches []Breach
	// tries are the answers to tries, by idempotency key.
	tries map[string]*httptest.ResponseRecorder
}

// NewBreachHandler returns a handler of svc with no breach switched on.
func NewBreachHandler(svc *Service) *BreachHandler {
	return &BreachHandler{svc: svc, tries: map[string]*httptest.ResponseRecorder{}}
}

// Set switches on the breaches, and off every other one.
func (h *BreachHandler) Set(b ...Breach) {
	h.mu.Lock()
	h.breaches = slices.Clone(b)
	h.mu.Unlock()
}

func (h *BreachHandler) on(b Breach) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.breaches, b)
}

func (h *BreachHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/faults":
		h.faults(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/reservations":
		h.try(w, r)
	case (r.Method == http.MethodPut || r.Method == http.MethodDelete) && strings.HasPrefix(r.URL.Path, "/reservations/"):
		if !h.settle(w, r) {
			h.svc.ServeHTTP(w, r)
		}
	default:
		h.svc.ServeHTTP(w, r)
	}
}

func (h *BreachHandler) faults(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodDelete {
		h.Set()
		h.svc.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var f struct {
		Breach Breach `json:"breach"`
	}
	if json.Unmarshal(body, &f) == nil && f.Breach != "" {
		if !slices.Contains(Breaches, f.Breach) {
			http.Error(w, "unknown breach "+string(f.Breach), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.breaches = append(h.breaches, f.Breach)
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	h.svc.ServeHTTP(w, r)
}

// try answers a try, once per idempotency key.
func (h *BreachHandler) try(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(HeaderIdempotencyKey)
	if key == "" || h.on(BreachTryTwice) {
		r.Header.Del(HeaderIdempotencyKey) // the service would recognise it
		h.serveTry(w, r)
		return
	}
	// One try at a time: a repeat waits for the first answer.
	h.mu.Lock()
	defer h.mu.Unlock()
	rec, seen := h.tries[key]
	if !seen {
		rec = httptest.NewRecorder()
		h.svc.ServeHTTP(rec, r)
		if rec.Code < 300 {
			h.tries[key] = rec
		}
	}
	copyAnswer(w, rec, slices.Contains(h.breaches, BreachTryContentType))
}

func (h *BreachHandler) serveTry(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	h.svc.ServeHTTP(rec, r)
	copyAnswer(w, rec, h.on(BreachTryContentType))
}

func copyAnswer(w http.ResponseWriter, rec *httptest.ResponseRecorder, plain bool) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	if plain && rec.Code < 300 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// settle answers a confirm or cancel as a switched-on breach says, and
// reports whether it did.
func (h *BreachHandler) settle(w http.ResponseWriter, r *http.Request) bool {
	confirm := r.Method == http.MethodPut
	if h.on(BreachRedirect) {
		http.Redirect(w, r, r.URL.Path+"/", http.StatusTemporaryRedirect)
		return true
	}
	id := strings.TrimPrefix(r.URL.Path, "/reservations/")
	res, found, err := h.svc.Get(r.Context(), id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return true
	}
	state := res.State
	if !found || state == Void {
		state = "unknown"
	}
	answer := func(status int) bool {
		w.WriteHeader(status)
		return true
	}
	switch {
	case confirm && state == Confirmed && h.on(BreachConfirmTwice):
		return answer(http.StatusConflict)
	case !confirm && state == Cancelled && h.on(BreachCancelTwice):
		return answer(http.StatusConflict)
	case !confirm && state == "unknown" && h.on(BreachCancelUnknown):
		return answer(http.StatusInternalServerError)
	case confirm && state == "unknown" && h.on(BreachConfirmUnknown):
		return answer(http.StatusNoContent)
	case confirm && state == Cancelled && h.on(BreachConfirmCancelled):
		return answer(http.StatusNoContent)
	case !confirm && state == Confirmed && h.on(BreachCancelConfirmed):
		return answer(http.StatusNoContent)
	case confirm && state == Expired && h.on(BreachNoExpiry):
		return answer(http.StatusNoContent)
	}
	return false
}
