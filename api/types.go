// Package api holds the wire form of tccd's native API: the JSON types,
// the problem document, the table from error codes to HTTP status codes,
// and the header and media type names. The server (package http) and the
// client SDK (package client) both use it; it depends on the standard
// library only, so the SDK stays light.
package api

import (
	"encoding/json"
	"time"
)

// The JSON wire forms of the native API. They are separate from the domain
// types and from the stored records on purpose.

// Transaction is a transaction as the native API shows it. CreatedBy
// names the token that created it (absent when the coordinator runs
// without authentication); ResolvedBy and ResolutionNote are set when an
// operator resolved a heuristic outcome (reason "resolved").
type Transaction struct {
	ID             string            `json:"id"`
	Protocol       string            `json:"protocol"`
	Name           string            `json:"name,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	State          string            `json:"state"`
	Reason         string            `json:"reason,omitempty"`
	Timeout        string            `json:"timeout,omitempty"`
	Deadline       *time.Time        `json:"deadline,omitempty"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
	DecidedAt      *time.Time        `json:"decided_at,omitempty"`
	FinishedAt     *time.Time        `json:"finished_at,omitempty"`
	CreatedBy      string            `json:"created_by,omitempty"`
	ResolvedBy     string            `json:"resolved_by,omitempty"`
	ResolutionNote string            `json:"resolution_note,omitempty"`
	Notify         string            `json:"notify,omitempty"`
	Notification   *Notification     `json:"notification,omitempty"`
	Barrier        bool              `json:"barrier,omitempty"`
	Round          *Round            `json:"round,omitempty"`
	Participants   []Participant     `json:"participants"`
}

// Round is a barrier-mode transaction's current round (its keys are the
// participants' capabilities and are not shown).
type Round struct {
	N         int  `json:"n"`
	Committed bool `json:"committed"`
}

// Notification is how the delivery of a transaction's outcome to its
// notify URL stands: state pending, delivered or failed, and the attempts.
type Notification struct {
	State         string     `json:"state"`
	Attempts      int        `json:"attempts"`
	DeliveryID    string     `json:"delivery_id,omitempty"`
	LastStatus    int        `json:"last_status,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
}

// Participant is one participant of a Transaction on the wire.
type Participant struct {
	URI            string     `json:"uri"`
	Expires        time.Time  `json:"expires"`
	Style          string     `json:"style,omitempty"`
	Compensate     string     `json:"compensate,omitempty"`
	State          string     `json:"state"`
	Attempts       int        `json:"attempts"`
	LastStatus     int        `json:"last_status,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	LastAttemptAt  *time.Time `json:"last_attempt_at,omitempty"`
	LastDurationMS *float64   `json:"last_duration_ms,omitempty"`
	// Subject and MessageID describe a message (style "message"): the
	// subject it is published to and its broker message id
	// (Nats-Msg-Id), "<transaction id>/<n>".
	Subject   string `json:"subject,omitempty"`
	MessageID string `json:"message_id,omitempty"`
}

// TransactionList is a page of transactions.
type TransactionList struct {
	Transactions []Transaction `json:"transactions"`
	NextCursor   string        `json:"next_cursor,omitempty"`
}

// Link is a participant link as requests carry it. Rel is accepted and ignored.
type Link struct {
	URI     *string `json:"uri"`
	Expires *string `json:"expires"`
	Rel     string  `json:"rel,omitempty"`
	// Style is "tcc" (the default) or "compensate" (the try did the work:
	// nothing is sent on confirm, DELETE undoes it); Compensate is a URI
	// where a confirmed participant can be undone (POST).
	Style      string `json:"style,omitempty"`
	Compensate string `json:"compensate,omitempty"`
}

// BeginRequest is the body of POST /api/v1/transactions.
type BeginRequest struct {
	Timeout      *string           `json:"timeout"`
	Name         string            `json:"name"`
	Labels       map[string]string `json:"labels"`
	Participants []Link            `json:"participants"`
	Notify       string            `json:"notify"`
	// Barrier makes the confirm run in barrier rounds (forsrc's
	// all-confirmed barrier).
	Barrier bool `json:"barrier"`
}

// MessageRequest is the body of POST /api/v1/transactions/{id}/messages:
// a message published to Subject if and only if the transaction
// confirms. Data is any JSON value, published as its JSON text; or
// DataBase64 holds the bytes to publish. One of the two is required.
type MessageRequest struct {
	Subject    string            `json:"subject"`
	Data       json.RawMessage   `json:"data,omitempty"`
	DataBase64 *string           `json:"data_base64,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
}

// ConfirmRequest is the optional body of PUT /api/v1/transactions/{id}/confirm.
type ConfirmRequest struct {
	Participants []Link `json:"participants"`
}

// OutcomeRequest is the body of POST
// /api/v1/transactions/{id}/participants/outcome: the link URI of the
// participant that asks.
type OutcomeRequest struct {
	URI string `json:"uri"`
}

// Outcome answers OutcomeRequest: the transaction's state and the
// participant's, as the coordinator stores them.
type Outcome struct {
	Transaction string             `json:"transaction"`
	State       string             `json:"state"`
	Participant OutcomeParticipant `json:"participant"`
}

// OutcomeParticipant is the asking participant in an Outcome: its link
// URI in canonical form and its state.
type OutcomeParticipant struct {
	URI   string `json:"uri"`
	State string `json:"state"`
}

// ResolveRequest is the body of PUT /api/v1/transactions/{id}/resolve: an
// operator says how a heuristic transaction ended after settling its
// participants by hand. State is "confirmed" or "cancelled".
type ResolveRequest struct {
	State string `json:"state"`
	Note  string `json:"note,omitempty"`
}

// PurgeResult is the answer of POST /api/v1/admin/purge.
type PurgeResult struct {
	Purged int `json:"purged"`
}

// AtomikosRequest is the body of PUT /coordinator/confirm and /coordinator/cancel.
type AtomikosRequest struct {
	ParticipantLinks []Link `json:"participantLinks"`
}

// Event is one event of GET /api/v1/events (the data of a Server-Sent
// Event whose id is Seq and whose event name is Type). State events carry
// state, previous and reason; attempt events participant, phase, attempt,
// status, error and next_retry; lagged and gap events nothing more, not
// even a seq (nor an SSE id), so that resuming after the last id received
// misses nothing.
type Event struct {
	Seq         uint64     `json:"seq,omitempty"`
	Time        time.Time  `json:"time"`
	Type        string     `json:"type"`
	Transaction string     `json:"transaction,omitempty"`
	State       string     `json:"state,omitempty"`
	Previous    *string    `json:"previous,omitempty"`
	Reason      string     `json:"reason,omitempty"`
	Participant string     `json:"participant,omitempty"`
	Phase       string     `json:"phase,omitempty"`
	Attempt     int        `json:"attempt,omitempty"`
	Status      *int       `json:"status,omitempty"`
	Error       *string    `json:"error,omitempty"`
	NextRetry   *time.Time `json:"next_retry,omitempty"`
}

// Event types.
const (
	EventState   = "state"
	EventAttempt = "attempt"
	EventLagged  = "lagged"
	EventGap     = "gap"
)

// Headers and preferences of asynchronous requests and webhooks.
const (
	// HeaderPrefer: Prefer: respond-async makes a confirm or cancel
	// answer 202 once the decision is durable, without waiting.
	HeaderPrefer           = "Prefer"
	HeaderPreferApplied    = "Preference-Applied"
	PreferRespondAsync     = "respond-async"
	HeaderLastEventID      = "Last-Event-ID"
	HeaderNotify           = "Tcc-Notify" // the notify URL of an Atomikos request
	HeaderWebhookDelivery  = "Tcc-Delivery"
	HeaderWebhookSignature = "Tcc-Signature"
	MediaEventStream       = "text/event-stream"
)
