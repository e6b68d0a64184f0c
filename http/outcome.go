package http

import (
	"net/http"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
)

// Wire forms of a participant's question for its outcome.
type (
	OutcomeRequest = api.OutcomeRequest
	Outcome        = api.Outcome
)

// DecodeOutcome parses the body of POST
// /api/v1/transactions/{id}/participants/outcome: {"uri": "<link URI>"}.
// The URI is checked by the coordinator (tccd.CanonicalURI).
func DecodeOutcome(body []byte) (string, error) {
	var req OutcomeRequest
	if err := strictDecode(body, &req, true); err != nil {
		return "", err
	}
	if req.URI == "" {
		return "", tccd.FieldError("uri", "the body must name the participant's link URI: {\"uri\": \"…\"}")
	}
	return req.URI, nil
}

// participantOutcome serves POST
// /api/v1/transactions/{id}/participants/outcome: a participant asks how
// the transaction and its own link stand (200 with Outcome), with the
// token of its own service — the coordinator lets it read that much of a
// transaction another client created, because it names its link URI; 404
// alike for no such transaction and no such participant. It is a POST
// that changes nothing: the link URI travels in the body, not in a query
// string, because it is the capability (access logs and proxies keep
// query strings) and because a URI with a query of its own would need
// encoding twice.
func (s *Server) participantOutcome(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r, "application/json")
	if err != nil {
		return err
	}
	uri, err := DecodeOutcome(body)
	if err != nil {
		return err
	}
	o, err := s.coord.ParticipantOutcome(r.Context(), r.PathValue("id"), uri)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, Outcome{
		Transaction: o.Transaction, State: string(o.State),
		Participant: api.OutcomeParticipant{URI: o.URI, State: string(o.ParticipantState)},
	})
	return nil
}
