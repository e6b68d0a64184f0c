package participant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultPath       = "/reservations"
	DefaultTTL        = 5 * time.Minute
	DefaultMaxTTL     = 24 * time.Hour
	DefaultSweepEvery = 2 * time.Second
	DefaultSweepBatch = 100
	DefaultMaxBody    = 1 << 20
)

// MinRetention is the shortest retention Cleanup and Config.Retention
// accept. A bookkeeping row is kept until its expiry (for a void row: the
// end of its refusal of late tries) plus the retention, and never less
// than this, because the row is what answers the calls that can still
// arrive after the expiry:
//
//   - a coordinator whose confirm got no answer (a lost 204) repeats the
//     same PUT for an in-doubt window after the link's expiry — tccd for
//     up to 24 hours by default — and reads 404 as "the participant
//     cancelled": without the row a confirmed reservation would answer
//     404, and the coordinator would report a transaction it confirmed as
//     cancelled or heuristic;
//   - an initiator may repeat a try with the same derived id
//     (Config.ReservationID) for as long as its transaction lives — up to
//     tccd's max-timeout, 24 hours by default: without the row the
//     business try would run again (a second seat), or a hanging try
//     would no longer be refused.
//
// 48 hours covers both windows at their defaults with a day to spare for
// clock differences and retries. Raise Retention if the coordinator's
// windows are longer.
const MinRetention = 48 * time.Hour

// TryFunc is the application's try: reserve what the request asks for,
// using tx only, under the reservation id given. The kit has already
// recorded the reservation as tried in tx; it commits tx (business change
// and bookkeeping together) when TryFunc returns nil and rolls it back
// otherwise. Return a Rejection (Reject(http.StatusConflict, "sold out"))
// to answer the caller with that status; any other error is answered 500.
//
// TryFunc may read r (headers, path values, body up to Config.MaxBody) and
// must not write to anything but tx: a side effect outside the database
// would survive a rollback. It runs at most once per reservation id that
// gets committed; a repeated or late try with an existing id is answered
// by the kit without calling it.
type TryFunc func(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (Reservation, error)

// SettleFunc is the application's confirm or cancel of reservation id,
// using tx only. The kit calls it after it has moved the reservation's
// bookkeeping row from tried to confirmed (or cancelled, or expired) in tx,
// so it runs exactly once per reservation in a committed transaction: a
// repeated confirm or cancel, an empty cancel, a confirm after expiry never
// reach it. An error rolls tx back, bookkeeping included, and is answered
// 500 (a Rejection: its own status), so the coordinator retries later; a
// confirm should fail only for a passing reason, since the try promised it.
// A SettleFunc used as Cancel also runs in the expiry sweeper.
type SettleFunc func(ctx context.Context, tx *sql.Tx, id string) error

// Reservation is what a TryFunc reports about the reservation it made.
type Reservation struct {
	// TTL is how long the reservation holds before it cancels itself;
	// zero means Config.DefaultTTL, more than Config.MaxTTL means MaxTTL.
	TTL time.Duration
	// Body, when not nil, is encoded as JSON under "data" in the answer to
	// the try, beside "participantLink". It is stored with the reservation
	// (the bookkeeping row's data) and answered again to a retried try.
	Body any
}

// Config configures a Participant. DB, Dialect, Try, Confirm and Cancel are
// required; the rest have defaults.
type Config struct {
	// DB holds the application's data and the bookkeeping table.
	DB *sql.DB
	// Dialect is DB's SQL dialect.
	Dialect Dialect
	// Table is the bookkeeping table, optionally schema-qualified; default
	// DefaultTable. Create it with Migrate or the DDL of Schema. Two kits
	// sharing a database need two tables: the sweeper of one would
	// otherwise cancel the other's reservations with the wrong function.
	Table string

	// Path is the collection: POST Path tries, PUT/DELETE/GET Path/{id}
	// confirm, cancel and show. Default DefaultPath. It may contain
	// wildcards of net/http patterns ("/flights/{flight}/seats") that
	// TryFunc reads with r.PathValue; not {id}. Their values are recorded
	// with the reservation: a confirm, cancel or GET naming it under other
	// values (/flights/NOPE/seats/{id}) is answered 404.
	Path string
	// BaseURL ("https://seats.example.com", or with a path prefix when the
	// handler is mounted under http.StripPrefix) starts the reservation
	// URIs. Default: http(s)://<Host of the try request>, with a warning
	// logged once: the Host header is the client's choice, and behind a
	// proxy not this service's address, while the URI must reach this
	// service from the coordinator. Set it.
	BaseURL string

	// Try, Confirm and Cancel are the application's reservation logic.
	Try     TryFunc
	Confirm SettleFunc
	Cancel  SettleFunc

	// ReservationID, when set, chooses the id of the reservation a try
	// will make, before anything else happens (so it must not consume the
	// body). Default: NewID, random. Deriving it (DeriveID) from the
	// inbound transaction and the resource makes tries idempotent.
	ReservationID func(r *http.Request) (string, error)

	// DefaultTTL is the lifetime of a reservation whose TryFunc names none
	// (default DefaultTTL); MaxTTL caps every lifetime (default
	// DefaultMaxTTL) and is also how long a Void row (empty cancel) keeps
	// refusing a late try.
	DefaultTTL time.Duration
	MaxTTL     time.Duration

	// SweepEvery is the period of Run's expiry sweep (default
	// DefaultSweepEvery); SweepBatch the rows read per query (default
	// DefaultSweepBatch).
	SweepEvery time.Duration
	SweepBatch int
	// Retention, when set, makes Run also delete, about once a minute,
	// the settled bookkeeping rows whose expiry (for a void row: the end
	// of its refusal) lies more than Retention in the past (see Cleanup).
	// It must be at least MinRetention; a week (7*24*time.Hour) is a good
	// choice. Zero: Run keeps every row; call Cleanup yourself, or the
	// table grows without end (every DELETE of an unknown id adds a row).
	Retention time.Duration

	// Coordinator is the base URL of the coordinator
	// ("https://tccd.example.com"), for barrier-mode confirms: a confirm
	// carrying the header Tcc-Barrier is applied, reported to
	// <Coordinator>/api/v1/barriers/<key>, and committed only when the
	// coordinator answers that every participant of the round reported
	// confirmed (see "Barrier mode" in the package documentation). Empty:
	// such a confirm is refused with 500 and logged — set it if your
	// participant may be enlisted in barrier-mode transactions.
	Coordinator string
	// CoordinatorToken is the bearer token sent with barrier reports, when
	// the coordinator requires tokens (one with the client role). It is
	// never logged.
	CoordinatorToken string
	// BarrierWait is how long a barrier-mode confirm waits for its round's
	// outcome after reporting, its local transaction open, before it rolls
	// back (default DefaultBarrierWait). Keep it above the coordinator's
	// barrier-wait.
	BarrierWait time.Duration
	// HTTPClient sends the barrier reports (default: a client of its own
	// on Go's default transport). Each report is bounded by a context of
	// its own; a Timeout here, if any, must exceed BarrierWait.
	HTTPClient *http.Client

	// MaxBody limits the try's request body (default DefaultMaxBody);
	// larger bodies are answered 413.
	MaxBody int64
	// Now is the clock (default time.Now). Expiry is decided by it, not by
	// the database's clock.
	Now func() time.Time
	// Logger receives failures answered 5xx (with their error id) and the
	// sweeper's work. Default slog.Default().
	Logger *slog.Logger

	// Outbox, when set, holds the messages the TryFunc adds with
	// Outbox.Add: a confirm marks the reservation's messages due, a
	// cancel or an expiry deletes them, and Run runs the relay that
	// publishes the due ones (see NewOutbox).
	Outbox *Outbox
}

// Participant serves the TCC participant contract for one collection of
// reservations. Create it with New; it is safe for concurrent use. It
// starts no goroutine: serve it (ServeHTTP or Register) and run the expiry
// sweeper (Run) from goroutines you own.
type Participant struct {
	db         *sql.DB
	d          Dialect
	table      string
	path       string
	wildcards  []string // the names of Path's wildcards, for scopeOf
	baseURL    string
	try        TryFunc
	confirmFn  SettleFunc
	cancelFn   SettleFunc
	newID      func(r *http.Request) (string, error)
	defaultTTL time.Duration
	maxTTL     time.Duration
	sweepEvery time.Duration
	sweepBatch int
	retention  time.Duration
	maxBody    int64
	// coordinator (without a trailing slash), coordinatorToken,
	// barrierWait and httpClient serve barrier-mode confirms.
	coordinator      string
	coordinatorToken string
	barrierWait      time.Duration
	httpClient       *http.Client
	now              func() time.Time
	log              *slog.Logger
	q                queries
	mux              *http.ServeMux
	// hostWarning logs, once, that URIs come from the Host header.
	hostWarning sync.Once
	outbox      *Outbox // nil without Config.Outbox
}

// New checks cfg, checks that the bookkeeping table exists with the
// expected columns (a query that reads no row), and returns the
// Participant. It refuses to start without the table, naming Migrate.
func New(ctx context.Context, cfg Config) (*Participant, error) {
	p, err := cfg.build()
	if err != nil {
		return nil, err
	}
	if _, err := p.db.ExecContext(ctx, p.q.probe); err != nil {
		if _, baseErr := p.db.ExecContext(ctx, p.q.baseProbe); baseErr == nil {
			return nil, p.outdated(ctx)
		}
		return nil, fmt.Errorf("participant: bookkeeping table %s is missing or lacks a column "+
			"(create it with participant.Migrate or the DDL of participant.Schema): %w", p.table, err)
	}
	if cfg.Outbox != nil {
		if err := cfg.Outbox.attach(p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// outdated is the refusal of a bookkeeping table made by an earlier
// version of the kit: it names the columns it lacks and the DDL that adds
// them.
func (p *Participant) outdated(ctx context.Context) error {
	var names, ddl []string
	for _, c := range missingColumns(ctx, p.db, p.table) {
		names = append(names, c.name)
		ddl = append(ddl, c.add(p.d, p.table))
	}
	return fmt.Errorf("participant: bookkeeping table %s lacks the column(s) %s of this version of the kit: "+
		"run participant.Migrate, or this DDL: %s;", p.table, strings.Join(names, ", "), strings.Join(ddl, "; "))
}

func (cfg Config) build() (*Participant, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if cfg.DB == nil {
		bad("DB is required")
	}
	if err := cfg.Dialect.valid(); err != nil {
		errs = append(errs, err)
	}
	if cfg.Try == nil || cfg.Confirm == nil || cfg.Cancel == nil {
		bad("Try, Confirm and Cancel are required")
	}
	p := &Participant{
		db: cfg.DB, d: cfg.Dialect, table: cfg.Table, path: cfg.Path,
		baseURL: strings.TrimSuffix(cfg.BaseURL, "/"),
		try:     cfg.Try, confirmFn: cfg.Confirm, cancelFn: cfg.Cancel, newID: cfg.ReservationID,
		defaultTTL: cfg.DefaultTTL, maxTTL: cfg.MaxTTL,
		sweepEvery: cfg.SweepEvery, sweepBatch: cfg.SweepBatch, retention: cfg.Retention,
		maxBody: cfg.MaxBody, now: cfg.Now, log: cfg.Logger,
		coordinator: strings.TrimSuffix(cfg.Coordinator, "/"), coordinatorToken: cfg.CoordinatorToken,
		barrierWait: cfg.BarrierWait, httpClient: cfg.HTTPClient,
	}
	if p.table == "" {
		p.table = DefaultTable
	}
	if err := checkIdent(p.table); err != nil {
		bad("Table: %w", err)
	}
	if p.path == "" {
		p.path = DefaultPath
	}
	if !strings.HasPrefix(p.path, "/") || strings.HasSuffix(p.path, "/") || strings.ContainsAny(p.path, " \t\r\n?#") ||
		strings.Contains(p.path, "{id}") || strings.Contains(p.path, "{id...}") {
		bad("Path %q: must start with / and not end with /, hold no space, ? or #, and not use the wildcard {id}", p.path)
	}
	p.wildcards = wildcards(p.path)
	if p.baseURL != "" {
		u, err := url.Parse(p.baseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			bad("BaseURL %q: must be an absolute http(s) URL without query or fragment", cfg.BaseURL)
		}
	}
	if p.coordinator != "" {
		u, err := url.Parse(p.coordinator)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			bad("Coordinator %q: must be an absolute http(s) URL without credentials, query or fragment", cfg.Coordinator)
		}
	}
	if cfg.CoordinatorToken != "" && p.coordinator == "" {
		bad("CoordinatorToken is set without Coordinator")
	}
	if strings.ContainsAny(cfg.CoordinatorToken, " \t\r\n") {
		bad("CoordinatorToken must not contain white space")
	}
	setDefault(&p.barrierWait, DefaultBarrierWait)
	if p.barrierWait < 0 {
		bad("BarrierWait must not be negative")
	}
	if p.httpClient == nil {
		p.httpClient = &http.Client{}
	}
	if p.newID == nil {
		p.newID = func(*http.Request) (string, error) { return NewID() }
	}
	setDefault(&p.defaultTTL, DefaultTTL)
	setDefault(&p.maxTTL, DefaultMaxTTL)
	setDefault(&p.sweepEvery, DefaultSweepEvery)
	if p.defaultTTL < time.Millisecond || p.maxTTL < p.defaultTTL {
		bad("DefaultTTL %v and MaxTTL %v: need 1ms <= DefaultTTL <= MaxTTL", p.defaultTTL, p.maxTTL)
	}
	if p.sweepEvery < 0 || p.sweepBatch < 0 || p.maxBody < 0 {
		bad("SweepEvery, SweepBatch and MaxBody must not be negative")
	}
	if p.retention != 0 && p.retention < MinRetention {
		bad("Retention %v: must be zero (keep every row) or at least MinRetention (%v), since a row must outlive "+
			"the retries of a coordinator and of an initiator after its expiry", p.retention, MinRetention)
	}
	if p.sweepBatch == 0 {
		p.sweepBatch = DefaultSweepBatch
	}
	if p.maxBody == 0 {
		p.maxBody = DefaultMaxBody
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("participant: invalid config: %w", errors.Join(errs...))
	}
	p.q = newQueries(p.d, p.table, p.sweepBatch)
	p.mux = http.NewServeMux()
	if err := p.register(p.mux); err != nil {
		return nil, fmt.Errorf("participant: invalid config: Path %q: %w", p.path, err)
	}
	return p, nil
}

// wildcards returns the names of the wildcards of a net/http pattern path
// ("/flights/{flight}/seats" → flight), in order.
func wildcards(path string) []string {
	var names []string
	for _, seg := range strings.Split(path, "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			name = strings.TrimSuffix(strings.TrimSuffix(name, "}"), "...")
			if name != "" && name != "$" {
				names = append(names, name)
			}
		}
	}
	return names
}

func setDefault(v *time.Duration, def time.Duration) {
	if *v == 0 {
		*v = def
	}
}

// Register adds the participant's routes to mux: POST Path, and GET, PUT
// and DELETE Path/{id}. It panics, as ServeMux does, if they conflict with
// routes already there.
func (p *Participant) Register(mux *http.ServeMux) {
	if err := p.register(mux); err != nil {
		panic(err)
	}
}

func (p *Participant) register(mux *http.ServeMux) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mux.Handle("POST "+p.path, p.handle(p.serveTry))
	item := p.path + "/{id}"
	mux.Handle("PUT "+item, p.handle(p.serveConfirm))
	mux.Handle("DELETE "+item, p.handle(p.serveCancel))
	mux.Handle("GET "+item, p.handle(p.serveGet))
	return nil
}

// ServeHTTP serves the participant's routes (see Register); any other
// request is answered as http.ServeMux answers it.
func (p *Participant) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

func (p *Participant) nowMilli() int64 { return p.now().UnixMilli() }
