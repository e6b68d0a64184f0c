package postgres

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tccd/tccd"
)

// recordFormat is the format of the record column this tccd writes. A
// field added to tccd.Transaction gets a new optional key here, with no
// new format and no migration: a record without the key reads it empty.
// The format changes only when an existing key changes meaning.
const recordFormat = 1

// record is the stored form of a transaction: JSON of this struct, never
// of tccd.Transaction itself, so that renaming a Go field cannot change
// what is stored. Times are RFC 3339 strings in UTC with nanoseconds ("",
// omitted, for none), durations nanoseconds. Version is not here: the
// version column is the one truth the compare-and-set reads.
type record struct {
	Format         int               `json:"format"`
	ID             string            `json:"id"`
	Protocol       string            `json:"protocol,omitempty"`
	Name           string            `json:"name,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	State          string            `json:"state"`
	Reason         string            `json:"reason,omitempty"`
	TimeoutNS      int64             `json:"timeout_ns,omitempty"`
	Deadline       string            `json:"deadline,omitempty"`
	CreatedAt      string            `json:"created_at,omitempty"`
	UpdatedAt      string            `json:"updated_at,omitempty"`
	DecidedAt      string            `json:"decided_at,omitempty"`
	FinishedAt     string            `json:"finished_at,omitempty"`
	CreatedBy      string            `json:"created_by,omitempty"`
	ResolvedBy     string            `json:"resolved_by,omitempty"`
	ResolutionNote string            `json:"resolution_note,omitempty"`
	Owner          string            `json:"owner,omitempty"`
	LeaseUntil     string            `json:"lease_until,omitempty"`
	Epoch          uint64            `json:"epoch,omitempty"`
	Notify         string            `json:"notify,omitempty"`
	Notification   *notification     `json:"notification,omitempty"`
	Barrier        bool              `json:"barrier,omitempty"`
	TraceParent    string            `json:"traceparent,omitempty"`
	Round          *round            `json:"round,omitempty"`
	Participants   []participant     `json:"participants,omitempty"`
}

type round struct {
	N         int               `json:"n"`
	Committed bool              `json:"committed,omitempty"`
	Keys      map[string]string `json:"keys,omitempty"`
}

type participant struct {
	URI            string   `json:"uri"`
	Expires        string   `json:"expires,omitempty"`
	State          string   `json:"state"`
	Attempts       int      `json:"attempts,omitempty"`
	LastStatus     int      `json:"last_status,omitempty"`
	LastError      string   `json:"last_error,omitempty"`
	LastAttemptAt  string   `json:"last_attempt_at,omitempty"`
	LastDurationNS int64    `json:"last_duration_ns,omitempty"`
	ConfirmURI     string   `json:"confirm_uri,omitempty"`
	CancelURI      string   `json:"cancel_uri,omitempty"`
	Style          string   `json:"style,omitempty"`
	CompensateURI  string   `json:"compensate_uri,omitempty"`
	Message        *message `json:"message,omitempty"`
	FirstAttemptAt string   `json:"first_attempt_at,omitempty"`
}

// message is a message participant's message; Data is base64 in JSON.
type message struct {
	Subject string            `json:"subject"`
	Data    []byte            `json:"data,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

type notification struct {
	State         string `json:"state,omitempty"`
	DeliveryID    string `json:"delivery_id,omitempty"`
	Since         string `json:"since,omitempty"`
	Attempts      int    `json:"attempts,omitempty"`
	LastStatus    int    `json:"last_status,omitempty"`
	LastError     string `json:"last_error,omitempty"`
	LastAttemptAt string `json:"last_attempt_at,omitempty"`
}

// encoder turns times into strings and remembers the first time it
// cannot write (RFC 3339 has four-digit years).
type encoder struct{ err error }

func (e *encoder) time(field string, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		if e.err == nil {
			e.err = tccd.FieldError(field, "%s is out of range (year %d)", field, y)
		}
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// encode returns the record column of tx.
func encode(tx *tccd.Transaction) ([]byte, error) {
	var e encoder
	r := record{
		Format: recordFormat, ID: tx.ID, Protocol: string(tx.Protocol), Name: tx.Name, Labels: tx.Labels,
		State: string(tx.State), Reason: string(tx.Reason), TimeoutNS: int64(tx.Timeout),
		Deadline: e.time("deadline", tx.Deadline), CreatedAt: e.time("created_at", tx.CreatedAt),
		UpdatedAt: e.time("updated_at", tx.UpdatedAt), DecidedAt: e.time("decided_at", tx.DecidedAt),
		FinishedAt: e.time("finished_at", tx.FinishedAt),
		CreatedBy:  tx.CreatedBy, ResolvedBy: tx.ResolvedBy, ResolutionNote: tx.ResolutionNote,
		Owner: tx.Owner, LeaseUntil: e.time("lease_until", tx.LeaseUntil), Notify: tx.Notify,
		Barrier: tx.Barrier, Epoch: tx.Epoch, TraceParent: tx.TraceParent,
	}
	if tx.Round != nil {
		r.Round = &round{N: tx.Round.N, Committed: tx.Round.Committed, Keys: tx.Round.Keys}
	}
	if n := tx.Notification; n != (tccd.Notification{}) {
		r.Notification = &notification{
			State: string(n.State), DeliveryID: n.DeliveryID, Since: e.time("notification.since", n.Since), Attempts: n.Attempts, LastStatus: n.LastStatus,
			LastError: n.LastError, LastAttemptAt: e.time("notification.last_attempt_at", n.LastAttemptAt),
		}
	}
	if len(tx.Participants) > 0 {
		r.Participants = make([]participant, len(tx.Participants))
		for i, p := range tx.Participants {
			r.Participants[i] = participant{
				URI: p.URI, Expires: e.time("expires", p.Expires), State: string(p.State), Attempts: p.Attempts,
				LastStatus: p.LastStatus, LastError: p.LastError, LastAttemptAt: e.time("last_attempt_at", p.LastAttemptAt),
				LastDurationNS: int64(p.LastDuration), ConfirmURI: p.ConfirmURI, CancelURI: p.CancelURI,
				Style: string(p.Style), CompensateURI: p.CompensateURI,
				FirstAttemptAt: e.time("first_attempt_at", p.FirstAttemptAt),
			}
			if m := p.Message; m != nil {
				r.Participants[i].Message = &message{Subject: m.Subject, Data: m.Data, Headers: m.Headers}
			}
		}
	}
	if e.err != nil {
		return nil, e.err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Kept readable for people who query the column: < > & as they are.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&r); err != nil {
		return nil, fmt.Errorf("encode %s: %w", tx.ID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

var errCorrupt = errors.New("corrupt record")

// decoder parses times and remembers the first it cannot read.
type decoder struct{ err error }

func (d *decoder) time(field, s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("%w: %s: %v", errCorrupt, field, err)
	}
	return t.UTC()
}

// decode reads a record column. Keys it does not know are an error, not
// a silent loss: a record written by a newer tccd would otherwise lose
// them when this one writes it back.
func decode(b []byte, version uint64) (*tccd.Transaction, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w (written by a newer tccd?): %v", errCorrupt, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the record", errCorrupt)
	}
	switch {
	case r.Format > recordFormat:
		return nil, fmt.Errorf("%w: format %d is newer than this tccd knows (%d): upgrade tccd", errCorrupt, r.Format, recordFormat)
	case r.Format < 1:
		return nil, fmt.Errorf("%w: no format", errCorrupt)
	}
	var d decoder
	tx := &tccd.Transaction{
		ID: r.ID, Protocol: tccd.Protocol(r.Protocol), Name: r.Name, Labels: r.Labels,
		State: tccd.State(r.State), Reason: tccd.Reason(r.Reason), Timeout: time.Duration(r.TimeoutNS),
		Deadline: d.time("deadline", r.Deadline), CreatedAt: d.time("created_at", r.CreatedAt),
		UpdatedAt: d.time("updated_at", r.UpdatedAt), DecidedAt: d.time("decided_at", r.DecidedAt),
		FinishedAt: d.time("finished_at", r.FinishedAt),
		CreatedBy:  r.CreatedBy, ResolvedBy: r.ResolvedBy, ResolutionNote: r.ResolutionNote,
		Owner: r.Owner, LeaseUntil: d.time("lease_until", r.LeaseUntil), Notify: r.Notify,
		Barrier: r.Barrier, Epoch: r.Epoch, TraceParent: r.TraceParent, Version: version,
	}
	if r.Round != nil {
		tx.Round = &tccd.Round{N: r.Round.N, Committed: r.Round.Committed, Keys: r.Round.Keys}
		if tx.Round.Keys == nil {
			tx.Round.Keys = map[string]string{}
		}
	}
	if len(tx.Labels) == 0 {
		tx.Labels = nil
	}
	if n := r.Notification; n != nil {
		tx.Notification = tccd.Notification{
			State: tccd.NotificationState(n.State), DeliveryID: n.DeliveryID, Since: d.time("notification.since", n.Since), Attempts: n.Attempts,
			LastStatus: n.LastStatus, LastError: n.LastError, LastAttemptAt: d.time("notification.last_attempt_at", n.LastAttemptAt),
		}
	}
	if len(r.Participants) > 0 {
		tx.Participants = make([]tccd.Participant, len(r.Participants))
		for i, p := range r.Participants {
			tx.Participants[i] = tccd.Participant{
				URI: p.URI, Expires: d.time("expires", p.Expires), State: tccd.ParticipantState(p.State),
				Attempts: p.Attempts, LastStatus: p.LastStatus, LastError: p.LastError,
				LastAttemptAt: d.time("last_attempt_at", p.LastAttemptAt), LastDuration: time.Duration(p.LastDurationNS),
				ConfirmURI: p.ConfirmURI, CancelURI: p.CancelURI, Style: tccd.Style(p.Style), CompensateURI: p.CompensateURI,
				FirstAttemptAt: d.time("first_attempt_at", p.FirstAttemptAt),
			}
			if m := p.Message; m != nil {
				tx.Participants[i].Message = &tccd.Message{Subject: m.Subject, Data: m.Data, Headers: m.Headers}
			}
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return tx, nil
}
