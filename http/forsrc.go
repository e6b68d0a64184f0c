package http

import (
	"net/http"
	"strings"
	"time"

	"github.com/tccd/tccd"
)

// forsrc's TCC server API (forsrc's Spring Cloud TCC server), at
// /tcc/api/v1/tcc: a transaction is created with its links and, by
// default, confirmed at once, in barrier mode; its participants are
// confirmed with PUT <uri>/confirm and cancelled with DELETE <uri>/cancel.
// It is an ordinary tccd transaction: the native API, the event stream and
// the admin actions see it under the same id. Answers carry the headers
// tccId and tccStatus (tccError on errors) and the native transaction
// document.

// ForsrcRequest is the body of POST /tcc/api/v1/tcc/.
type ForsrcRequest struct {
	// Expire is when the transaction expires (RFC 3339): an active one is
	// cancelled then.
	Expire   string       `json:"expire"`
	TccLinks []ForsrcLink `json:"tccLinks"`
	// Confirm (default true) confirms at once; false only registers the
	// transaction, to be finished by PUT …/confirm/{id} or …/cancel/{id}.
	Confirm *bool `json:"confirm"`
}

// ForsrcLink is one participant of a forsrc transaction.
type ForsrcLink struct {
	URI    string `json:"uri"`
	Expire string `json:"expire"`
	// ResourceID is forsrc's name for the resource; tccd does not use it.
	ResourceID string `json:"resourceId,omitempty"`
}

// Headers of forsrc's answers.
const (
	headerForsrcID     = "tccId"
	headerForsrcStatus = "tccStatus"
	headerForsrcError  = "tccError"
)

// forsrcStatus names a state in forsrc's words.
func forsrcStatus(s tccd.State) string {
	switch s {
	case tccd.StateActive:
		return "TRY"
	case tccd.StateConfirmed:
		return "CONFIRM"
	case tccd.StateCancelled:
		return "CANCEL"
	}
	return strings.ToUpper(string(s)) // CONFIRMING, CANCELLING, HEURISTIC
}

// forsrc adapts a forsrc handler: errors are problem documents with the
// tccError header (and tccId/tccStatus when the error carries the
// transaction).
func (s *Server) forsrc(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return s.native(func(w http.ResponseWriter, r *http.Request) error {
		err := fn(w, r)
		if err != nil {
			w.Header().Set(headerForsrcError, string(tccd.ErrorCode(err)))
			if tx := tccd.ErrorTx(err); tx != nil {
				w.Header().Set(headerForsrcID, tx.ID)
				w.Header().Set(headerForsrcStatus, forsrcStatus(tx.State))
			}
		}
		return err
	})
}

// writeForsrc answers with the transaction and forsrc's headers.
func writeForsrc(w http.ResponseWriter, status int, tx *tccd.Transaction) {
	w.Header().Set(headerForsrcID, tx.ID)
	w.Header().Set(headerForsrcStatus, forsrcStatus(tx.State))
	writeTransaction(w, status, FromTx(tx))
}

// forsrcCreate serves POST /tcc/api/v1/tcc/: a barrier-mode transaction
// with the links, confirmed at once unless "confirm": false (then 201).
func (s *Server) forsrcCreate(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r, "application/json")
	if err != nil {
		return err
	}
	var req ForsrcRequest
	if err := strictDecode(body, &req, false); err != nil {
		return err
	}
	begin := tccd.BeginRequest{Protocol: tccd.ProtocolForsrc, Barrier: true}
	if req.Expire != "" {
		exp, err := ParseExpires(req.Expire)
		if err != nil {
			return tccd.FieldError("expire", "expire must be an RFC 3339 date-time, not %q", req.Expire)
		}
		if begin.Timeout = time.Until(exp).Round(time.Millisecond); begin.Timeout <= 0 {
			return tccd.FieldError("expire", "the transaction expired at %s", req.Expire)
		}
	}
	wire := make([]Link, len(req.TccLinks))
	for i := range req.TccLinks {
		wire[i] = Link{URI: &req.TccLinks[i].URI, Expires: &req.TccLinks[i].Expire}
	}
	links, err := toLinks(wire, "tccLinks")
	if err != nil {
		return err
	}
	for _, link := range links {
		base := strings.TrimSuffix(link.URI, "/")
		link.ConfirmURI, link.CancelURI = base+"/confirm", base+"/cancel"
		begin.Participants = append(begin.Participants, link)
	}
	tx, err := s.coord.Begin(r.Context(), begin)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/tcc/api/v1/tcc/"+tx.ID)
	if req.Confirm != nil && !*req.Confirm {
		writeForsrc(w, http.StatusCreated, tx)
		return nil
	}
	return s.forsrcSettle(w, r, tx.ID, true)
}

func (s *Server) forsrcConfirm(w http.ResponseWriter, r *http.Request) error {
	return s.forsrcSettle(w, r, r.PathValue("id"), true)
}

func (s *Server) forsrcCancel(w http.ResponseWriter, r *http.Request) error {
	return s.forsrcSettle(w, r, r.PathValue("id"), false)
}

// forsrcSettle confirms or cancels and answers as the native API does
// (200 done, 202 in progress, 409 otherwise), with forsrc's headers.
func (s *Server) forsrcSettle(w http.ResponseWriter, r *http.Request, id string, confirm bool) error {
	var tx *tccd.Transaction
	var err error
	want := tccd.StateConfirmed
	if confirm {
		tx, err = s.coord.Confirm(r.Context(), id, nil)
	} else {
		want = tccd.StateCancelled
		tx, err = s.coord.Cancel(r.Context(), id)
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if tx.State != want {
		status = http.StatusAccepted
		w.Header().Set("Location", "/tcc/api/v1/tcc/"+tx.ID)
		w.Header().Set("Retry-After", "1")
	}
	writeForsrc(w, status, tx)
	return nil
}

func (s *Server) forsrcGet(w http.ResponseWriter, r *http.Request) error {
	tx, err := s.coord.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeForsrc(w, http.StatusOK, tx)
	return nil
}
