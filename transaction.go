package tccd

import (
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Protocol says through which API a transaction was created.
type Protocol string

// Protocols.
const (
	// ProtocolNative: registered through /api/v1.
	ProtocolNative Protocol = "native"
	// ProtocolAtomikos: one-shot through /coordinator/confirm or /coordinator/cancel.
	ProtocolAtomikos Protocol = "atomikos"
	// ProtocolForsrc: through forsrc's TCC server API (/tcc/api/v1/tcc).
	ProtocolForsrc Protocol = "forsrc"
)

// Reason says why a transaction ended as it did.
type Reason string

// Reasons.
const (
	ReasonRequested    Reason = "requested"     // the client asked to confirm or cancel
	ReasonTimeout      Reason = "timeout"       // an active transaction's timeout passed
	ReasonExpiryMargin Reason = "expiry_margin" // a link expired, or expired too soon to confirm safely
	ReasonParticipant  Reason = "participant"   // a participant refused (to confirm, or to cancel) or had cancelled on its own
	ReasonMixedOutcome Reason = "mixed_outcome" // some participants confirmed and some did not
	ReasonInDoubt      Reason = "in_doubt"      // a participant's outcome stayed unknown for the whole in-doubt window
	ReasonResolved     Reason = "resolved"      // an operator resolved a heuristic outcome
)

// Link is a participant link: the URI of a reservation and when it
// expires, and how the participant is called.
type Link struct {
	URI     string
	Expires time.Time
	// ConfirmURI and CancelURI, when set, are where confirm (PUT) and
	// cancel (DELETE) are sent instead of URI (forsrc's participants take
	// them at <uri>/confirm and <uri>/cancel). URI stays the identity.
	ConfirmURI, CancelURI string
	// Style is how the participant takes part; "" is StyleTCC.
	Style Style
	// CompensateURI, when set, is where a confirmed participant can be
	// undone (POST).
	CompensateURI string
}

// Style says how a participant takes part in a transaction.
type Style string

// Participant styles.
const (
	// StyleTCC: the try reserves; confirm (PUT) makes it final, cancel
	// (DELETE) releases it.
	StyleTCC Style = "tcc"
	// StyleCompensate: the try does the work; nothing is sent on confirm,
	// and cancel (DELETE) undoes it.
	StyleCompensate Style = "compensate"
	// StyleMessage: a message the coordinator holds with the transaction
	// (see Message) — published if and only if the transaction confirms,
	// after every other participant has confirmed; dropped otherwise.
	StyleMessage Style = "message"
)

// Message is a message enlisted in a transaction: held by the
// coordinator while the transaction is active, published to the broker
// when it confirms (with the message id MessageID), dropped when it
// cancels. It never changes once enlisted.
type Message struct {
	Subject string
	Data    []byte
	Headers map[string]string
}

// Limits of an enlisted message.
const (
	MaxMessageBytes   = 1 << 20 // data
	MaxMessageHeaders = 32
)

// messageURNPrefix starts the URI that names a message participant within
// its transaction: urn:tccd:message:<n>, n counting from 1.
const messageURNPrefix = "urn:tccd:message:"

// MessageURI is the participant URI of a transaction's nth message.
func MessageURI(n int) string { return messageURNPrefix + strconv.Itoa(n) }

// MessageID is the broker message id of a message participant of
// transaction id: "<transaction id>/<n>", the same at every attempt, so
// that the broker stores a message published again (after a lost
// acknowledgement, or a crash) once.
func MessageID(id string, p *Participant) string {
	return id + "/" + strings.TrimPrefix(p.URI, messageURNPrefix)
}

// Participant is one enlisted link with what the coordinator knows of it.
type Participant struct {
	URI     string
	Expires time.Time
	// ConfirmURI, CancelURI, Style and CompensateURI are as in Link.
	ConfirmURI, CancelURI string
	Style                 Style
	CompensateURI         string
	State                 ParticipantState
	// Attempts counts the calls sent to the participant for the current decision.
	Attempts int
	// LastStatus is the HTTP status of the last answer, 0 if none came.
	LastStatus int
	// LastError describes the last failed call (transport error or status).
	LastError string
	// LastAttemptAt is when the last call started; LastDuration how long it took.
	LastAttemptAt time.Time
	LastDuration  time.Duration
	// Message is the message of a StyleMessage participant (nil for
	// others); FirstAttemptAt when its first publish attempt started
	// (zero before), which tells whether a repeat may fall outside the
	// broker's window of duplicate detection.
	Message        *Message
	FirstAttemptAt time.Time
}

// Transaction is a TCC transaction as the coordinator stores it.
type Transaction struct {
	ID       string
	Protocol Protocol
	Name     string
	Labels   map[string]string
	State    State
	Reason   Reason
	// Timeout is how long the transaction may stay active; Deadline is
	// CreatedAt+Timeout, after which an active transaction is cancelled.
	Timeout  time.Duration
	Deadline time.Time

	CreatedAt  time.Time
	UpdatedAt  time.Time
	DecidedAt  time.Time // when it left active
	FinishedAt time.Time // when it reached a final state

	// CreatedBy names the principal that created the transaction ("" when
	// authentication is off). A client principal sees only its own.
	CreatedBy string
	// ResolvedBy and ResolutionNote record an operator's resolution of a
	// heuristic outcome (Reason ReasonResolved): who, and what they noted.
	ResolvedBy     string
	ResolutionNote string

	// Owner is the coordinator node that drives the transaction, and
	// LeaseUntil how long its claim holds. A single node owns everything
	// it creates; a cluster store renews and takes over leases.
	Owner      string
	LeaseUntil time.Time
	// Epoch counts the changes of owner: a takeover raises it, so that a
	// node that lost its lease learns it from the record.
	Epoch uint64

	// TraceParent is the W3C trace context of the request that created
	// the transaction: its driver's spans, and the participant calls,
	// continue that trace.
	TraceParent string

	// Notify is the URL told of the outcome by a signed POST (a webhook),
	// "" for none; Notification is how that delivery stands.
	Notify       string
	Notification Notification

	// Barrier makes the confirm phase run in barrier rounds (see
	// Coordinator); Round is the current round, nil before the first.
	Barrier bool
	Round   *Round

	// Version is incremented by the store on every write; Update compares it.
	Version uint64

	Participants []Participant
}

// Round is a barrier round of a confirm: a key per participant (its URI
// → the key sent in Tcc-Barrier), and whether the round committed. A
// committed round is synced before any participant hears "commit", and is
// never aborted.
type Round struct {
	N         int
	Keys      map[string]string
	Committed bool
}

// clone returns a deep copy of r.
func (r *Round) clone() *Round {
	if r == nil {
		return nil
	}
	c := *r
	c.Keys = make(map[string]string, len(r.Keys))
	for k, v := range r.Keys {
		c.Keys[k] = v
	}
	return &c
}

// callURI returns where op is sent for participant p.
func (p *Participant) callURI(op Op) string {
	switch {
	case op == OpConfirm && p.ConfirmURI != "":
		return p.ConfirmURI
	case op == OpCancel && p.CancelURI != "":
		return p.CancelURI
	case op == OpCompensate:
		return p.CompensateURI
	}
	return p.URI
}

// compensateStyle reports whether p did its work at the try (see
// StyleCompensate).
func (p *Participant) compensateStyle() bool { return p.Style == StyleCompensate }

// message reports whether p is a message the coordinator publishes.
func (p *Participant) message() bool { return p.Style == StyleMessage }

// pendingMessages counts tx's message participants not yet published.
func (tx *Transaction) pendingMessages() int {
	n := 0
	for i := range tx.Participants {
		if p := &tx.Participants[i]; p.message() && p.State == ParticipantPending {
			n++
		}
	}
	return n
}

// Messages counts tx's message participants.
func (tx *Transaction) Messages() int {
	n := 0
	for i := range tx.Participants {
		if tx.Participants[i].message() {
			n++
		}
	}
	return n
}

// confirmedTCC counts the participants that confirmed through a PUT: a
// compensate-style participant is recorded confirmed by the decision
// alone, which says nothing of the others.
func (tx *Transaction) confirmedTCC() int {
	n := 0
	for i := range tx.Participants {
		if tx.Participants[i].State == ParticipantConfirmed && !tx.Participants[i].compensateStyle() {
			n++
		}
	}
	return n
}

// decideConfirm records, on a decision to confirm, the compensate-style
// participants confirmed: their try did the work, and nothing is sent to
// them on confirm.
func (tx *Transaction) decideConfirm() {
	for i := range tx.Participants {
		if p := &tx.Participants[i]; p.compensateStyle() && p.State == ParticipantPending {
			p.State = ParticipantConfirmed
		}
	}
}

// NotificationState says how the delivery of a transaction's outcome to
// its Notify URL stands.
type NotificationState string

// Notification states.
const (
	// NotificationNone: nothing to deliver (no Notify URL, or not final yet).
	NotificationNone NotificationState = ""
	// NotificationPending: the transaction reached a final state and its
	// outcome is being delivered (retried with back-off).
	NotificationPending NotificationState = "pending"
	// NotificationDelivered: the receiver answered 2xx.
	NotificationDelivered NotificationState = "delivered"
	// NotificationFailed: no 2xx came within the webhook's maximum age.
	NotificationFailed NotificationState = "failed"
)

// Notification is the delivery of a transaction's outcome to its Notify URL.
type Notification struct {
	State NotificationState
	// DeliveryID is sent with every attempt (Tcc-Delivery), so that a
	// receiver can tell a repeat from a new delivery: "<id>/<state>".
	DeliveryID string
	// Since is when the delivery became due (the outcome was reached);
	// it is retried until Since plus the webhook's maximum age.
	Since    time.Time
	Attempts int
	// LastStatus, LastError and LastAttemptAt describe the last attempt.
	LastStatus    int
	LastError     string
	LastAttemptAt time.Time
}

// Clone returns a deep copy of tx, safe to change without touching the original.
func (tx *Transaction) Clone() *Transaction {
	if tx == nil {
		return nil
	}
	c := *tx
	if tx.Labels != nil {
		c.Labels = make(map[string]string, len(tx.Labels))
		for k, v := range tx.Labels {
			c.Labels[k] = v
		}
	}
	c.Participants = append([]Participant(nil), tx.Participants...)
	c.Round = tx.Round.clone()
	return &c
}

// Participant returns the index of the participant with the given URI, or -1.
func (tx *Transaction) Participant(uri string) int {
	for i := range tx.Participants {
		if tx.Participants[i].URI == uri {
			return i
		}
	}
	return -1
}

// Count returns how many participants are in state s.
func (tx *Transaction) Count(s ParticipantState) int {
	n := 0
	for i := range tx.Participants {
		if tx.Participants[i].State == s {
			n++
		}
	}
	return n
}

// The range of expiries accepted: after the Unix epoch, and not after
// 2262-04-11T23:47:16.854775807Z, so that every expiry has a Unix
// nanosecond form (stores keep times so, with 0 for "none").
var (
	minExpires = time.Unix(0, 0)
	maxExpires = time.Unix(0, math.MaxInt64)
)

// ExpiresInRange reports whether t is an expiry the coordinator can keep.
func ExpiresInRange(t time.Time) bool { return t.After(minExpires) && !t.After(maxExpires) }

// MaxURILength bounds the length of a participant URI.
const MaxURILength = 2048

// ValidateURI checks that a participant URI is one the coordinator may call:
// absolute http or https, with a host, without user credentials or fragment.
func ValidateURI(raw string) error {
	if raw == "" {
		return FieldError("uri", "each participant link must have a value for 'uri'")
	}
	if len(raw) > MaxURILength {
		return FieldError("uri", "uri is longer than %d bytes", MaxURILength)
	}
	if strings.ContainsAny(raw, " \t\r\n\x00") {
		return FieldError("uri", "uri must not contain white space or control characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return FieldError("uri", "uri is not a valid URL")
	}
	if !u.IsAbs() {
		return FieldError("uri", "uri must be absolute (http:// or https://)")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return FieldError("uri", "uri scheme must be http or https, not %q", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return FieldError("uri", "uri must name a host")
	}
	if u.User != nil {
		return FieldError("uri", "uri must not carry user credentials")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return FieldError("uri", "uri must not have a fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return FieldError("uri", "uri has an invalid port")
		}
	}
	return nil
}

// HostOf returns the host:port a participant URI points at, for grouping
// round-trip statistics. It scans the string instead of parsing it: the
// URI was validated when it was accepted, and this runs on the confirm path.
func HostOf(uri string) string {
	_, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}
