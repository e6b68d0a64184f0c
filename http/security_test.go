package http

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/pebble"
)

var hexHash = regexp.MustCompile(`[0-9a-fA-F]{64}`)

func TestParseTokens(t *testing.T) {
	h1, h2 := HashToken("tok-1"), HashToken("tok-2")
	good := "# tokens\n\nbilling client " + h1 + "\n  ops\tadmin\t" + strings.ToUpper(h2) + "  \n"
	toks, err := ParseTokens(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if toks.Count(tccd.RoleClient) != 1 || toks.Count(tccd.RoleAdmin) != 1 {
		t.Fatalf("counts %d client %d admin", toks.Count(tccd.RoleClient), toks.Count(tccd.RoleAdmin))
	}
	for tok, want := range map[string]tccd.Principal{
		"tok-1": {Name: "billing", Role: tccd.RoleClient},
		"tok-2": {Name: "ops", Role: tccd.RoleAdmin},
	} {
		if p, ok := toks.Authenticate(tok); !ok || p != want {
			t.Errorf("Authenticate(%s) = %v, %v; want %v", tok, p, ok, want)
		}
	}
	for _, bad := range []string{"", "tok-3", "tok-1 ", h1, "Bearer tok-1"} {
		if p, ok := toks.Authenticate(bad); ok {
			t.Errorf("Authenticate(%q) = %v: accepted", bad, p)
		}
	}

	tests := []struct {
		name, file, want string
	}{
		{"empty", "# nothing\n", "no tokens"},
		{"two fields", "billing " + h1 + "\n", "line 1: want 3 fields"},
		{"four fields", "billing client " + h1 + " x\n", "want 3 fields"},
		{"bad name", "-billing client " + h1 + "\n", "line 1: the name"},
		{"long name", strings.Repeat("a", 65) + " client " + h1 + "\n", "the name"},
		{"duplicate name", "a client " + h1 + "\na admin " + h2 + "\n", "line 2: name a appears twice"},
		{"bad role", "a root " + h1 + "\n", "the role, must be client or admin"},
		{"hash as role", "a " + h1 + " client\n", "the role"},
		{"short hash", "a client " + h1[:63] + "\n", "SHA-256 in hex"},
		{"not hex", "a client " + strings.Repeat("g", 64) + "\n", "SHA-256 in hex"},
		{"duplicate hash", "a client " + h1 + "\nb admin " + h1 + "\n", "line 2: the same token hash appears twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTokens(strings.NewReader(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseTokens = %v, want an error with %q", err, tt.want)
			}
			if hexHash.MatchString(err.Error()) || strings.Contains(err.Error(), h1[:16]) {
				t.Fatalf("the error shows a hash: %v", err)
			}
		})
	}
}

func TestNewToken(t *testing.T) {
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if a == b || !strings.HasPrefix(a, TokenPrefix) || len(a) != len(TokenPrefix)+43 {
		t.Fatalf("tokens %q %q", a, b)
	}
	if h := HashToken(a); len(h) != 64 || !hexHash.MatchString(h) {
		t.Fatalf("hash %q", h)
	}
}

func TestBearer(t *testing.T) {
	tests := []struct {
		headers []string
		token   string
		found   bool
	}{
		{nil, "", false},
		{[]string{"Bearer abc"}, "abc", true},
		{[]string{"bearer abc"}, "abc", true},
		{[]string{"BEARER  abc "}, "abc", true},
		{[]string{"Basic YWxhZGRpbjpvcGVuc2VzYW1l"}, "", true},
		{[]string{"Bearer"}, "", true},
		{[]string{"Bearer "}, "", true},
		{[]string{"Bearer a b"}, "", true},
		{[]string{"Bearer abc", "Bearer abc"}, "", true},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		for _, h := range tt.headers {
			r.Header.Add("Authorization", h)
		}
		if tok, found := bearer(r); tok != tt.token || found != tt.found {
			t.Errorf("bearer(%q) = %q, %v; want %q, %v", tt.headers, tok, found, tt.token, tt.found)
		}
	}
}

// secureEnv is a real coordinator with authentication on: alice and bob
// are clients, ops is an admin.
type secureEnv struct {
	coord *tccd.Coordinator
	part  *httptest.Server
	h     *apiHarness
	log   *syncBuffer
}

const aliceTok, bobTok, opsTok = "tccd_alice-token", "tccd_bob-token", "tccd_ops-token"

func newSecureEnv(t *testing.T, cfg ServerConfig) *secureEnv {
	t.Helper()
	toks, err := ParseTokens(strings.NewReader(
		"alice client " + HashToken(aliceTok) + "\nbob client " + HashToken(bobTok) + "\nops admin " + HashToken(opsTok) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tokens == nil {
		cfg.Tokens = toks
	}
	store, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	part := fakeParticipants(t)
	caller := NewCaller()
	t.Cleanup(caller.Close)
	coord := tccd.NewCoordinator(tccd.Config{ConfirmWait: 5 * time.Second}, store, caller, nil, nil)
	if err := coord.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { coord.Close() })
	buf := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ts := httptest.NewServer(NewServer(coord, cfg, log))
	t.Cleanup(ts.Close)
	return &secureEnv{coord: coord, part: part, h: newAPIHarness(t, ts.URL), log: buf}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAuthAPI checks who may call what with authentication on, and that
// every answer matches the OpenAPI document.
func TestAuthAPI(t *testing.T) {
	e := newSecureEnv(t, ServerConfig{})
	h := e.h
	const js, tcc = "application/json", "application/tcc+json"
	future := time.Now().Add(time.Hour).Format(time.RFC3339)
	link := func(name string) string {
		return `{"uri":"` + e.part.URL + "/" + name + `","expires":"` + future + `"}`
	}
	problem := func(body []byte, code string) Problem {
		t.Helper()
		p := decodeAs[Problem](t, body)
		if p.Code != code {
			t.Errorf("problem code %q, want %q: %s", p.Code, code, body)
		}
		return p
	}

	// Open: probes and the document.
	h.do(apiCall{method: "GET", path: "/healthz"}, http.StatusOK)
	h.do(apiCall{method: "GET", path: "/readyz"}, http.StatusOK)
	h.do(apiCall{method: "GET", path: "/api/v1/openapi.json"}, http.StatusOK)

	// No token, a bad one, another scheme: 401 with a challenge.
	for _, c := range []struct {
		call      apiCall
		challenge string
	}{
		{apiCall{method: "POST", path: "/api/v1/transactions"}, `Bearer realm="tccd"`},
		{apiCall{method: "POST", path: "/api/v1/transactions", token: "tccd_wrong"}, `Bearer realm="tccd", error="invalid_token"`},
		{apiCall{method: "POST", path: "/api/v1/transactions", token: HashToken(aliceTok)}, `Bearer realm="tccd", error="invalid_token"`},
		{apiCall{method: "POST", path: "/api/v1/transactions", auth: "Basic YWxpY2U6eA=="}, `Bearer realm="tccd", error="invalid_token"`},
		{apiCall{method: "GET", path: "/api/v1/transactions", token: "x"}, `Bearer realm="tccd", error="invalid_token"`},
		{apiCall{method: "POST", path: "/api/v1/admin/purge"}, `Bearer realm="tccd"`},
	} {
		hdr, body := h.do(c.call, http.StatusUnauthorized)
		problem(body, "unauthorized")
		if got := hdr.Get("WWW-Authenticate"); got != c.challenge {
			t.Errorf("%s %s: WWW-Authenticate %q, want %q", c.call.method, c.call.path, got, c.challenge)
		}
	}
	hdr, body := h.do(apiCall{method: "PUT", path: "/coordinator/confirm", ctype: tcc, body: `{"participantLinks":[]}`}, http.StatusUnauthorized)
	if hdr.Get("WWW-Authenticate") == "" || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") || !strings.Contains(string(body), "bearer token") {
		t.Errorf("Atomikos 401: %v %q", hdr, body)
	}

	// alice begins; the transaction records her.
	_, body = h.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: js, token: aliceTok,
		body: `{"participants":[` + link("ok/1") + `]}`}, http.StatusCreated)
	tx := decodeAs[Transaction](t, body)
	if tx.CreatedBy != "alice" {
		t.Fatalf("created_by %q, want alice", tx.CreatedBy)
	}
	txPath := "/api/v1/transactions/" + tx.ID
	h.do(apiCall{method: "GET", path: txPath, token: aliceTok}, http.StatusOK)
	h.do(apiCall{method: "GET", path: txPath, token: opsTok}, http.StatusOK)

	// bob gets what he would get for a transaction that does not exist.
	_, none := h.do(apiCall{method: "GET", path: "/api/v1/transactions/01NOSUCHTRANSACTION0000000", token: bobTok}, http.StatusNotFound)
	for _, c := range []apiCall{
		{method: "GET", path: txPath, token: bobTok},
		{method: "POST", path: txPath + "/participants", ctype: js, body: link("ok/2"), token: bobTok},
		{method: "PUT", path: txPath + "/confirm", token: bobTok},
		{method: "PUT", path: txPath + "/cancel", token: bobTok},
	} {
		_, body := h.do(c, http.StatusNotFound)
		got, want := problem(body, "not_found"), problem(none, "not_found")
		if strings.ReplaceAll(want.Detail, "01NOSUCHTRANSACTION0000000", tx.ID) != got.Detail || got.Transaction != nil {
			t.Errorf("%s %s as bob: %s; want the same as for a missing id (%s)", c.method, c.path, body, none)
		}
	}

	// Admin-only operations: 403 for a client.
	for _, c := range []apiCall{
		{method: "GET", path: "/api/v1/transactions", token: aliceTok},
		{method: "PUT", path: txPath + "/resolve", ctype: js, body: `{"state":"confirmed"}`, token: aliceTok},
		{method: "POST", path: "/api/v1/admin/purge", token: aliceTok},
	} {
		_, body := h.do(c, http.StatusForbidden)
		if p := problem(body, "forbidden"); !strings.Contains(p.Detail, "admin role") {
			t.Errorf("%s %s: detail %q", c.method, c.path, p.Detail)
		}
	}
	_, body = h.do(apiCall{method: "GET", path: "/api/v1/transactions", token: opsTok}, http.StatusOK)
	if list := decodeAs[TransactionList](t, body); len(list.Transactions) != 1 || list.Transactions[0].CreatedBy != "alice" {
		t.Errorf("admin list: %s", body)
	}
	_, body = h.do(apiCall{method: "POST", path: "/api/v1/admin/purge", token: opsTok}, http.StatusOK)
	if decodeAs[PurgeResult](t, body).Purged != 0 {
		t.Errorf("purge: %s", body)
	}
	h.do(apiCall{method: "POST", path: "/api/v1/admin/purge", ctype: js, body: `{}`, token: opsTok}, http.StatusOK)
	h.do(apiCall{method: "POST", path: "/api/v1/admin/purge", ctype: js, body: `{"all":true}`, token: opsTok, invalid: true}, http.StatusBadRequest)

	// Resolve: not heuristic is a conflict; bad bodies are 400.
	_, body = h.do(apiCall{method: "PUT", path: txPath + "/resolve", ctype: js, body: `{"state":"confirmed"}`, token: opsTok}, http.StatusConflict)
	problem(body, "conflict")
	for _, b := range []string{`{"state":"heuristic"}`, `{}`, `{"state":"confirmed","note":"` + strings.Repeat("n", tccd.MaxNoteLength+1) + `"}`, `{"state":"confirmed","by":"x"}`} {
		_, body = h.do(apiCall{method: "PUT", path: txPath + "/resolve", ctype: js, body: b, token: opsTok, invalid: true}, http.StatusBadRequest)
		problem(body, "invalid")
	}
	h.do(apiCall{method: "PUT", path: "/api/v1/transactions/nope/resolve", ctype: js, body: `{"state":"cancelled"}`, token: opsTok}, http.StatusNotFound)

	// A heuristic outcome, resolved by ops.
	_, body = h.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: js, token: aliceTok,
		body: `{"participants":[` + link("ok/3") + `,` + link("refuse/1") + `]}`}, http.StatusCreated)
	heur := decodeAs[Transaction](t, body)
	h.do(apiCall{method: "PUT", path: "/api/v1/transactions/" + heur.ID + "/confirm", token: aliceTok}, http.StatusConflict)
	_, body = h.do(apiCall{method: "PUT", path: "/api/v1/transactions/" + heur.ID + "/resolve", ctype: js,
		body: `{"state":"cancelled","note":"ok/3 refunded by hand"}`, token: opsTok}, http.StatusOK)
	res := decodeAs[Transaction](t, body)
	if res.State != "cancelled" || res.Reason != "resolved" || res.ResolvedBy != "ops" || res.ResolutionNote != "ok/3 refunded by hand" || res.CreatedBy != "alice" {
		t.Errorf("resolved: %s", body)
	}
	h.do(apiCall{method: "PUT", path: "/api/v1/transactions/" + heur.ID + "/resolve", ctype: js, body: `{"state":"cancelled"}`, token: opsTok}, http.StatusOK)

	// Atomikos: a link set is its creator's; another client gets 403.
	links := `{"participantLinks":[` + link("ok/4") + `,` + link("ok/5") + `]}`
	h.do(apiCall{method: "PUT", path: "/coordinator/confirm", ctype: tcc, body: links, token: aliceTok}, http.StatusNoContent)
	h.do(apiCall{method: "PUT", path: "/coordinator/confirm", ctype: tcc, body: links, token: aliceTok}, http.StatusNoContent)
	_, body = h.do(apiCall{method: "PUT", path: "/coordinator/confirm", ctype: tcc, body: links, token: bobTok}, http.StatusForbidden)
	if string(body) != "these participant links belong to another client's transaction\n" {
		t.Errorf("Atomikos 403: %q", body)
	}
	h.do(apiCall{method: "PUT", path: "/coordinator/cancel", ctype: tcc, body: links, token: bobTok}, http.StatusForbidden)
	h.do(apiCall{method: "PUT", path: "/coordinator/cancel", ctype: tcc, body: links, token: opsTok}, http.StatusConflict) // confirmed: never undone

	// Neither the tokens nor their hashes were logged.
	for _, secret := range []string{aliceTok, bobTok, opsTok, HashToken(aliceTok), HashToken(bobTok), HashToken(opsTok)} {
		if strings.Contains(e.log.String(), secret) {
			t.Errorf("the log shows a token or hash: %s", e.log.String())
		}
	}
}

// TestAuthNotReadyLogsNoToken: a 503 is logged; the request's token is not.
func TestAuthNotReadyLogsNoToken(t *testing.T) {
	e := newSecureEnv(t, ServerConfig{})
	idle := tccd.NewCoordinator(tccd.Config{}, nil, nil, nil, nil)
	toks, _ := ParseTokens(strings.NewReader("alice client " + HashToken(aliceTok) + "\n"))
	srv := NewServer(idle, ServerConfig{Tokens: toks}, slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/v1/transactions", nil)
	req.Header.Set("Authorization", "Bearer "+aliceTok)
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", rec.Code)
	}
	if !strings.Contains(e.log.String(), "request failed") {
		t.Fatalf("the 503 was not logged: %q", e.log.String())
	}
	if strings.Contains(e.log.String(), aliceTok) || strings.Contains(e.log.String(), HashToken(aliceTok)) {
		t.Fatalf("the log shows the token: %s", e.log.String())
	}
}

// TestRateLimit: with a burst of 3 and a rate so low that no token comes
// back during the test, the 4th request of a client is 429 with
// Retry-After, and other clients are not affected.
func TestRateLimit(t *testing.T) {
	const js, tcc = "application/json", "application/tcc+json"
	e := newSecureEnv(t, ServerConfig{RateLimit: 0.01, RateBurst: 3})
	h := e.h
	// Probes are not limited.
	for i := 0; i < 5; i++ {
		h.do(apiCall{method: "GET", path: "/healthz"}, http.StatusOK)
	}
	for i := 0; i < 3; i++ {
		h.do(apiCall{method: "POST", path: "/api/v1/transactions", token: aliceTok}, http.StatusCreated)
	}
	hdr, body := h.do(apiCall{method: "POST", path: "/api/v1/transactions", token: aliceTok}, http.StatusTooManyRequests)
	if p := decodeAs[Problem](t, body); p.Code != "too_many_requests" {
		t.Errorf("429 problem: %s", body)
	}
	if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 90 || ra > 100 {
		t.Errorf("Retry-After %q, want about 100 (one request per 100 s)", hdr.Get("Retry-After"))
	}
	_, body = h.do(apiCall{method: "PUT", path: "/coordinator/cancel", ctype: tcc, body: `{"participantLinks":[]}`, token: aliceTok}, http.StatusTooManyRequests)
	if !strings.Contains(string(body), "too many requests") {
		t.Errorf("Atomikos 429: %q", body)
	}
	// bob has his own bucket.
	h.do(apiCall{method: "POST", path: "/api/v1/transactions", token: bobTok}, http.StatusCreated)
	// Bad tokens are limited by address: 3 × 401, then 429.
	for i := 0; i < 3; i++ {
		h.do(apiCall{method: "GET", path: "/api/v1/transactions/x", token: "guess-" + strconv.Itoa(i)}, http.StatusUnauthorized)
	}
	h.do(apiCall{method: "GET", path: "/api/v1/transactions/x", token: "guess-4"}, http.StatusTooManyRequests)
	h.do(apiCall{method: "GET", path: "/api/v1/transactions/x", token: opsTok}, http.StatusNotFound)

	// Authentication off: by address.
	store, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	coord := tccd.NewCoordinator(tccd.Config{}, store, NewCaller(), nil, nil)
	if err := coord.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { coord.Close() })
	ts := httptest.NewServer(NewServer(coord, ServerConfig{RateLimit: 0.01, RateBurst: 2}, nil))
	t.Cleanup(ts.Close)
	h2 := newAPIHarness(t, ts.URL)
	h2.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: js, body: `{}`}, http.StatusCreated)
	h2.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: js, body: `{}`}, http.StatusCreated)
	h2.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: js, body: `{}`}, http.StatusTooManyRequests)
}

// TestLimiterSweep: buckets that have filled up again are forgotten once
// the map is large; the others are kept.
func TestLimiterSweep(t *testing.T) {
	l := newLimiter(1, 2) // 1 a second, burst 2
	now := time.Unix(1700000000, 0)
	// busy empties its bucket.
	l.allow("busy", now)
	l.allow("busy", now)
	if ok, wait := l.allow("busy", now); ok || wait != time.Second {
		t.Fatalf("third request at once: ok %v wait %v; want refused, 1s", ok, wait)
	}
	// Many clients make one request each: the map reaches minSweep.
	for i := 0; len(l.buckets) < minSweep; i++ {
		if ok, _ := l.allow("k"+strconv.Itoa(i), now); !ok {
			t.Fatal("first request refused")
		}
	}
	// 1.5 s later the one-request buckets are full again (2), busy's is
	// not (1.5): a new client's request sweeps the full ones away.
	later := now.Add(1500 * time.Millisecond)
	l.allow("new", later)
	if _, ok := l.buckets["busy"]; !ok || len(l.buckets) != 2 {
		t.Fatalf("%d buckets after the sweep (busy kept: %v), want busy and new", len(l.buckets), ok)
	}
	if ok, _ := l.allow("busy", later); !ok {
		t.Fatal("busy refused after refilling")
	}
	if ok, _ := l.allow("busy", later); ok {
		t.Fatal("busy's bucket was reset by the sweep")
	}
}

// TestProblemCodesForSecurity: the new codes map to their statuses.
func TestProblemCodesForSecurity(t *testing.T) {
	for code, status := range map[tccd.Code]int{tccd.EUnauthorized: 401, tccd.EForbidden: 403, tccd.ETooManyRequests: 429} {
		if got := StatusOf(code); got != status {
			t.Errorf("StatusOf(%s) = %d, want %d", code, got, status)
		}
		if got := atomikosStatus(code); got != status {
			t.Errorf("atomikosStatus(%s) = %d, want %d", code, got, status)
		}
	}
}
