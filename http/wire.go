package http

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
)

// The wire types live in package api, which the client SDK shares.
type (
	Transaction     = api.Transaction
	Participant     = api.Participant
	TransactionList = api.TransactionList
	Link            = api.Link
	BeginRequest    = api.BeginRequest
	ConfirmRequest  = api.ConfirmRequest
	AtomikosRequest = api.AtomikosRequest
	ResolveRequest  = api.ResolveRequest
	PurgeResult     = api.PurgeResult
	MessageRequest  = api.MessageRequest
)

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// FromTx converts a domain transaction to its wire form.
func FromTx(tx *tccd.Transaction) Transaction {
	out := Transaction{
		ID: tx.ID, Protocol: string(tx.Protocol), Name: tx.Name, Labels: tx.Labels,
		State: string(tx.State), Reason: string(tx.Reason),
		Deadline: optTime(tx.Deadline), CreatedAt: tx.CreatedAt.UTC(), UpdatedAt: tx.UpdatedAt.UTC(),
		DecidedAt: optTime(tx.DecidedAt), FinishedAt: optTime(tx.FinishedAt),
		CreatedBy: tx.CreatedBy, ResolvedBy: tx.ResolvedBy, ResolutionNote: tx.ResolutionNote,
		Notify: tx.Notify, Barrier: tx.Barrier,
		Participants: make([]Participant, len(tx.Participants)),
	}
	if tx.Round != nil {
		out.Round = &api.Round{N: tx.Round.N, Committed: tx.Round.Committed}
	}
	if n := tx.Notification; n.State != tccd.NotificationNone {
		out.Notification = &api.Notification{
			State: string(n.State), Attempts: n.Attempts, DeliveryID: n.DeliveryID,
			LastStatus: n.LastStatus, LastError: n.LastError, LastAttemptAt: optTime(n.LastAttemptAt),
		}
	}
	if tx.Timeout > 0 {
		out.Timeout = tx.Timeout.String()
	}
	for i, p := range tx.Participants {
		wp := Participant{
			URI: p.URI, Expires: p.Expires.UTC(), State: string(p.State), Attempts: p.Attempts,
			Style: string(p.Style), Compensate: p.CompensateURI,
			LastStatus: p.LastStatus, LastError: p.LastError, LastAttemptAt: optTime(p.LastAttemptAt),
		}
		if p.Attempts > 0 {
			ms := float64(p.LastDuration.Microseconds()) / 1000
			wp.LastDurationMS = &ms
		}
		if p.Message != nil {
			wp.Subject, wp.MessageID = p.Message.Subject, tccd.MessageID(tx.ID, &tx.Participants[i])
		}
		out.Participants[i] = wp
	}
	return out
}

// Limits on the contents of requests (beyond the body size).
const (
	maxNameLen    = 256
	maxLabels     = 32
	maxLabelKey   = 64
	maxLabelValue = 256
)

// strictDecode decodes exactly one JSON value from body into v. Unknown
// fields are an error when strict is set.
func strictDecode(body []byte, v any, strict bool) error {
	if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 && trimmed[0] != '{' {
		return tccd.Errorf(tccd.EInvalid, "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return tccd.Errorf(tccd.EInvalid, "malformed JSON: unexpected data after the JSON value")
	}
	return nil
}

var unknownField = regexp.MustCompile(`^json: unknown field "(.*)"$`)

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return tccd.Errorf(tccd.EInvalid, "request body must not be empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return tccd.Errorf(tccd.EInvalid, "malformed JSON: unexpected end of input")
	case errors.As(err, &syn):
		return tccd.Errorf(tccd.EInvalid, "malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return tccd.Errorf(tccd.EInvalid, "request body must be a JSON object, not %s", typ.Value)
		}
		return tccd.FieldError(field, "field %q must be %s, not %s", field, jsonType(typ.Type.String()), typ.Value)
	}
	if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
		return tccd.FieldError(m[1], "unknown field %q", m[1])
	}
	return tccd.Errorf(tccd.EInvalid, "malformed JSON: %s", err.Error())
}

func jsonType(goType string) string {
	switch {
	case goType == "string" || goType == "*string":
		return "a string"
	case strings.HasPrefix(goType, "map["):
		return "an object of strings"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "http."):
		return "an object"
	default:
		return "of type " + goType
	}
}

var basicOffset = regexp.MustCompile(`([+-]\d{2})(\d{2})$`)

// ParseExpires parses an expiry: an RFC 3339 / ISO-8601 date-time with an
// offset (Z, +01:00 or +0100) and optional fractional seconds, after the
// Unix epoch and not after 2262-04-11T23:47:16.854775807Z.
func ParseExpires(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil && tccd.ExpiresInRange(t) {
		// The usual form; the rest below only widens what is accepted.
		return t, nil
	}
	norm := strings.ToUpper(strings.TrimSpace(s))
	if len(norm) > 10 && norm[10] == ' ' {
		norm = norm[:10] + "T" + norm[11:]
	}
	if !strings.HasSuffix(norm, "Z") && !strings.Contains(norm[min(len(norm), 19):], ":") {
		norm = basicOffset.ReplaceAllString(norm, "$1:$2")
	}
	t, err := time.Parse(time.RFC3339Nano, norm)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid date format: %q", s)
	}
	if !tccd.ExpiresInRange(t) {
		return time.Time{}, fmt.Errorf("date out of range: %q", s)
	}
	return t, nil
}

// toLinks checks and converts request links. Messages follow the Atomikos
// reference coordinator's wording.
func toLinks(in []Link, field string) ([]tccd.Link, error) {
	out := make([]tccd.Link, 0, len(in))
	for i, l := range in {
		if l.URI == nil || *l.URI == "" {
			return nil, tccd.FieldError(fmt.Sprintf("%s[%d].uri", field, i), "each participantLink must have a value for 'uri'")
		}
		if l.Expires == nil || *l.Expires == "" {
			return nil, tccd.FieldError(fmt.Sprintf("%s[%d].expires", field, i), "each participantLink must have an 'expires'")
		}
		exp, err := ParseExpires(*l.Expires)
		if err != nil {
			return nil, tccd.FieldError(fmt.Sprintf("%s[%d].expires", field, i), "invalid date format for participantLink 'expires': %s", *l.Expires)
		}
		if err := tccd.ValidateURI(*l.URI); err != nil {
			var e *tccd.Error
			if errors.As(err, &e) {
				e.Field = fmt.Sprintf("%s[%d].uri", field, i)
			}
			return nil, err
		}
		switch l.Style {
		case "", string(tccd.StyleTCC), string(tccd.StyleCompensate):
		default:
			return nil, tccd.FieldError(fmt.Sprintf("%s[%d].style", field, i), "style must be %q or %q, not %q", tccd.StyleTCC, tccd.StyleCompensate, l.Style)
		}
		if l.Compensate != "" {
			if err := tccd.ValidateURI(l.Compensate); err != nil {
				return nil, tccd.FieldError(fmt.Sprintf("%s[%d].compensate", field, i), "compensate: %s", tccd.ErrorMessage(err))
			}
		}
		out = append(out, tccd.Link{URI: *l.URI, Expires: exp, Style: tccd.Style(l.Style), CompensateURI: l.Compensate})
	}
	return out, nil
}

// DecodeBegin parses the body of POST /api/v1/transactions. An empty body
// begins a transaction with the defaults.
func DecodeBegin(body []byte) (tccd.BeginRequest, error) {
	var req BeginRequest
	if len(bytes.TrimSpace(body)) > 0 {
		var ok bool
		if req, ok = decodeBeginFast(body); !ok {
			req = BeginRequest{}
			if err := strictDecode(body, &req, true); err != nil {
				return tccd.BeginRequest{}, err
			}
		}
	}
	out := tccd.BeginRequest{Name: req.Name, Labels: req.Labels, Notify: req.Notify, Barrier: req.Barrier}
	if req.Timeout != nil {
		d, err := time.ParseDuration(*req.Timeout)
		if err != nil || d <= 0 {
			return tccd.BeginRequest{}, tccd.FieldError("timeout", "timeout must be a positive duration such as \"30s\" or \"2m\", not %q", *req.Timeout)
		}
		out.Timeout = d
	}
	if len(req.Name) > maxNameLen {
		return tccd.BeginRequest{}, tccd.FieldError("name", "name is longer than %d bytes", maxNameLen)
	}
	if len(req.Labels) > maxLabels {
		return tccd.BeginRequest{}, tccd.FieldError("labels", "at most %d labels", maxLabels)
	}
	for k, v := range req.Labels {
		if k == "" || len(k) > maxLabelKey || len(v) > maxLabelValue {
			return tccd.BeginRequest{}, tccd.FieldError("labels", "label keys must be 1 to %d bytes and values at most %d", maxLabelKey, maxLabelValue)
		}
	}
	links, err := toLinks(req.Participants, "participants")
	if err != nil {
		return tccd.BeginRequest{}, err
	}
	out.Participants = links
	return out, nil
}

// DecodeLink parses the body of POST /api/v1/transactions/{id}/participants.
func DecodeLink(body []byte) (tccd.Link, error) {
	l, ok := decodeLinkFast(body)
	if !ok {
		if err := strictDecode(body, &l, true); err != nil {
			return tccd.Link{}, err
		}
	}
	links, err := toLinks([]Link{l}, "participant")
	if err != nil {
		var e *tccd.Error
		if errors.As(err, &e) {
			e.Field = strings.TrimPrefix(e.Field, "participant[0].")
		}
		return tccd.Link{}, err
	}
	return links[0], nil
}

// DecodeMessage parses the body of POST …/messages.
func DecodeMessage(body []byte) (tccd.Message, error) {
	var req MessageRequest
	if err := strictDecode(body, &req, true); err != nil {
		return tccd.Message{}, err
	}
	m := tccd.Message{Subject: req.Subject, Headers: req.Headers}
	switch {
	case req.Data != nil && req.DataBase64 != nil:
		return m, tccd.FieldError("data", "give data or data_base64, not both")
	case req.Data != nil:
		m.Data = []byte(req.Data)
	case req.DataBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*req.DataBase64)
		if err != nil {
			return m, tccd.FieldError("data_base64", "data_base64 is not standard base64: %v", err)
		}
		m.Data = b
	default:
		return m, tccd.FieldError("data", "a message needs data (any JSON value) or data_base64")
	}
	return m, nil
}

// DecodeConfirm parses the optional body of PUT …/confirm.
func DecodeConfirm(body []byte) ([]tccd.Link, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	var req ConfirmRequest
	if err := strictDecode(body, &req, true); err != nil {
		return nil, err
	}
	return toLinks(req.Participants, "participants")
}

// DecodeCancel checks the body of PUT …/cancel: empty, or an empty JSON object.
func DecodeCancel(body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var req struct{}
	return strictDecode(body, &req, true)
}

// DecodeResolve parses the body of PUT …/resolve.
func DecodeResolve(body []byte) (tccd.State, string, error) {
	var req ResolveRequest
	if err := strictDecode(body, &req, true); err != nil {
		return "", "", err
	}
	st := tccd.State(req.State)
	if st != tccd.StateConfirmed && st != tccd.StateCancelled {
		return "", "", tccd.FieldError("state", "state must be %q or %q, not %q", tccd.StateConfirmed, tccd.StateCancelled, req.State)
	}
	if len(req.Note) > tccd.MaxNoteLength {
		return "", "", tccd.FieldError("note", "note is longer than %d bytes", tccd.MaxNoteLength)
	}
	return st, req.Note, nil
}

// DecodeAtomikos parses the body of the Atomikos coordinator endpoints.
// Unknown fields are ignored, as the protocol's clients may send more.
func DecodeAtomikos(body []byte) ([]tccd.Link, error) {
	if len(bytes.TrimSpace(body)) == 0 || string(bytes.TrimSpace(body)) == "null" {
		return nil, tccd.Errorf(tccd.EInvalid, "transaction must not be null")
	}
	if links, ok := decodeAtomikosFast(body); ok {
		return toLinks(links, "participantLinks")
	}
	var req AtomikosRequest
	if err := strictDecode(body, &req, false); err != nil {
		return nil, err
	}
	if req.ParticipantLinks == nil {
		// {} or {"participantLink": …} says nothing to confirm or cancel;
		// taking it for an empty set would answer "all confirmed".
		return nil, tccd.FieldError("participantLinks", "transaction must have a 'participantLinks' array (an empty array for no participants)")
	}
	return toLinks(req.ParticipantLinks, "participantLinks")
}
