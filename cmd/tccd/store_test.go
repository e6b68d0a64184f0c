package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/pgtest"
	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/internal/testproc"
	"github.com/tccd/tccd/postgres"
)

// withPassword returns dsn and its password, adding one when it has none
// (a server that trusts the connection ignores it), so that tests can
// look for the password where it must not be.
func withPassword(t *testing.T, dsn string) (string, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if pw, ok := u.User.Password(); ok {
		return dsn, pw
	}
	const pw = "tccd-test-secret"
	u.User = url.UserPassword(u.User.Username(), pw)
	return u.String(), pw
}

func TestValidateStore(t *testing.T) {
	tests := []struct {
		store string
		want  string // "" for valid
	}{
		{"", ""},
		{"postgres://tccd:pw@db.internal:5432/tccd?sslmode=verify-full", ""},
		{"postgresql://tccd@db/tccd", ""},
		{"mysql://tccd:s3cret@db/tccd", "store must be empty (the embedded store in data) or a PostgreSQL URL"},
		{"/var/lib/tccd", "store must be empty"},
		{"postgres://tccd:s3cret@db:notaport/tccd", "store must be a valid PostgreSQL URL"},
		{"postgres://tccd:s3cret@db/tccd?sslmode=sometimes", "store must be a valid PostgreSQL URL"},
	}
	for _, tt := range tests {
		err := validateStore(tt.store)
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("validateStore(%s) = %v, want %q", postgres.Redact(tt.store), err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

// checkConfig runs `tccd serve --check-config` in-process.
func checkConfig(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"serve", "--check-config", "--listen", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "data")}, args...)
	err := run(context.Background(), args, &stdout, &stderr, func(string) string { return "" })
	return stdout.String() + stderr.String(), err
}

// TestCheckConfigStore: --check-config tries the PostgreSQL store: an
// unreachable server and a schema newer than this tccd are problems,
// reported without the password; a fresh database is fine.
func TestCheckConfigStore(t *testing.T) {
	_, err := checkConfig(t, "--store", "postgres://tccd:s3cret@127.0.0.1:1/tccd?connect_timeout=5")
	if err == nil || !strings.Contains(err.Error(), "store: connect to postgres://tccd:xxxxx@127.0.0.1:1/tccd") {
		t.Errorf("check-config with an unreachable database: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "s3cret") {
		t.Errorf("check-config shows the password: %v", err)
	}

	dsn, pw := withPassword(t, pgtest.NewDatabase(t))
	out, err := checkConfig(t, "--store", dsn)
	if err != nil || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("check-config with a fresh database: %v\n%s", err, out)
	}
	if err := postgres.Migrate(context.Background(), dsn); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, dsn, "INSERT INTO tccd_schema_version (version, name) VALUES ($1, 'newer')", postgres.SchemaVersion+1)
	_, err = checkConfig(t, "--store", dsn)
	want := (&postgres.SchemaTooNewError{Have: postgres.SchemaVersion + 1, Know: postgres.SchemaVersion}).Error()
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), pw) {
		t.Errorf("check-config with a newer schema: %v, want %q", err, want)
	}
}

// tccdCommand runs the built binary to its end and returns its output
// and exit code.
func tccdCommand(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins["tccd"], args...)
	cmd.Env = append(os.Environ(), "TCCD_STORE=", "TCCD_CONFIG=")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("tccd %s: %v", args[0], err)
	return "", 0
}

// TestMigrateCommand: `tccd migrate` brings a fresh database to this
// tccd's schema (and again, changing nothing), refuses a newer one, and
// wants a store.
func TestMigrateCommand(t *testing.T) {
	dsn, pw := withPassword(t, pgtest.NewDatabase(t))
	wantOK := "is at version"
	for i := 0; i < 2; i++ {
		out, code := tccdCommand(t, "migrate", "--store", dsn)
		if code != 0 || !strings.Contains(out, wantOK) || strings.Contains(out, pw) {
			t.Fatalf("migrate (run %d): exit %d\n%s", i+1, code, out)
		}
	}
	pgtest.Exec(t, dsn, "INSERT INTO tccd_schema_version (version, name) VALUES (999, 'newer')")
	out, code := tccdCommand(t, "migrate", "--store", dsn)
	want := "the database schema is version 999; this tccd knows up to"
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "upgrade tccd") || strings.Contains(out, pw) {
		t.Fatalf("migrate of a newer schema: exit %d\n%s\nwant exit 1 and %q", code, out, want)
	}
	out, code = tccdCommand(t, "migrate")
	if code != 1 || !strings.Contains(out, "migrate needs a PostgreSQL store") {
		t.Fatalf("migrate without a store: exit %d\n%s", code, out)
	}
}

// TestPostgresCrashMidConfirm: tccd on a PostgreSQL store is SIGKILLed
// while the confirm of a one-shot transaction is at its two participants
// (their confirm calls held), and started again on the same database: it
// resumes and the transaction ends confirmed. No data directory is made,
// and the password is in no log line.
func TestPostgresCrashMidConfirm(t *testing.T) {
	dsn, pw := withPassword(t, pgtest.NewDatabase(t))
	data := filepath.Join(t.TempDir(), "data")
	p1 := testproc.StartParticipant(t, bins["testpart"])
	p2 := testproc.StartParticipant(t, bins["testpart"])
	// The node keeps its name across the restart (as a node of a cluster
	// should): it resumes its own transactions at once, without waiting
	// for its lease to run out.
	flags := []string{"--store", dsn, "--data", data, "--node-id", "node-1", "--retry-min", "10ms", "--retry-max", "200ms", "--shutdown-grace", "1s"}
	co := testproc.StartTccd(t, bins["tccd"], flags...)
	client := &http.Client{Timeout: 30 * time.Second}

	var links []link
	for _, p := range []*testproc.Proc{p1, p2} {
		l, err := try(t, client, p.URL())
		if err != nil {
			t.Fatal(err)
		}
		links = append(links, l)
		if code, _, err := do(client, "POST", p.URL()+"/faults", "application/json", testpart.Fault{Op: "confirm", Count: -1, Hold: true}); err != nil || code != http.StatusNoContent {
			t.Fatalf("install the hold at %s: %d %v", p.Addr, code, err)
		}
	}
	confirm := func(base string) (int, error) {
		code, _, err := do(client, "PUT", base+"/coordinator/confirm", "application/tcc+json", map[string]any{"participantLinks": links})
		return code, err
	}
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		confirm(co.URL()) // fails with the process
	}()
	// Both calls held: the decision is in the database (it is committed
	// before the first call), and the outcome is not.
	deadline := time.Now().Add(time.Minute)
	for participantStats(t, client, p1.URL()).Held < 1 || participantStats(t, client, p2.URL()).Held < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the confirm calls did not reach both participants")
		}
		time.Sleep(10 * time.Millisecond)
	}
	co.Kill()
	<-answered
	// A held call ends undone once its participant sees the caller gone;
	// clearing the hold before that would let it go on and confirm.
	deadline = time.Now().Add(time.Minute)
	for participantStats(t, client, p1.URL()).Held > 0 || participantStats(t, client, p2.URL()).Held > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the held confirm calls did not end with their caller")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, p := range []*testproc.Proc{p1, p2} {
		if code, _, err := do(client, "DELETE", p.URL()+"/faults", "", nil); err != nil || code != http.StatusNoContent {
			t.Fatalf("clear the hold at %s: %d %v", p.Addr, code, err)
		}
	}
	for _, l := range links {
		if s := reservationState(t, client, l.URI); s != testpart.Tried {
			t.Fatalf("reservation %s is %s before the restart, want tried", l.URI, s)
		}
	}
	log := co.Log()

	co = testproc.StartTccd(t, bins["tccd"], flags...)
	if !strings.Contains(co.Log(), `"msg":"recovery scheduled","resume":1,`) {
		t.Errorf("the restart did not resume the decided transaction:\n%s", co.Log())
	}
	deadline = time.Now().Add(time.Minute)
	for reservationState(t, client, links[0].URI) != testpart.Confirmed || reservationState(t, client, links[1].URI) != testpart.Confirmed {
		if time.Now().After(deadline) {
			t.Fatalf("the confirm did not resume after the restart\n%s", co.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, err := confirm(co.URL()); err != nil || code != http.StatusNoContent {
		t.Fatalf("confirm after the restart: %d %v", code, err)
	}
	for _, p := range []*testproc.Proc{p1, p2} {
		if st := participantStats(t, client, p.URL()); st.Confirmed != 1 || st.Cancelled != 0 || st.CancelAfterConfirm != 0 {
			t.Errorf("participant %s: %+v", p.Addr, st)
		}
	}
	if err := co.Stop(); err != nil {
		t.Errorf("graceful stop: %v", err)
	}
	log += co.Log()
	if !strings.Contains(log, `"msg":"store opened","store":"postgres"`) {
		t.Errorf("no store line in the log:\n%s", log)
	}
	if strings.Contains(log, pw) {
		t.Errorf("the log shows the database password:\n%s", log)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data directory was made with a PostgreSQL store: %v", err)
	}
}
