package participant

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tccd/tccd/api"
)

// tryAnswer is the body of the answer to a try.
type tryAnswer struct {
	ParticipantLink wireLink        `json:"participantLink"`
	Data            json.RawMessage `json:"data,omitempty"`
}

// wireLink is a participant link as the Atomikos protocol suggests it.
type wireLink struct {
	URI     string `json:"uri"`
	Expires string `json:"expires"`
	Rel     string `json:"rel"`
}

// wireRecord is a reservation as GET shows it.
type wireRecord struct {
	ID    string `json:"id"`
	URI   string `json:"uri"`
	State State  `json:"state"`
	// Expires is the reservation's expiry; a void row has none, but
	// refuses a late try until RefusesTryUntil.
	Expires         string          `json:"expires,omitempty"`
	RefusesTryUntil string          `json:"refuses_try_until,omitempty"`
	CreatedAt       string          `json:"created_at"`
	UpdatedAt       string          `json:"updated_at"`
	Data            json.RawMessage `json:"data,omitempty"`
}

// handle turns a handler that returns an error into an http.Handler; the
// error is rendered by the one problem writer.
func (p *Participant) handle(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			writeProblem(w, r, p.log, err)
		}
	})
}

// serveTry: POST Path. 201 with the new reservation's link; 200 with the
// link of the existing reservation when the id chosen by ReservationID is
// taken by a live reservation (a retried try); 409 when it was cancelled
// or expired first (a hanging try); the TryFunc's Rejection; 500.
func (p *Participant) serveTry(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, p.maxBody)
	t, err := p.tryReserve(r.Context(), r)
	if err != nil {
		return err
	}
	uri := p.uri(r, t.id)
	exp := formatTime(time.UnixMilli(t.expires))
	h := w.Header()
	h.Set("Location", uri)
	h.Set("Link", fmt.Sprintf(`<%s>; rel="%s"; %s="%s"`, uri, api.RelParticipant, api.ParamExpires, exp))
	h.Set(api.HeaderExpires, exp)
	h.Set("Content-Type", api.MediaJSON)
	status := http.StatusOK
	if t.created {
		status = http.StatusCreated
	}
	w.WriteHeader(status)
	return writeJSONBody(w, tryAnswer{
		ParticipantLink: wireLink{URI: uri, Expires: exp, Rel: api.RelParticipant},
		Data:            t.data,
	})
}

// serveConfirm: PUT Path/{id}. 204 confirmed (again 204 if repeated); 404
// cancelled, expired or unknown; 503 busy; 500. With Tcc-Barrier (barrier
// mode): 204 once the round commits; 503 when it aborts or its outcome
// does not come; 409 when the application's Confirm failed.
func (p *Participant) serveConfirm(w http.ResponseWriter, r *http.Request) error {
	id, scope, err := p.itemOf(r)
	if err != nil {
		return err
	}
	if key := r.Header.Get(api.HeaderBarrier); key != "" {
		err = p.confirmBarrier(r.Context(), id, scope, key)
	} else {
		err = p.confirm(r.Context(), id, scope)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// serveCancel: DELETE Path/{id}. 204 cancelled or expired (again 204 if
// repeated); 404 never tried (remembered: a later try is refused); 409
// confirmed; 503 busy; 500.
func (p *Participant) serveCancel(w http.ResponseWriter, r *http.Request) error {
	id, scope, err := p.itemOf(r)
	if err != nil {
		return err
	}
	if err := p.cancel(r.Context(), id, scope); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// serveGet: GET Path/{id}. 200 with the bookkeeping row; 404 if none.
func (p *Participant) serveGet(w http.ResponseWriter, r *http.Request) error {
	id, scope, err := p.itemOf(r)
	if err != nil {
		return err
	}
	rec, ok, err := p.lookup(r.Context(), p.db, id)
	if err != nil {
		return p.dbErr(err)
	}
	if !ok || !rec.under(scope) {
		return rejectState(http.StatusNotFound, "", "no reservation %q", id)
	}
	w.Header().Set("Content-Type", api.MediaJSON)
	w.Header().Set("Cache-Control", "no-store")
	out := wireRecord{
		ID: rec.ID, URI: p.baseOf(r) + strings.TrimSuffix(r.URL.EscapedPath(), "/"), State: rec.State,
		CreatedAt: formatTime(rec.Created), UpdatedAt: formatTime(rec.Updated), Data: rec.Data,
	}
	if rec.State == Void {
		out.RefusesTryUntil = formatTime(rec.Expires)
	} else {
		out.Expires = formatTime(rec.Expires)
	}
	return writeJSONBody(w, out)
}

// itemOf reads the reservation id and the scope (the values of Path's
// wildcards) of a request on Path/{id}. An id or a scope that no try
// could have made is a Rejection 404.
func (p *Participant) itemOf(r *http.Request) (id, scope string, err error) {
	id, scope = r.PathValue("id"), p.scopeOf(r)
	if checkID(id) != nil || len(scope) > maxScopeLen {
		return "", "", rejectState(http.StatusNotFound, "", "no reservation %q", id)
	}
	return id, scope, nil
}

// scopeOf is the scope of a request under Path: the values of Path's
// wildcards, URL-encoded in the order of their names; "" when Path has
// none. It is recorded with a reservation by its try (or empty cancel)
// and compared by every later request naming the reservation, so that
// /flights/NOPE/bookings/{id} does not find a booking of LX318.
func (p *Participant) scopeOf(r *http.Request) string {
	if len(p.wildcards) == 0 {
		return ""
	}
	v := url.Values{}
	for _, name := range p.wildcards {
		v.Set(name, r.PathValue(name))
	}
	return v.Encode()
}

// uri is the reservation URI of id tried by r: the base, the try's path,
// the id.
func (p *Participant) uri(r *http.Request, id string) string {
	return p.baseOf(r) + strings.TrimSuffix(r.URL.EscapedPath(), "/") + "/" + id
}

func (p *Participant) baseOf(r *http.Request) string {
	if p.baseURL != "" {
		return p.baseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	// The Host header is the client's choice, and behind a proxy it is
	// not this service's address: say so, once.
	p.hostWarning.Do(func() {
		p.log.Warn("participant: no BaseURL; reservation URIs are built from the request's Host header, "+
			"which the client chooses and a proxy may change: set Config.BaseURL", "table", p.table, "host", r.Host)
	})
	return scheme + "://" + r.Host
}

// writeJSONBody writes v after the status line. An error can only be the
// connection's; it is not worth a problem document (the status is sent).
func writeJSONBody(w http.ResponseWriter, v any) error {
	_ = json.NewEncoder(w).Encode(v)
	return nil
}
