// Package testpart is a reservation service that keeps the TCC participant
// contract, for tccd's integration, crash and benchmark tests and the
// walkthrough in docs/API.md. It runs in-process (an http.Handler) or as its own
// process (cmd/testpart).
//
// It is built on the participant kit (package participant) over SQLite,
// the way a real participant is: every reservation is a bookkeeping row in
// a database file, so reservations, empty cancels and the counters below
// survive a restart, and reservation ids are the kit's random ids, which
// never repeat — a retried DELETE of an old transaction cannot cancel a
// reservation made after a restart.
//
//	POST   /reservations[?ttl=90s]  try → 201 + participant link (Location, Link, JSON body)
//	PUT    /reservations/{id}       confirm → 204; 404 once cancelled, expired or unknown
//	DELETE /reservations/{id}       cancel → 204; 404 if never tried (remembered); 409 if confirmed
//	GET    /reservations/{id}       the reservation with its counters (Reservation)
//	GET    /reservations            every reservation
//	GET    /stats                   the counters (Stats)
//	POST   /faults, DELETE /faults  fault injection (Fault) for confirm and cancel
//
// Given the coordinator's URL (Config.Coordinator) it takes part in
// barrier-mode transactions the kit's way: a confirm carrying Tcc-Barrier
// is applied, reported, and committed only on the round's "commit".
//
// It records every call so tests can check invariants: no reservation both
// confirmed and asked to cancel, confirmed only after try, and so on.
package testpart

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/tccd/tccd/participant"
)

// State of a reservation.
type State string

// Reservation states: the kit's.
const (
	Tried     State = "tried"
	Confirmed State = "confirmed"
	Cancelled State = "cancelled"
	Expired   State = "expired"
	// Compensated is a confirmed reservation undone by its compensate
	// URI (POST /reservations/{id}/compensate).
	Compensated State = "compensated"
	// Void is an id that was cancelled without a try (an empty cancel):
	// a later try of it would be refused.
	Void State = "void"
)

// Reservation is one try, as GET /reservations/{id} shows it.
type Reservation struct {
	ID    string `json:"id"`
	State State  `json:"state"`
	// Expires is the reservation's expiry; a tried reservation past it is
	// shown Expired (the participant cancels on its own), swept or not —
	// except a compensate-style one, tried until the coordinator answers.
	Expires time.Time `json:"expires"`
	// Confirms and Cancels count the calls received for it.
	Confirms int `json:"confirms"`
	Cancels  int `json:"cancels"`
	// Applied counts the business confirms and cancels committed for it:
	// 1 once it is settled, never more.
	Applied int `json:"applied"`
	// CancelAfterConfirm counts DELETEs refused because the reservation was
	// already confirmed: a coordinator that cancels a confirmed participant.
	CancelAfterConfirm int `json:"cancel_after_confirm"`
	// Compensations counts the compensate calls received for it.
	Compensations int `json:"compensations"`
	// TraceParent is the W3C traceparent header of the last confirm or
	// cancel call received for it, "" if none had one; kept in memory
	// only (not after a restart).
	TraceParent string `json:"traceparent,omitempty"`
}

// Stats are the service's counters. All but ConfirmCalls and CancelCalls
// are read from the database and survive a restart.
type Stats struct {
	// Tried counts the tries committed; Confirmed, Cancelled, Expired and
	// Pending (tried, expiry ahead) split them by state.
	Tried     int `json:"tried"`
	Confirmed int `json:"confirmed"`
	Cancelled int `json:"cancelled"`
	Expired   int `json:"expired"`
	Pending   int `json:"pending"`
	// EmptyCancels counts the ids cancelled without a try (Void).
	EmptyCancels int `json:"empty_cancels"`
	// ConfirmCalls and CancelCalls count the PUTs and DELETEs received
	// since the service started.
	ConfirmCalls       int64 `json:"confirm_calls"`
	CancelCalls        int64 `json:"cancel_calls"`
	CancelAfterConfirm int   `json:"cancel_after_confirm"`
	// Compensated counts the confirmed reservations undone, and
	// CompensateCalls the compensate calls received since the service
	// started.
	Compensated     int   `json:"compensated"`
	CompensateCalls int64 `json:"compensate_calls"`
	// Held counts the calls a Hold fault is holding now.
	Held int64 `json:"held"`
	// Reports counts the barrier reports sent to the coordinator since the
	// service started.
	Reports int64 `json:"reports"`
}

// Defaults of Config.
const (
	DefaultTTL        = 30 * time.Second
	DefaultSweepEvery = time.Second
	// DefaultRetention is how long the kit keeps settled rows after their
	// expiry (participant.Config.Retention).
	DefaultRetention = 7 * 24 * time.Hour
)

// Config configures a Service.
type Config struct {
	// DB is the SQLite file; "" makes one in a new temporary directory,
	// removed by Close.
	DB string
	// TTL is the lifetime of a reservation whose try asks for none
	// (default DefaultTTL); MaxTTL the longest a try may ask for with
	// ?ttl= (default participant.DefaultMaxTTL): more is answered 400.
	TTL, MaxTTL time.Duration
	// BaseURL starts the reservation URIs (participant.Config.BaseURL);
	// empty: built from the request's Host header, with a warning logged.
	BaseURL string
	// Latency is added to every confirm and cancel (simulated work).
	Latency time.Duration
	// SweepEvery is the period of the expiry sweeper (default
	// DefaultSweepEvery).
	SweepEvery time.Duration
	// Coordinator is the coordinator's URL, for barrier-mode confirms
	// (participant.Config.Coordinator); CoordinatorToken its bearer token
	// if it requires one; BarrierWait how long a barrier confirm waits for
	// its outcome (default participant.DefaultBarrierWait).
	Coordinator, CoordinatorToken string
	BarrierWait                   time.Duration
	// Style is the reservations' style (participant.Config.Style):
	// participant.StyleCompensate makes them compensate-style — a try
	// needs Tcc-Transaction-Id, its link says style "compensate", and at
	// the expiry the kit asks Coordinator for the outcome.
	Style participant.Style
	// Logger receives the kit's warnings; default: discarded.
	Logger *slog.Logger
}

// Service is the reservation service. Create it with Open (or NewTest)
// and Close it.
type Service struct {
	db      *sql.DB
	kit     *participant.Participant
	mux     *http.ServeMux
	log     *slog.Logger
	tempDir string // removed by Close; "" when Config.DB was given
	maxTTL  time.Duration
	// compensateStyle: the reservations are compensate-style, whose fate at
	// the expiry is the coordinator's answer, not a self-cancel.
	compensateStyle bool
	latency         atomic.Int64 // time.Duration

	confirmCalls, cancelCalls, compensateCalls atomic.Int64
	held, reports                              atomic.Int64

	mu     sync.Mutex
	traces map[string]string // reservation id → traceparent of its last call
	faults []*Fault
	// release is closed when the faults are cleared: held calls go on.
	release chan struct{}

	stopSweeper context.CancelFunc
	swept       chan struct{}
}

// schema is the service's own table: one row per committed try, written by
// the try in the kit's transaction, with the counters of the calls.
const schema = `CREATE TABLE IF NOT EXISTS testpart_reservation (
	id                   TEXT    NOT NULL PRIMARY KEY,
	outcome              TEXT    NOT NULL DEFAULT '',
	confirms             INTEGER NOT NULL DEFAULT 0,
	cancels              INTEGER NOT NULL DEFAULT 0,
	cancel_after_confirm INTEGER NOT NULL DEFAULT 0,
	applied              INTEGER NOT NULL DEFAULT 0,
	compensated          INTEGER NOT NULL DEFAULT 0,
	compensations        INTEGER NOT NULL DEFAULT 0
)`

// Open opens (creating if need be) the service's database, and starts its
// expiry sweeper; Close stops it.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	s := &Service{mux: http.NewServeMux(), log: cfg.Logger, maxTTL: cfg.MaxTTL, compensateStyle: cfg.Style == participant.StyleCompensate}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.maxTTL == 0 {
		s.maxTTL = participant.DefaultMaxTTL
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.SweepEvery == 0 {
		cfg.SweepEvery = DefaultSweepEvery
	}
	s.latency.Store(int64(cfg.Latency))
	path := cfg.DB
	if path == "" {
		dir, err := os.MkdirTemp("", "testpart-")
		if err != nil {
			return nil, fmt.Errorf("testpart: %w", err)
		}
		s.tempDir, path = dir, filepath.Join(dir, "testpart.db")
	}
	if err := s.open(ctx, path, cfg); err != nil {
		s.closeStore()
		return nil, err
	}
	sweepCtx, stop := context.WithCancel(context.Background())
	s.stopSweeper, s.swept = stop, make(chan struct{})
	go func() {
		defer close(s.swept)
		s.kit.Run(sweepCtx)
	}()
	return s, nil
}

func (s *Service) open(ctx context.Context, path string, cfg Config) error {
	// WAL, and synchronous=NORMAL: a commit survives the process being
	// killed (not the machine crashing), which is what the tests inflict.
	// One connection: SQLite has one writer anyway, and requests queue in
	// the pool instead of polling the lock. Not in barrier mode, where a
	// confirm keeps its transaction (and its connection) open while it
	// waits for the round's outcome: reads, on connections of their own,
	// must not wait for it.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		return fmt.Errorf("testpart: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if cfg.Coordinator != "" {
		db.SetMaxOpenConns(8)
	}
	s.db = db
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("testpart: create table: %w", err)
	}
	if err := addAppliedColumn(ctx, db); err != nil {
		return err
	}
	if err := participant.Migrate(ctx, db, participant.SQLite, participant.DefaultTable); err != nil {
		return fmt.Errorf("testpart: %w", err)
	}
	kit, err := participant.New(ctx, participant.Config{
		DB: db, Dialect: participant.SQLite, Path: "/reservations", BaseURL: cfg.BaseURL,
		DefaultTTL: cfg.TTL, MaxTTL: s.maxTTL, SweepEvery: cfg.SweepEvery, Retention: DefaultRetention,
		Try: s.tryFunc, Confirm: s.outcome("confirmed"), Cancel: s.outcome("cancelled"),
		Coordinator: cfg.Coordinator, CoordinatorToken: cfg.CoordinatorToken, BarrierWait: cfg.BarrierWait,
		Style: cfg.Style,
		// A try carrying an Idempotency-Key is retried onto the same
		// reservation (200 with the same link); without one each try
		// makes a new reservation.
		ReservationID: func(r *http.Request) (string, error) {
			if k := r.Header.Get(HeaderIdempotencyKey); k != "" {
				return participant.DeriveID("idempotency-key", k), nil
			}
			return participant.NewID()
		},
		HTTPClient: &http.Client{Transport: &reporter{s: s, next: http.DefaultTransport}},
		Logger:     s.log,
	})
	if err != nil {
		return fmt.Errorf("testpart: %w", err)
	}
	s.kit = kit
	s.mux.Handle("POST /reservations", kit)
	s.mux.HandleFunc("PUT /reservations/{id}", s.settle("confirm", &s.confirmCalls))
	s.mux.HandleFunc("DELETE /reservations/{id}", s.settle("cancel", &s.cancelCalls))
	// forsrc's TCC server confirms with PUT <uri>/confirm and cancels
	// with DELETE <uri>/cancel: the same reservation, the same answers.
	s.mux.HandleFunc("PUT /reservations/{id}/confirm", forsrcAlias(s.settle("confirm", &s.confirmCalls)))
	s.mux.HandleFunc("DELETE /reservations/{id}/cancel", forsrcAlias(s.settle("cancel", &s.cancelCalls)))
	s.mux.HandleFunc("POST /reservations/{id}/compensate", s.compensate)
	s.mux.HandleFunc("GET /reservations/{id}", s.get)
	s.mux.HandleFunc("GET /reservations", s.list)
	s.mux.HandleFunc("GET /stats", s.stats)
	s.mux.HandleFunc("POST /faults", s.addFault)
	s.mux.HandleFunc("DELETE /faults", s.clearFaults)
	return nil
}

// addAppliedColumn adds the columns applied, compensated and
// compensations to a table made before they existed.
func addAppliedColumn(ctx context.Context, db *sql.DB) error {
	var n int
	for _, col := range []string{"applied", "compensated", "compensations"} {
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_table_info('testpart_reservation') WHERE name = ?`, col).Scan(&n); err != nil {
			return fmt.Errorf("testpart: read the table's columns: %w", err)
		}
		if n == 0 {
			if _, err := db.ExecContext(ctx, `ALTER TABLE testpart_reservation ADD COLUMN `+col+` INTEGER NOT NULL DEFAULT 0`); err != nil {
				return fmt.Errorf("testpart: add column %s: %w", col, err)
			}
		}
	}
	return nil
}

// Close stops the sweeper and closes the database (removing it if Open
// made it in a temporary directory).
func (s *Service) Close() error {
	s.stopSweeper()
	<-s.swept
	return s.closeStore()
}

func (s *Service) closeStore() error {
	var err error
	if s.db != nil {
		err = s.db.Close()
	}
	if s.tempDir != "" {
		err = errors.Join(err, os.RemoveAll(s.tempDir))
	}
	return err
}

// NewTest opens a service for test t, with its database in t's temporary
// directory, reservations living for ttl unless a try asks for another,
// and closes it when t ends.
func NewTest(t testing.TB, ttl time.Duration) *Service {
	t.Helper()
	s, err := Open(context.Background(), Config{DB: filepath.Join(t.TempDir(), "testpart.db"), TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("testpart: close: %v", err)
		}
	})
	return s
}

// SetLatency adds d to every confirm and cancel.
func (s *Service) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// tryFunc is the kit's TryFunc: record the reservation's row, with the
// lifetime the try asks for.
func (s *Service) tryFunc(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
	ttl, err := s.ttlParam(r)
	if err != nil {
		return participant.Reservation{}, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO testpart_reservation (id) VALUES (?)`, id); err != nil {
		return participant.Reservation{}, fmt.Errorf("record reservation: %w", err)
	}
	return participant.Reservation{TTL: ttl}, nil
}

// ttlParam reads ?ttl=: a positive duration up to the maximum, or none.
func (s *Service) ttlParam(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("ttl")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil || d <= 0:
		return 0, participant.Rejectf(http.StatusBadRequest, "ttl %q: want a positive duration such as 90s", v)
	case d > s.maxTTL:
		return 0, participant.Rejectf(http.StatusBadRequest, "ttl %q: this service grants at most %v", v, s.maxTTL)
	}
	return d, nil
}

// outcome is the kit's Confirm or Cancel: it records the outcome on the
// reservation's row, which the kit runs exactly once.
func (s *Service) outcome(what string) participant.SettleFunc {
	return func(ctx context.Context, tx *sql.Tx, id string) error {
		if _, err := tx.ExecContext(ctx, `UPDATE testpart_reservation SET outcome = ?, applied = applied + 1 WHERE id = ?`, what, id); err != nil {
			return fmt.Errorf("record %s: %w", what, err)
		}
		return nil
	}
}

// Try makes a reservation directly (through the kit, as a POST would) and
// returns it. ttl <= 0 means the default lifetime.
func (s *Service) Try(ctx context.Context, ttl time.Duration) (Reservation, error) {
	target := "/reservations"
	if ttl > 0 {
		target += "?ttl=" + url.QueryEscape(ttl.String())
	}
	rec := httptest.NewRecorder()
	s.kit.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodPost, target, nil))
	if rec.Code != http.StatusCreated {
		return Reservation{}, fmt.Errorf("testpart: try: %d %s", rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	var body struct {
		ParticipantLink struct {
			URI     string    `json:"uri"`
			Expires time.Time `json:"expires"`
		} `json:"participantLink"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		return Reservation{}, fmt.Errorf("testpart: try: %w", err)
	}
	uri := body.ParticipantLink.URI
	return Reservation{ID: uri[strings.LastIndexByte(uri, '/')+1:], State: Tried, Expires: body.ParticipantLink.Expires}, nil
}

// settle serves PUT (op "confirm") or DELETE ("cancel") of a reservation:
// it counts the call, applies latency and faults, lets the kit answer,
// and records the call on the reservation.
func (s *Service) settle(op string, calls *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if tp := r.Header.Get("traceparent"); tp != "" {
			s.mu.Lock()
			if s.traces == nil {
				s.traces = make(map[string]string)
			}
			s.traces[r.PathValue("id")] = tp
			s.mu.Unlock()
		}
		answered, after := s.preamble(w, r, op)
		if answered {
			return
		}
		rec := httptest.NewRecorder()
		s.kit.ServeHTTP(rec, r)
		s.count(r.Context(), op, r.PathValue("id"), rec.Code)
		if after != nil {
			s.loseReply(w, after)
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}
}

// forsrcAlias serves a forsrc-style URI (<reservation>/confirm,
// <reservation>/cancel) as the reservation's own URI.
func forsrcAlias(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath = "/reservations/"+id, ""
		r2.SetPathValue("id", id)
		h(w, r2)
	}
}

// compensate serves POST /reservations/{id}/compensate, the compensate
// URI a link may carry: it undoes a confirmed reservation (204, and again
// 204 when repeated). A reservation that is not confirmed has nothing to
// undo: 204 too, with nothing done. An unknown one is 404.
func (s *Service) compensate(w http.ResponseWriter, r *http.Request) {
	s.compensateCalls.Add(1)
	answered, after := s.preamble(w, r, "compensate")
	if answered {
		return
	}
	id := r.PathValue("id")
	res, ok, err := s.Get(r.Context(), id)
	if err != nil {
		s.internalError(w, err)
		return
	}
	if !ok {
		http.Error(w, "no such reservation", http.StatusNotFound)
		return
	}
	q := `UPDATE testpart_reservation SET compensations = compensations + 1 WHERE id = ?`
	if res.State == Confirmed || res.State == Compensated {
		q = `UPDATE testpart_reservation SET compensations = compensations + 1, compensated = 1 WHERE id = ?`
	}
	if _, err := s.db.ExecContext(r.Context(), q, id); err != nil {
		s.internalError(w, err)
		return
	}
	if after != nil {
		s.loseReply(w, after)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// count records a confirm or cancel call on reservation id (nothing if
// there is no such reservation); a cancel refused because the reservation
// is confirmed is counted apart.
func (s *Service) count(ctx context.Context, op, id string, status int) {
	q := `UPDATE testpart_reservation SET confirms = confirms + 1 WHERE id = ?`
	if op == "cancel" {
		q = `UPDATE testpart_reservation SET cancels = cancels + 1 WHERE id = ?`
		if status == http.StatusConflict {
			q = `UPDATE testpart_reservation SET cancels = cancels + 1, cancel_after_confirm = cancel_after_confirm + 1 WHERE id = ?`
		}
	}
	if _, err := s.db.ExecContext(ctx, q, id); err != nil {
		s.log.Error("testpart: count a call", "op", op, "id", id, "err", err)
	}
}

// Get returns a reservation with its counters.
func (s *Service) Get(ctx context.Context, id string) (Reservation, bool, error) {
	all, err := s.query(ctx, ` WHERE k.id = ?`, id)
	if err != nil || len(all) == 0 {
		return Reservation{}, false, err
	}
	return all[0], true, nil
}

// List returns every reservation (and empty cancel), oldest first.
func (s *Service) List(ctx context.Context) ([]Reservation, error) {
	return s.query(ctx, ` ORDER BY k.created_at, k.id`)
}

// query reads reservations: the kit's rows joined to the counters.
func (s *Service) query(ctx context.Context, where string, args ...any) ([]Reservation, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT k.id, k.state, k.expires_at,
	COALESCE(t.confirms, 0), COALESCE(t.cancels, 0), COALESCE(t.cancel_after_confirm, 0), COALESCE(t.applied, 0),
	COALESCE(t.compensated, 0), COALESCE(t.compensations, 0)
FROM `+participant.DefaultTable+` k LEFT JOIN testpart_reservation t ON t.id = k.id`+where, args...)
	if err != nil {
		return nil, fmt.Errorf("testpart: read reservations: %w", err)
	}
	defer rows.Close()
	now := time.Now()
	out := []Reservation{}
	for rows.Next() {
		var r Reservation
		var expires int64
		var compensated int
		if err := rows.Scan(&r.ID, &r.State, &expires, &r.Confirms, &r.Cancels, &r.CancelAfterConfirm, &r.Applied, &compensated, &r.Compensations); err != nil {
			return nil, fmt.Errorf("testpart: read reservations: %w", err)
		}
		if r.State == Confirmed && compensated != 0 {
			r.State = Compensated
		}
		r.Expires = time.UnixMilli(expires).UTC()
		if r.State == Tried && !now.Before(r.Expires) && !s.compensateStyle {
			// Cancelled on its own, whether swept yet or not. A
			// compensate-style one stays tried until the coordinator's
			// answer settles it: kept, or undone.
			r.State = Expired
		}
		s.mu.Lock()
		r.TraceParent = s.traces[r.ID]
		s.mu.Unlock()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("testpart: read reservations: %w", err)
	}
	return out, nil
}

// Stats returns the counters.
func (s *Service) Stats(ctx context.Context) (Stats, error) {
	all, err := s.List(ctx)
	if err != nil {
		return Stats{}, err
	}
	st := Stats{ConfirmCalls: s.confirmCalls.Load(), CancelCalls: s.cancelCalls.Load(), CompensateCalls: s.compensateCalls.Load(),
		Held: s.held.Load(), Reports: s.reports.Load()}
	for _, r := range all {
		st.CancelAfterConfirm += r.CancelAfterConfirm
		if r.State == Void {
			st.EmptyCancels++
			continue
		}
		st.Tried++
		switch r.State {
		case Confirmed:
			st.Confirmed++
		case Compensated:
			st.Compensated++
		case Cancelled:
			st.Cancelled++
		case Expired:
			st.Expired++
		case Tried:
			st.Pending++
		}
	}
	return st, nil
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	res, ok, err := s.Get(r.Context(), r.PathValue("id"))
	switch {
	case err != nil:
		s.internalError(w, err)
	case !ok:
		http.NotFound(w, r)
	default:
		writeJSON(w, res)
	}
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) {
	all, err := s.List(r.Context())
	if err != nil {
		s.internalError(w, err)
		return
	}
	writeJSON(w, all)
}

func (s *Service) stats(w http.ResponseWriter, r *http.Request) {
	st, err := s.Stats(r.Context())
	if err != nil {
		s.internalError(w, err)
		return
	}
	writeJSON(w, st)
}

func (s *Service) internalError(w http.ResponseWriter, err error) {
	s.log.Error("testpart: request failed", "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
