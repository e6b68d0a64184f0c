// Package bankpart is the participant of tccd's fault campaign: a bank
// whose accounts live in SQLite, reserving debits and credits through the
// participant kit. A transfer is a debit reservation at one bank and a
// credit reservation at another (or the same), so money is conserved by
// construction when every transfer ends uniformly; the audit endpoint lets
// the campaign check that at every bank and overall.
//
// For the campaign it injects faults in front of the kit: 5xx bursts,
// slow answers, reset connections, lost replies (the work is done, the
// answer never arrives), and contract breaches (a permanent refusal of a
// confirm it promised), which it records so that the campaign knows which
// heuristic outcomes a participant caused.
package bankpart

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tccd/tccd/participant"
)

// Schema of the bank's own tables (the kit's bookkeeping table is separate).
const schema = `
CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));
CREATE TABLE IF NOT EXISTS holds (reservation TEXT PRIMARY KEY, account TEXT NOT NULL, kind TEXT NOT NULL, amount INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS journal (reservation TEXT NOT NULL, account TEXT NOT NULL, kind TEXT NOT NULL, amount INTEGER NOT NULL, outcome TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS breaches (reservation TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
`

// Service is one bank.
type Service struct {
	db  *sql.DB
	kit *participant.Participant
	mux *http.ServeMux

	mu     sync.Mutex
	faults []*Fault
	// silenced holds the reservations whose confirm replies are lost
	// until they expire (fault mode lost_until_expiry).
	silenced map[string]bool
}

// Fault makes the next Count confirm or cancel calls misbehave.
type Fault struct {
	// Op is "confirm", "cancel" or "any".
	Op string `json:"op"`
	// Mode is one of:
	//   status      answer Status without doing anything (5xx: retryable)
	//   slow        sleep Delay, then do the work and answer
	//   reset       close the connection without doing anything
	//   lost_reply  do the work, then close the connection without answering
	//   refuse      answer 400 to a confirm: a breach of the contract
	//   lost_until_expiry
	//               (confirm) the reservations of the next Count confirms
	//               lose every confirm reply until they expire: the first
	//               confirm does the work, the connection closes without
	//               an answer each time; after the expiry the kit answers
	//   gone        (confirm) cancel the reservation at once, before its
	//               expiry, then answer as the kit does (404): a breach
	Mode   string `json:"mode"`
	Count  int    `json:"count"`
	Status int    `json:"status,omitempty"`
	Delay  string `json:"delay,omitempty"`
	// Reservation, when set, limits the fault to that reservation id.
	Reservation string `json:"reservation,omitempty"`
}

// Open opens (creating if needed) the bank in the SQLite file at path,
// with the given number of accounts of the given initial balance.
func Open(ctx context.Context, path string, accounts int, initial int64) (*Service, error) {
	// WAL with synchronous=FULL: a committed transaction survives a
	// crash of the process, which the campaign inflicts.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	s := &Service{db: db, mux: http.NewServeMux()}
	if err := s.init(ctx, accounts, initial); err != nil {
		db.Close()
		return nil, err
	}
	kit, err := participant.New(ctx, participant.Config{
		DB: db, Dialect: participant.SQLite, Path: "/transfers",
		Try: s.try, Confirm: s.confirm, Cancel: s.cancel,
		SweepEvery: 200 * time.Millisecond,
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	s.kit = kit
	s.mux.Handle("POST /transfers", kit)
	s.mux.Handle("GET /transfers/{id}", kit)
	s.mux.Handle("PUT /transfers/{id}", s.faulty("confirm", kit))
	s.mux.Handle("DELETE /transfers/{id}", s.faulty("cancel", kit))
	s.mux.HandleFunc("GET /audit", s.audit)
	s.mux.HandleFunc("POST /admin/faults", s.addFault)
	s.mux.HandleFunc("DELETE /admin/faults", s.clearFaults)
	return s, nil
}

func (s *Service) init(ctx context.Context, accounts int, initial int64) error {
	for _, stmt := range strings.Split(schema, ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	if err := participant.Migrate(ctx, s.db, participant.SQLite, participant.DefaultTable); err != nil {
		return err
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for i := 0; i < accounts; i++ {
		if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (id, balance) VALUES (?, ?)`, fmt.Sprintf("acct-%d", i), initial); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES ('initial', ?)`, int64(accounts)*initial); err != nil {
		return err
	}
	return tx.Commit()
}

// Run runs the kit's expiry sweeper until ctx ends.
func (s *Service) Run(ctx context.Context) { s.kit.Run(ctx) }

// Close closes the database.
func (s *Service) Close() error { return s.db.Close() }

func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// try reserves a debit (the amount leaves the balance at once and is
// held) or a credit (held, added to the balance on confirm).
func (s *Service) try(ctx context.Context, tx *sql.Tx, id string, r *http.Request) (participant.Reservation, error) {
	q := r.URL.Query()
	account, kind := q.Get("account"), q.Get("kind")
	amount, err := strconv.ParseInt(q.Get("amount"), 10, 64)
	if err != nil || amount <= 0 || (kind != "debit" && kind != "credit") || account == "" {
		return participant.Reservation{}, participant.Reject(http.StatusBadRequest, "want account, kind=debit|credit and a positive amount")
	}
	ttl, _ := time.ParseDuration(q.Get("ttl"))
	if kind == "debit" {
		res, err := tx.ExecContext(ctx, `UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance >= ?`, amount, account, amount)
		if err != nil {
			return participant.Reservation{}, err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return participant.Reservation{}, participant.Reject(http.StatusConflict, "insufficient funds or no such account")
		}
	} else {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM accounts WHERE id = ?`, account).Scan(&one); err != nil {
			return participant.Reservation{}, participant.Reject(http.StatusNotFound, "no such account")
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO holds (reservation, account, kind, amount) VALUES (?, ?, ?, ?)`, id, account, kind, amount)
	return participant.Reservation{TTL: ttl}, err
}

func (s *Service) settle(ctx context.Context, tx *sql.Tx, id, outcome string) error {
	var account, kind string
	var amount int64
	err := tx.QueryRowContext(ctx, `SELECT account, kind, amount FROM holds WHERE reservation = ?`, id).Scan(&account, &kind, &amount)
	if err != nil {
		return fmt.Errorf("hold %s: %w", id, err)
	}
	if (kind == "credit" && outcome == "confirmed") || (kind == "debit" && outcome == "cancelled") {
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET balance = balance + ? WHERE id = ?`, amount, account); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM holds WHERE reservation = ?`, id); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO journal (reservation, account, kind, amount, outcome) VALUES (?, ?, ?, ?, ?)`, id, account, kind, amount, outcome)
	return err
}

func (s *Service) confirm(ctx context.Context, tx *sql.Tx, id string) error {
	return s.settle(ctx, tx, id, "confirmed")
}

func (s *Service) cancel(ctx context.Context, tx *sql.Tx, id string) error {
	return s.settle(ctx, tx, id, "cancelled")
}

// Audit is what the bank reports about its money.
type Audit struct {
	Initial          int64 `json:"initial"`
	Balances         int64 `json:"balances"`
	DebitHolds       int64 `json:"debit_holds"`
	CreditHolds      int64 `json:"credit_holds"`
	ConfirmedDebits  int64 `json:"confirmed_debits"`
	ConfirmedCredits int64 `json:"confirmed_credits"`
	// Conserved: Initial - ConfirmedDebits + ConfirmedCredits == Balances + DebitHolds.
	Conserved bool `json:"conserved"`
	// DoubleSettled counts reservations settled more than once (both
	// confirmed and cancelled, or twice): must be 0.
	DoubleSettled int `json:"double_settled"`
	// Reservations counts the kit's bookkeeping rows by state.
	Reservations map[string]int `json:"reservations"`
	// Breaches lists the reservations this bank let down against its
	// contract: a confirm refused (fault mode refuse), or a reservation
	// cancelled before its expiry (fault mode gone).
	Breaches []string `json:"breaches"`
}

// ComputeAudit reads the audit in one database transaction.
func (s *Service) ComputeAudit(ctx context.Context) (Audit, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Audit{}, err
	}
	defer tx.Rollback()
	a := Audit{Reservations: map[string]int{}, Breaches: []string{}}
	row := func(q string, dst ...any) {
		if err == nil {
			err = tx.QueryRowContext(ctx, q).Scan(dst...)
		}
	}
	row(`SELECT v FROM meta WHERE k = 'initial'`, &a.Initial)
	row(`SELECT COALESCE(SUM(balance), 0) FROM accounts`, &a.Balances)
	row(`SELECT COALESCE(SUM(CASE WHEN kind='debit' THEN amount END), 0), COALESCE(SUM(CASE WHEN kind='credit' THEN amount END), 0) FROM holds`, &a.DebitHolds, &a.CreditHolds)
	row(`SELECT COALESCE(SUM(CASE WHEN kind='debit' AND outcome='confirmed' THEN amount END), 0), COALESCE(SUM(CASE WHEN kind='credit' AND outcome='confirmed' THEN amount END), 0) FROM journal`, &a.ConfirmedDebits, &a.ConfirmedCredits)
	row(`SELECT COUNT(*) FROM (SELECT reservation FROM journal GROUP BY reservation HAVING COUNT(*) > 1)`, &a.DoubleSettled)
	if err != nil {
		return Audit{}, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT state, COUNT(*) FROM `+participant.DefaultTable+` GROUP BY state`)
	if err != nil {
		return Audit{}, err
	}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			rows.Close()
			return Audit{}, err
		}
		a.Reservations[st] = n
	}
	rows.Close()
	brows, err := tx.QueryContext(ctx, `SELECT reservation FROM breaches ORDER BY reservation`)
	if err != nil {
		return Audit{}, err
	}
	for brows.Next() {
		var id string
		if err := brows.Scan(&id); err != nil {
			brows.Close()
			return Audit{}, err
		}
		a.Breaches = append(a.Breaches, id)
	}
	brows.Close()
	a.Conserved = a.Initial-a.ConfirmedDebits+a.ConfirmedCredits == a.Balances+a.DebitHolds
	return a, nil
}

func (s *Service) audit(w http.ResponseWriter, r *http.Request) {
	a, err := s.ComputeAudit(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(a)
}

func (s *Service) addFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch f.Mode {
	case "status", "slow", "reset", "lost_reply", "refuse", "lost_until_expiry", "gone":
	default:
		http.Error(w, "unknown fault mode", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.faults = append(s.faults, &f)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) clearFaults(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.faults = nil
	s.silenced = nil
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// take returns the fault for this call of op on reservation id,
// consuming one use.
func (s *Service) take(op, id string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op == "confirm" && s.silenced[id] {
		return &Fault{Op: op, Mode: "lost_until_expiry"}
	}
	for i, f := range s.faults {
		if f.Op != op && f.Op != "any" {
			continue
		}
		if f.Reservation != "" && f.Reservation != id {
			continue
		}
		if (f.Mode == "refuse" || f.Mode == "lost_until_expiry" || f.Mode == "gone") && op != "confirm" {
			continue
		}
		if f.Mode == "lost_until_expiry" {
			if s.silenced == nil {
				s.silenced = make(map[string]bool)
			}
			s.silenced[id] = true
		}
		c := *f
		f.Count--
		if f.Count <= 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		return &c
	}
	return nil
}

// faulty puts fault injection in front of the kit's confirm or cancel.
func (s *Service) faulty(op string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := s.take(op, r.PathValue("id"))
		if f == nil {
			next.ServeHTTP(w, r)
			return
		}
		switch f.Mode {
		case "status":
			w.WriteHeader(f.Status)
		case "slow":
			d, _ := time.ParseDuration(f.Delay)
			select {
			case <-time.After(d):
			case <-r.Context().Done():
			}
			next.ServeHTTP(w, r)
		case "reset":
			hijackClose(w)
		case "lost_reply":
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			hijackClose(w)
		case "lost_until_expiry":
			id := r.PathValue("id")
			rec, ok, err := s.kit.Lookup(r.Context(), id)
			if err != nil || !ok || !time.Now().Before(rec.Expires) {
				s.mu.Lock()
				delete(s.silenced, id)
				s.mu.Unlock()
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(httptest.NewRecorder(), r)
			hijackClose(w)
		case "gone":
			// Cancel before the expiry (a breach if it was still tried),
			// then let the kit answer the confirm: 404.
			id := r.PathValue("id")
			if rec, ok, err := s.kit.Lookup(r.Context(), id); err == nil && ok && rec.State == participant.Tried {
				if _, err := s.db.ExecContext(r.Context(), `INSERT OR IGNORE INTO breaches (reservation) VALUES (?)`, id); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				del := httptest.NewRequestWithContext(r.Context(), http.MethodDelete, r.URL.Path, nil)
				del.SetPathValue("id", id)
				next.ServeHTTP(httptest.NewRecorder(), del)
			}
			next.ServeHTTP(w, r)
		case "refuse":
			// Only a breach if the reservation was still tried: refusing a
			// confirm it could keep. Record it before answering.
			id := r.PathValue("id")
			if rec, ok, err := s.kit.Lookup(r.Context(), id); err == nil && ok && rec.State == participant.Tried {
				if _, err := s.db.ExecContext(r.Context(), `INSERT OR IGNORE INTO breaches (reservation) VALUES (?)`, id); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				http.Error(w, "refused (injected contract breach)", http.StatusBadRequest)
				return
			}
			next.ServeHTTP(w, r)
		}
	})
}

func hijackClose(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	conn, _, err := rc.Hijack()
	if err != nil {
		panic(errors.New("bankpart: cannot hijack the connection"))
	}
	conn.Close()
}
