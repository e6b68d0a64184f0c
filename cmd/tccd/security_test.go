package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/internal/testcert"
)

var hexHash = regexp.MustCompile(`[0-9a-f]{64}`)

func TestTokenCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"token", "--name", "ops", "--role", "admin"}, &stdout, &stderr, fakeEnv(nil)); err != nil {
		t.Fatalf("tccd token: %v (%s)", err, stderr.String())
	}
	var token, line string
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		switch {
		case strings.HasPrefix(l, "#"):
		case token == "":
			token = l
		default:
			line = l
		}
	}
	if !strings.HasPrefix(token, tccdhttp.TokenPrefix) || line != "ops admin "+tccdhttp.HashToken(token) {
		t.Fatalf("output %q: token %q line %q", stdout.String(), token, line)
	}
	toks, err := tccdhttp.ParseTokens(strings.NewReader(line))
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := toks.Authenticate(token); !ok || p != (tccd.Principal{Name: "ops", Role: tccd.RoleAdmin}) {
		t.Fatalf("the printed line does not authenticate the token: %v %v", p, ok)
	}
	// Two runs, two tokens.
	var again bytes.Buffer
	_ = run(context.Background(), []string{"token", "--name", "ops"}, &again, &stderr, fakeEnv(nil))
	if strings.Contains(again.String(), token) || !strings.Contains(again.String(), "ops client ") {
		t.Fatalf("second token: %q", again.String())
	}

	for _, args := range [][]string{
		{"token"},
		{"token", "--name", "x", "--role", "root"},
		{"token", "--name", "has space"},
		{"token", "--name", "x", "extra"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut, fakeEnv(nil))
		if !errors.Is(err, errUsage) || out.Len() != 0 {
			t.Errorf("run(%q) = %v, stdout %q; want a usage error and no token", args, err, out.String())
		}
	}
}

// TestCheckConfigSecurity: --check-config loads the security files,
// reports what is on, and never prints a token hash.
func TestCheckConfigSecurity(t *testing.T) {
	dir := t.TempDir()
	h1, h2 := tccdhttp.HashToken("t1"), tccdhttp.HashToken("t2")
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("# ours\nbilling client "+h1+"\nops admin "+h2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	swapped := filepath.Join(dir, "swapped")
	if err := os.WriteFile(swapped, []byte("billing "+h1+" client\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := testcert.NewCA(t, "ca")
	caPath := ca.WriteCA(t, dir, "ca.pem")
	cert, key := testcert.Write(t, dir, "srv", ca.Issue(t, "tccd", "127.0.0.1"))

	check := func(args ...string) (string, error) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"serve", "--check-config"}, args...), &stdout, &stderr, fakeEnv(map[string]string{"TCCD_LISTEN": "127.0.0.1:0"}))
		out := stdout.String() + stderr.String()
		if err != nil {
			out += err.Error()
		}
		if hexHash.MatchString(out) || strings.Contains(out, h1[:12]) {
			t.Errorf("check-config %q shows a hash: %s", args, out)
		}
		return stdout.String(), err
	}
	out, err := check("--auth-tokens-file", tokens, "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", caPath,
		"--participant-allow", "https://*.internal:443", "--participant-allow", "10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"configuration is valid\n", "auth: on (1 admin, 1 client tokens)\n", "tls: mutual\n", "participant_allow: 2 rules\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config output %q lacks %q", out, want)
		}
	}
	out, err = check()
	if err != nil || !strings.Contains(out, "auth: off\n") || !strings.Contains(out, "tls: off\n") || !strings.Contains(out, "participant_allow: built-in refusals only\n") {
		t.Errorf("defaults: %q, %v", out, err)
	}

	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"swapped columns":     {[]string{"--auth-tokens-file", swapped}, "the role"},
		"missing tokens file": {[]string{"--auth-tokens-file", filepath.Join(dir, "nope")}, "auth-tokens-file must"},
		"cert without key":    {[]string{"--tls-cert", cert}, "tls-cert and tls-key must be set together"},
		"key is not a key":    {[]string{"--tls-cert", cert, "--tls-key", cert}, "tls-cert and tls-key must be"},
		"client CA alone":     {[]string{"--tls-client-ca", caPath}, "tls-client-ca must be used with tls-cert"},
		"CA file not PEM":     {[]string{"--participant-ca", tokens}, "participant-ca must be a PEM file"},
		"participant key":     {[]string{"--participant-cert", cert}, "participant-cert and participant-key must be set together"},
		"bad allow rule":      {[]string{"--participant-allow", "ftp://x"}, "participant-allow"},
		"negative rate":       {[]string{"--rate-limit", "-1"}, "rate-limit must be"},
		"negative burst":      {[]string{"--rate-burst", "-1"}, "rate-burst must not be negative"},
	} {
		if _, err := check(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
}

// TestConfigListOption: participant-allow from the file (a list), the
// environment (comma-separated) and repeated flags; flags replace the
// file's list, then add to it.
func TestConfigListOption(t *testing.T) {
	file := writeFile(t, "participant-allow = [\"https://*.internal:443\", \"10.0.0.0/8\"]\n")
	tests := []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{nil, nil, nil},
		{[]string{"--config", file}, nil, []string{"https://*.internal:443", "10.0.0.0/8"}},
		{[]string{"--config", writeFile(t, "participant-allow = \"a.example, b.example\"\n")}, nil, []string{"a.example", "b.example"}},
		{nil, map[string]string{"TCCD_PARTICIPANT_ALLOW": "a.example,b.example"}, []string{"a.example", "b.example"}},
		{[]string{"--config", file}, map[string]string{"TCCD_PARTICIPANT_ALLOW": "a.example"}, []string{"a.example"}},
		{[]string{"--config", file, "--participant-allow", "a.example", "--participant-allow=b.example,c.example"}, nil, []string{"a.example", "b.example", "c.example"}},
	}
	for _, tt := range tests {
		m, err := parse(t, tt.args, tt.env)
		if err != nil {
			t.Fatalf("%q %v: %v", tt.args, tt.env, err)
		}
		if strings.Join(m.Config.ParticipantAllow, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%q %v: participant-allow %q, want %q", tt.args, tt.env, m.Config.ParticipantAllow, tt.want)
		}
	}
	if _, err := parse(t, []string{"--config", writeFile(t, "participant-allow = [1, 2]\n")}, nil); err == nil || !strings.Contains(err.Error(), "list of strings") {
		t.Errorf("numbers in the list: %v", err)
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

// TestServeSecured runs `tccd serve` in-process with every security
// option: tokens, mutual TLS on the API, a private CA and a client
// certificate towards an https participant that requires one, an
// allowlist and a rate limit.
func TestServeSecured(t *testing.T) {
	dir := t.TempDir()
	apiCA, partCA := testcert.NewCA(t, "api CA"), testcert.NewCA(t, "participants CA")
	srvCert, srvKey := testcert.Write(t, dir, "api", apiCA.Issue(t, "tccd", "127.0.0.1"))
	toPart, toPartKey := testcert.Write(t, dir, "to-participants", partCA.Issue(t, "tccd"))

	var mu sync.Mutex
	var peers []string
	part := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		peers = append(peers, r.Method+" "+r.TLS.PeerCertificates[0].Subject.CommonName)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	part.TLS = &tls.Config{Certificates: []tls.Certificate{partCA.Issue(t, "participant", "127.0.0.1")}, ClientCAs: partCA.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	part.StartTLS()
	t.Cleanup(part.Close)

	token, err := tccdhttp.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("billing client "+tccdhttp.HashToken(token)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	stderr := &lockedBuffer{}
	m := NewMain(io.Discard, stderr, fakeEnv(nil))
	err = m.ParseFlags([]string{
		"--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--log-level", "debug", "--shutdown-grace", "1s",
		"--auth-tokens-file", tokens,
		"--tls-cert", srvCert, "--tls-key", srvKey, "--tls-client-ca", apiCA.WriteCA(t, dir, "api-ca.pem"),
		"--participant-ca", partCA.WriteCA(t, dir, "part-ca.pem"), "--participant-cert", toPart, "--participant-key", toPartKey,
		"--participant-allow", "https://127.0.0.1:*",
		"--rate-limit", "0.01", "--rate-burst", "5", // no request comes back during the test
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		m.Close()
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			m.Close()
		}
	}()
	base := "https://" + m.Addr()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: apiCA.Pool(), Certificates: []tls.Certificate{apiCA.Issue(t, "billing-service")},
	}}}
	call := func(method, path, tok, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	// Unauthenticated requests count against the address, the others
	// against the token: the token's five are begin, two enlists,
	// confirm and get.
	// No token.
	if code, _ := call("POST", "/api/v1/transactions", "", `{}`); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	// Begin.
	code, body := call("POST", "/api/v1/transactions", token, `{}`)
	var tx tccdhttp.Transaction
	if code != http.StatusCreated || json.Unmarshal(body, &tx) != nil || tx.CreatedBy != "billing" {
		t.Fatalf("begin: %d %s", code, body)
	}
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	// Links the allowlist refuses.
	for _, uri := range []string{"http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:1/r/1"} {
		code, body := call("POST", "/api/v1/transactions/"+tx.ID+"/participants", token, `{"uri":"`+uri+`","expires":"`+exp+`"}`)
		if code != http.StatusBadRequest || !strings.Contains(string(body), "not an allowed destination") {
			t.Fatalf("enlist %s: %d %s", uri, code, body)
		}
	}
	// Confirm with the https participant.
	code, body = call("PUT", "/api/v1/transactions/"+tx.ID+"/confirm", token, `{"participants":[{"uri":"`+part.URL+`/r/1","expires":"`+exp+`"}]}`)
	if code != http.StatusOK || !strings.Contains(string(body), `"state":"confirmed"`) {
		t.Fatalf("confirm: %d %s", code, body)
	}
	mu.Lock()
	if strings.Join(peers, ",") != "PUT tccd" {
		t.Errorf("the participant saw %v, want one PUT from tccd's certificate", peers)
	}
	mu.Unlock()
	// The burst is used up after this one.
	if code, _ := call("GET", "/api/v1/transactions/"+tx.ID, token, ""); code != http.StatusOK {
		t.Fatalf("get: %d", code)
	}
	code, _ = call("GET", "/api/v1/transactions/"+tx.ID, token, "")
	if code != http.StatusTooManyRequests {
		t.Fatalf("6th request with the token: %d, want 429", code)
	}
	// The probes stay open; a client without a certificate is refused.
	if code, _ := call("GET", "/readyz", "", ""); code != http.StatusOK {
		t.Fatalf("readyz: %d", code)
	}
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: apiCA.Pool()}}}
	if resp, err := noCert.Get(base + "/readyz"); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %d", resp.StatusCode)
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	log := stderr.String()
	if !strings.Contains(log, `auth="on (0 admin, 1 client tokens)"`) || !strings.Contains(log, "tls=mutual") {
		t.Errorf("the start-up log does not say what is on:\n%s", log)
	}
	if strings.Contains(log, token) || strings.Contains(log, tccdhttp.HashToken(token)) || hexHash.MatchString(log) {
		t.Errorf("the log shows the token or its hash:\n%s", log)
	}
}
