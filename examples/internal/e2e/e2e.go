// Package e2e is the harness of the examples' end-to-end tests: it builds
// the real binaries (tccd and the example's command), runs them as
// processes on loopback with random ports, gives each service a database
// of its own (a SQLite file, or a PostgreSQL schema dropped at the end),
// and offers the polling and inspection helpers the tests share.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/examples/internal/examplecmd"
	"github.com/tccd/tccd/examples/internal/exampledb"
	"github.com/tccd/tccd/internal/testproc"
	"github.com/tccd/tccd/participant"
)

// EnvPostgres names the PostgreSQL server of the PostgreSQL variants, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable. Unset, they are
// skipped — except under CI=true, where they fail.
const EnvPostgres = "TCCD_TEST_POSTGRES"

// Backends are the databases every example's test runs on.
var Backends = []string{"sqlite", "postgres"}

// Env is one test's world: a backend and the processes started in it.
type Env struct {
	t       *testing.T
	Backend string
	admin   *sql.DB // PostgreSQL: the connection schemas are made with
	baseDSN string
}

// New returns the Env of backend, skipping the test (or under CI=true
// failing it) when backend is postgres and TCCD_TEST_POSTGRES is unset.
func New(t *testing.T, backend string) *Env {
	t.Helper()
	e := &Env{t: t, Backend: backend}
	if backend != "postgres" {
		return e
	}
	dsn := os.Getenv(EnvPostgres)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: under CI=true the PostgreSQL variant must run (see docs/EXAMPLES.md)", EnvPostgres)
		}
		t.Skipf("%s is not set: skipping the PostgreSQL variant (see docs/EXAMPLES.md)", EnvPostgres)
	}
	if !exampledb.IsPostgres(dsn) {
		t.Fatalf("%s must be a postgres:// URL, not %q", EnvPostgres, exampledb.Redact(dsn))
	}
	db, _, err := exampledb.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgres, err)
	}
	t.Cleanup(func() { db.Close() })
	e.admin, e.baseDSN = db, dsn
	return e
}

var seq atomic.Int64

var unsafe = regexp.MustCompile(`[^a-z0-9_]`)

// DSN returns the --db of a new service database named name: a fresh
// SQLite file in the test's temporary directory, or a fresh PostgreSQL
// schema, selected with search_path and dropped when the test ends.
func (e *Env) DSN(name string) string {
	e.t.Helper()
	if e.admin == nil {
		return filepath.Join(e.t.TempDir(), name+".db")
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	schema := fmt.Sprintf("ex_%d_%d_%s_%s", os.Getpid(), seq.Add(1), unsafe.ReplaceAllString(strings.ToLower(name), "_"), hex.EncodeToString(b[:]))
	if _, err := e.admin.Exec("CREATE SCHEMA " + schema); err != nil {
		e.t.Fatal(err)
	}
	// Registered before the services start, so it runs after they are
	// killed (cleanups run last-in first-out).
	e.t.Cleanup(func() {
		if _, err := e.admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			e.t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(e.baseDSN)
	if err != nil {
		e.t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Open opens a service's database for the test's own checks.
func (e *Env) Open(dsn string) (*sql.DB, participant.Dialect) {
	e.t.Helper()
	db, d, err := exampledb.Open(context.Background(), dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	return db, d
}

// StartTccd runs the coordinator with a fresh data directory and quick
// retries, and waits until it is ready.
func (e *Env) StartTccd(bin string, args ...string) *testproc.Proc {
	e.t.Helper()
	all := append([]string{"--data", e.t.TempDir(), "--retry-min", "10ms", "--retry-max", "200ms", "--confirm-wait", "20s"}, args...)
	return testproc.StartTccd(e.t, bin, all...)
}

// Service is a service process that can be killed and started again on
// the same address and database.
type Service struct {
	*testproc.Proc
	e    *Env
	name string
	bin  string
	args []string
}

// Start runs bin args (a service that prints "listening <addr>") on a
// random loopback port, adding --listen at the end of args.
func (e *Env) Start(name, bin string, args ...string) *Service {
	e.t.Helper()
	args = append(args[:len(args):len(args)], "--listen", "127.0.0.1:0")
	return &Service{Proc: testproc.StartService(e.t, name, bin, args...), e: e, name: name, bin: bin, args: args}
}

// Restart starts the (killed) service again, on the same address.
func (s *Service) Restart() {
	s.e.t.Helper()
	if !s.Exited() {
		s.e.t.Fatalf("%s: restart of a running process", s.name)
	}
	addr := s.Addr
	s.Proc = testproc.StartService(s.e.t, s.name, s.bin, append(s.args, "--listen", addr)...)
}

// Arm makes the service's next count calls of op ("confirm" or "cancel")
// fail (the service runs with --test-faults).
func (s *Service) Arm(op string, count int) {
	s.e.t.Helper()
	b, _ := json.Marshal(examplecmd.Fault{Op: op, Count: count})
	resp, err := http.Post(s.URL()+"/admin/faults", "application/json", bytes.NewReader(b))
	if err != nil {
		s.e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		s.e.t.Fatalf("%s: arm fault: %s", s.name, resp.Status)
	}
}

// Faults returns the service's fault counters.
func (s *Service) Faults() examplecmd.FaultState {
	s.e.t.Helper()
	var st examplecmd.FaultState
	GetJSON(s.e.t, s.URL()+"/admin/faults", &st)
	return st
}

// Run runs a command to completion (within a minute) and returns its
// standard output; the test fails if it exits non-zero.
func Run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// Lines decodes one JSON value per line.
func Lines[T any](t *testing.T, out string) []T {
	t.Helper()
	var vs []T
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		vs = append(vs, v)
	}
	return vs
}

// Eventually polls cond until it returns nil, failing the test with
// cond's last error if that takes longer than timeout.
func Eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not so after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// GetJSON decodes the answer of GET url into v; it fails the test on any
// status but 200.
func GetJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// Transactions lists the coordinator's transactions in state ("" for all).
func Transactions(t *testing.T, coordinator, state string) []api.Transaction {
	t.Helper()
	var all []api.Transaction
	cursor := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if state != "" {
			q.Set("state", state)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page api.TransactionList
		GetJSON(t, coordinator+"/api/v1/transactions?"+q.Encode(), &page)
		all = append(all, page.Transactions...)
		if page.NextCursor == "" {
			return all
		}
		cursor = page.NextCursor
	}
}

// Reservations returns the kit's bookkeeping rows of a service's
// database: reservation id → state.
func Reservations(t *testing.T, db *sql.DB) map[string]participant.State {
	t.Helper()
	rows, err := db.Query("SELECT id, state FROM " + participant.DefaultTable)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]participant.State{}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			t.Fatal(err)
		}
		out[id] = participant.State(st)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
