package examplecmd

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd/participant"
)

// TestRunServiceFlags: a command line whose lifetimes or retention the
// kit could not keep is refused before anything starts.
func TestRunServiceFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ttl", "25h"}, "--ttl"},
		{[]string{"--ttl", "2h", "--max-ttl", "1h"}, "--ttl"},
		{[]string{"--ttl", "0s"}, "--ttl"},
		{[]string{"--retention", "1h"}, "--retention"},
		{[]string{"--retention", "-1h"}, "--retention"},
	} {
		args := append([]string{"--db", filepath.Join(t.TempDir(), "x.db")}, c.args...)
		err := RunService(context.Background(), Service{Name: "x", Setup: func(context.Context, *Env) error {
			t.Errorf("%q: Setup ran", c.args)
			return nil
		}}, args, io.Discard, io.Discard)
		if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want a usage error naming %s", c.args, err, c.want)
		}
	}
}

// TestRunServiceDefaults: a service's participants get the address it
// serves as their base URL (no link from a Host header), the cleanup of
// old bookkeeping rows, and the lifetimes of the command line.
func TestRunServiceDefaults(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var env *Env
	svc := Service{Name: "x", Listen: "127.0.0.1:0", Setup: func(ctx context.Context, e *Env) error {
		env = e
		if err := participant.Migrate(ctx, e.DB, e.Dialect, participant.DefaultTable); err != nil {
			return err
		}
		noop := func(context.Context, *sql.Tx, string) error { return nil }
		p, err := e.Participant(ctx, participant.Config{Path: "/r", Confirm: noop, Cancel: noop,
			Try: func(context.Context, *sql.Tx, string, *http.Request) (participant.Reservation, error) {
				return participant.Reservation{}, nil
			}})
		if err != nil {
			return err
		}
		p.Register(e.Mux)
		return nil
	}}
	out, outW := io.Pipe()
	var logs lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- RunService(ctx, svc, []string{"--db", filepath.Join(t.TempDir(), "x.db"), "--ttl", "2m", "--max-ttl", "1h"}, outW, &logs)
		outW.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v\n%s", err, logs.String())
	}
	go io.Copy(io.Discard, out)
	addr := strings.TrimSpace(strings.TrimPrefix(line, "listening "))

	if env.BaseURL != "http://"+addr || env.Retention != DefaultRetention || env.TTL != 2*time.Minute || env.MaxTTL != time.Hour {
		t.Errorf("env: base %q, retention %v, ttl %v, max-ttl %v", env.BaseURL, env.Retention, env.TTL, env.MaxTTL)
	}
	// A try through a name the service does not know itself by still gets
	// a link to the address it serves.
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/r", nil)
	req.Host = "elsewhere.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusCreated || !strings.HasPrefix(loc, "http://"+addr+"/r/") {
		t.Errorf("try: %d, Location %q", resp.StatusCode, loc)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "no BaseURL") {
		t.Errorf("the kit built links from the Host header:\n%s", logs.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
