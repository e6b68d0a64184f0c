package participant

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// This file holds the outbox: messages that take part in a reservation
// like its business change, published if and only if the reservation
// confirms, exactly once.
//
// A TryFunc stores its messages with Outbox.Add in its own transaction, as
// held rows of the outbox table. The kit's confirm marks the reservation's
// held messages due, in the confirm's transaction; its cancel and the
// expiry sweeper delete them in theirs. So a message is due exactly when
// its reservation committed as confirmed. The relay (Outbox.Run, started
// by Participant.Run) publishes due messages through a Publisher with the
// message id "<IDPrefix><reservation id>/<n>", and marks each published
// once the broker acknowledged it.
//
// A message is published at least once: a relay that dies between the
// broker's acknowledgement and its mark leaves the row due, and it is
// published again. It is stored once because the id is stable and the
// broker drops a repeat of an id it stored within its duplicate window
// (NATS JetStream's Nats-Msg-Id and StreamConfig.Duplicates).

// Publisher publishes one message to a broker. Publish returns nil only
// once the broker has stored the message durably — or recognised msgID as
// one it has stored, which the outbox takes as the same outcome. It must
// be safe for concurrent use. An error whose Temporary method reports
// false (the convention of net.Error) says the broker refuses the message
// as it is — no stream for the subject, say — and the relay logs it as
// needing an operator; any other error is retried after a back-off.
// Package github.com/tccd/tccd/nats provides one for NATS JetStream.
type Publisher interface {
	Publish(ctx context.Context, subject, msgID string, data []byte, headers map[string][]string) error
}

// Defaults of OutboxConfig.
const (
	DefaultRelayEvery     = time.Second
	DefaultRelayBatch     = 100
	DefaultRelayLease     = 30 * time.Second
	DefaultPublishTimeout = 10 * time.Second
	DefaultRetryMin       = time.Second
	DefaultRetryMax       = time.Minute
	DefaultKeepPublished  = 24 * time.Hour
	// DefaultMaxMessage is NATS's default max_payload.
	DefaultMaxMessage = 1 << 20
	// MaxSubjectLen bounds a message's subject (the column's width).
	MaxSubjectLen = 255
)

// OutboxSuffix makes the name of the outbox table from the bookkeeping
// table's: tcc_reservation → tcc_reservation_outbox. Migrate creates it.
const OutboxSuffix = "_outbox"

// OutboxConfig configures an Outbox. DB and Dialect are required and must
// be the participant's; the rest have defaults.
type OutboxConfig struct {
	// DB and Dialect are the participant's database (Config.DB and
	// Config.Dialect): a message is stored in the try's transaction.
	DB      *sql.DB
	Dialect Dialect
	// Table is the participant's bookkeeping table (Config.Table; default
	// DefaultTable). The outbox table is its name plus OutboxSuffix.
	Table string

	// Publisher publishes the messages. Nil makes an outbox that stores
	// messages but does not relay them; another process (or a later
	// start) relays them with an Outbox over the same tables.
	Publisher Publisher
	// IDPrefix starts every message id: "<IDPrefix><reservation id>/<n>".
	// A broker drops messages whose ids repeat, so ids must be unique
	// among everything published to one stream: random reservation ids
	// are; ids derived (DeriveID) from a transaction id and a resource
	// name used by several services are not — give each service its own
	// prefix then ("stock/").
	IDPrefix string

	// RelayEvery is the period at which Run looks for due messages
	// (default DefaultRelayEvery); RelayBatch the rows read per query
	// (default DefaultRelayBatch).
	RelayEvery time.Duration
	RelayBatch int
	// Lease is how long a relay holds the messages it claimed
	// (default DefaultRelayLease): no other relay publishes them
	// meanwhile, and if this one dies another takes them over once the
	// lease has run out. It must exceed PublishTimeout.
	Lease time.Duration
	// PublishTimeout bounds one Publish (default DefaultPublishTimeout).
	PublishTimeout time.Duration
	// RetryMin and RetryMax bound the back-off after a failed publish
	// (defaults DefaultRetryMin, DefaultRetryMax); it doubles from
	// RetryMin with each failure of the message, with jitter. A message
	// is retried until it is published: a confirmed reservation's
	// message is never dropped.
	RetryMin, RetryMax time.Duration
	// KeepPublished is how long published rows stay in the table, for
	// diagnosis, before Run deletes them (default DefaultKeepPublished);
	// negative keeps them (delete them with Cleanup).
	KeepPublished time.Duration
	// MaxMessage bounds a message's data (default DefaultMaxMessage):
	// Add refuses more, rather than storing what the broker will refuse
	// for ever once confirmed.
	MaxMessage int

	// Now is the clock of leases and back-offs (default time.Now).
	Now func() time.Time
	// Logger receives the relay's failures and work. Default
	// slog.Default().
	Logger *slog.Logger
}

// Outbox stores messages with reservations and relays the confirmed ones
// to a broker. Create it with NewOutbox and put it in Config.Outbox: the
// participant then marks a reservation's messages due when it confirms
// and deletes them when it is cancelled or expires, and Participant.Run
// runs the relay. It is safe for concurrent use.
type Outbox struct {
	db       *sql.DB
	d        Dialect
	table    string // the bookkeeping table
	outbox   string // the outbox table
	pub      Publisher
	idPrefix string
	every    time.Duration
	batch    int
	lease    time.Duration
	timeout  time.Duration
	retryMin time.Duration
	retryMax time.Duration
	keep     time.Duration
	maxData  int
	now      func() time.Time
	log      *slog.Logger
	q        outboxQueries
	mu       sync.Mutex
	attached bool   // to a participant (Config.Outbox); under mu
	owner    string // names this relay in the lease tokens
	seqMu    sync.Mutex
	claimSeq uint64 // the last lease token's number; under seqMu
}

// Message is a message of a reservation.
type Message struct {
	// Subject is where it goes: dot-separated tokens without white
	// space, none a wildcard (* or >), at most MaxSubjectLen bytes.
	Subject string
	// Data is the payload, at most OutboxConfig.MaxMessage bytes.
	Data []byte
	// Headers go with it (names without white space or ':'); the
	// publisher adds the message id.
	Headers map[string][]string
}

// NewOutbox checks cfg and that the outbox table exists (Migrate creates
// it beside the bookkeeping table), and returns the Outbox.
func NewOutbox(ctx context.Context, cfg OutboxConfig) (*Outbox, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if cfg.DB == nil {
		bad("DB is required")
	}
	if err := cfg.Dialect.valid(); err != nil {
		errs = append(errs, err)
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if err := checkIdent(cfg.Table); err != nil {
		bad("Table: %w", err)
	} else if err := checkIdent(cfg.Table + OutboxSuffix); err != nil {
		bad("Table %q is too long to name its outbox table %s%s: %w", cfg.Table, cfg.Table, OutboxSuffix, err)
	}
	o := &Outbox{
		db: cfg.DB, d: cfg.Dialect, table: cfg.Table, outbox: cfg.Table + OutboxSuffix, pub: cfg.Publisher,
		idPrefix: cfg.IDPrefix, every: cfg.RelayEvery, batch: cfg.RelayBatch, lease: cfg.Lease,
		timeout: cfg.PublishTimeout, retryMin: cfg.RetryMin, retryMax: cfg.RetryMax, keep: cfg.KeepPublished,
		maxData: cfg.MaxMessage, now: cfg.Now, log: cfg.Logger,
	}
	setDefault(&o.every, DefaultRelayEvery)
	setDefault(&o.lease, DefaultRelayLease)
	setDefault(&o.timeout, DefaultPublishTimeout)
	setDefault(&o.retryMin, DefaultRetryMin)
	setDefault(&o.retryMax, DefaultRetryMax)
	setDefault(&o.keep, DefaultKeepPublished)
	if o.batch == 0 {
		o.batch = DefaultRelayBatch
	}
	if o.maxData == 0 {
		o.maxData = DefaultMaxMessage
	}
	if o.every < 0 || o.batch < 0 || o.lease < 0 || o.timeout < 0 || o.retryMin < 0 || o.maxData < 0 {
		bad("RelayEvery, RelayBatch, Lease, PublishTimeout, RetryMin and MaxMessage must not be negative")
	}
	if o.retryMax < o.retryMin {
		bad("RetryMax %v is below RetryMin %v", o.retryMax, o.retryMin)
	}
	if o.lease <= o.timeout {
		bad("Lease %v must exceed PublishTimeout %v: a lease that runs out during a publish lets another relay publish the same message at once", o.lease, o.timeout)
	}
	if strings.ContainsAny(o.idPrefix, " \t\r\n") || len(o.idPrefix) > 64 {
		bad("IDPrefix %q: at most 64 bytes without white space", o.idPrefix)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("participant: invalid outbox config: %w", errors.Join(errs...))
	}
	id, err := NewID()
	if err != nil {
		return nil, err
	}
	o.owner = id[:12]
	o.q = newOutboxQueries(o.d, o.table, o.outbox, o.batch)
	if _, err := o.db.ExecContext(ctx, o.q.probe); err != nil {
		return nil, fmt.Errorf("participant: outbox table %s is missing or lacks a column "+
			"(create it with participant.Migrate or the DDL of participant.OutboxSchema): %w", o.outbox, err)
	}
	return o, nil
}

// attach makes o the outbox of p: p's confirm marks the reservation's
// messages due and its cancel and expiry delete them, each after the
// application's function and in its transaction (so that messages the
// application adds there are settled too).
func (o *Outbox) attach(p *Participant) error {
	if o.db != p.db || o.d != p.d || o.table != p.table {
		return fmt.Errorf("participant: invalid config: Outbox: it must be made with the participant's DB, Dialect and Table "+
			"(its messages are written in the participant's transactions); it has Table %q, the participant %q", o.table, p.table)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.attached {
		return errors.New("participant: invalid config: Outbox: it belongs to another participant already")
	}
	o.attached = true
	confirm, cancel := p.confirmFn, p.cancelFn
	p.confirmFn = func(ctx context.Context, tx *sql.Tx, id string) error {
		if err := confirm(ctx, tx, id); err != nil {
			return err
		}
		return o.markDue(ctx, tx, id)
	}
	p.cancelFn = func(ctx context.Context, tx *sql.Tx, id string) error {
		if err := cancel(ctx, tx, id); err != nil {
			return err
		}
		return o.drop(ctx, tx, id)
	}
	p.outbox = o
	return nil
}

func (o *Outbox) isAttached() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.attached
}

// Message states in the outbox table.
const (
	msgHeld      = "held"      // its reservation is tried
	msgDue       = "due"       // its reservation confirmed: to publish
	msgPublished = "published" // the broker acknowledged it
)

// Add stores msg as the next message of reservation id, in tx. Call it
// from the TryFunc, with the tx and id it was given: the message is then
// published if and only if the reservation confirms (once the relay gets
// to it), and dropped if it is cancelled or expires. Called from the
// Confirm function, the message is due at once. It fails if the
// reservation is not being tried or confirmed in tx, or if msg is not
// publishable (see Message); returning that error from the TryFunc rolls
// the try back.
func (o *Outbox) Add(ctx context.Context, tx *sql.Tx, id string, msg Message) error {
	if !o.isAttached() {
		return errors.New("participant: outbox: Add on an outbox that is in no participant's Config.Outbox: its messages would never be confirmed")
	}
	if err := checkID(id); err != nil {
		return fmt.Errorf("participant: outbox: %w", err)
	}
	if err := checkSubject(msg.Subject); err != nil {
		return fmt.Errorf("participant: outbox: %w", err)
	}
	if len(msg.Data) > o.maxData {
		return fmt.Errorf("participant: outbox: message of %d bytes exceeds MaxMessage (%d)", len(msg.Data), o.maxData)
	}
	var headers sql.NullString
	if len(msg.Headers) > 0 {
		for k, vs := range msg.Headers {
			if k == "" || strings.ContainsAny(k, " \t\r\n:") {
				return fmt.Errorf("participant: outbox: header name %q: want a name without white space or ':'", k)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n") {
					return fmt.Errorf("participant: outbox: header %s: a value holds a line break", k)
				}
			}
		}
		b, err := json.Marshal(msg.Headers)
		if err != nil {
			return fmt.Errorf("participant: outbox: headers: %w", err)
		}
		headers = sql.NullString{String: string(b), Valid: true}
	}
	var state string
	if err := tx.QueryRowContext(ctx, o.q.reservationState, id).Scan(&state); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("participant: outbox: no reservation %s in this transaction", id)
		}
		return fmt.Errorf("participant: outbox: read reservation %s: %w", id, err)
	}
	now := o.now().UnixMilli()
	msgState, dueAt := msgHeld, int64(0)
	switch State(state) {
	case Tried:
	case Confirmed:
		msgState, dueAt = msgDue, now
	default:
		return fmt.Errorf("participant: outbox: reservation %s is %s: messages are added by its try (or its confirm)", id, state)
	}
	var n int64
	if err := tx.QueryRowContext(ctx, o.q.nextN, id).Scan(&n); err != nil {
		return fmt.Errorf("participant: outbox: number the message of %s: %w", id, err)
	}
	data := msg.Data
	if data == nil {
		data = []byte{} // the column is NOT NULL
	}
	if _, err := tx.ExecContext(ctx, o.q.insert, id, n, msgState, msg.Subject, headers, data, now, dueAt, dueAt); err != nil {
		return fmt.Errorf("participant: outbox: store message %d of %s: %w", n, id, err)
	}
	return nil
}

// markDue makes the held messages of reservation id due, in its confirm's
// transaction.
func (o *Outbox) markDue(ctx context.Context, tx *sql.Tx, id string) error {
	now := o.now().UnixMilli()
	if _, err := tx.ExecContext(ctx, o.q.markDue, msgDue, now, now, id, msgHeld); err != nil {
		return fmt.Errorf("participant: outbox: messages of %s due: %w", id, err)
	}
	return nil
}

// drop deletes the held messages of reservation id, in its cancel's or
// expiry's transaction.
func (o *Outbox) drop(ctx context.Context, tx *sql.Tx, id string) error {
	if _, err := tx.ExecContext(ctx, o.q.drop, id, msgHeld); err != nil {
		return fmt.Errorf("participant: outbox: drop the messages of %s: %w", id, err)
	}
	return nil
}

// checkSubject accepts dot-separated non-empty tokens without white space
// or control characters, none of them a wildcard: a subject any broker
// with NATS-like subjects publishes to as it is.
func checkSubject(s string) error {
	if s == "" || len(s) > MaxSubjectLen {
		return fmt.Errorf("subject must have 1 to %d bytes", MaxSubjectLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("subject %q holds white space or a control character", s)
		}
	}
	for _, tok := range strings.Split(s, ".") {
		switch tok {
		case "":
			return fmt.Errorf("subject %q has an empty token", s)
		case "*", ">":
			return fmt.Errorf("subject %q is a wildcard; a message needs a literal subject", s)
		}
	}
	return nil
}
