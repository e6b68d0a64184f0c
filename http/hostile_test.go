package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/pebble"
)

// hostileMaxLinks is the coordinator's MaxLinks in these tests: small, so
// that "too many links" fits in a small body.
const hostileMaxLinks = 5

// hostileMaxBody is the server's MaxBody in these tests.
const hostileMaxBody = 4096

// hostileEnv is a real coordinator over a pebble store in a temp dir,
// served over real HTTP.
type hostileEnv struct {
	store *pebble.Store
	coord *tccd.Coordinator
	url   string
}

func newHostileEnv(t *testing.T) *hostileEnv {
	t.Helper()
	store, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	caller := tccdhttp.NewCaller()
	coord := tccd.NewCoordinator(tccd.Config{MaxLinks: hostileMaxLinks}, store, caller, nil, nil)
	if err := coord.Open(context.Background()); err != nil {
		store.Close()
		t.Fatalf("open coordinator: %v", err)
	}
	srv := httptest.NewServer(tccdhttp.NewServer(coord, tccdhttp.ServerConfig{MaxBody: hostileMaxBody}, nil))
	t.Cleanup(func() {
		srv.Close()
		coord.Close()
		caller.Close()
		if err := store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return &hostileEnv{store: store, coord: coord, url: srv.URL}
}

// send sends one request. An empty ctype sends no Content-Type header; an
// empty body sends no body. With chunked the body's length is hidden, so
// that it goes out with Transfer-Encoding: chunked.
func (e *hostileEnv) send(t *testing.T, method, path, ctype, body string, chunked bool) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != "" {
		rd = strings.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd)
		}
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	return resp, b
}

// fixture sends a request that must succeed with the given status and
// returns the transaction in the answer.
func (e *hostileEnv) fixture(t *testing.T, method, path, body string, status int) tccdhttp.Transaction {
	t.Helper()
	ctype := ""
	if body != "" {
		ctype = "application/json"
	}
	resp, b := e.send(t, method, path, ctype, body, false)
	if resp.StatusCode != status {
		t.Fatalf("fixture %s %s: status %d, want %d: %s", method, path, resp.StatusCode, status, b)
	}
	var tx tccdhttp.Transaction
	if err := json.Unmarshal(b, &tx); err != nil {
		t.Fatalf("fixture %s %s: decode answer: %v: %s", method, path, err, b)
	}
	return tx
}

// snapshot returns every stored transaction, straight from the store.
func (e *hostileEnv) snapshot(t *testing.T) []*tccd.Transaction {
	t.Helper()
	txs, next, err := e.store.List(context.Background(), tccd.Filter{Limit: 100000})
	if err != nil {
		t.Fatalf("list store: %v", err)
	}
	if next != "" {
		t.Fatalf("list store: more than one page")
	}
	return txs
}

// hostileCase is one hostile request and the answer it must get. Native
// API answers are problem documents (code, and field or state when set);
// Atomikos answers are plain text containing text.
type hostileCase struct {
	name    string
	method  string
	path    string
	ctype   string // "" sends no Content-Type
	body    string // "" sends no body
	chunked bool

	status int
	code   tccd.Code // problem code (native API and routing)
	field  string    // problem field, checked when set
	state  string    // problem state, checked when set
	text   string    // plain-text body substring (Atomikos endpoints)
	allow  []string  // methods the Allow header must list (405)

	// check verifies the store after the request; nil means the store
	// must be exactly as before.
	check func(t *testing.T, before, after []*tccd.Transaction)
}

const (
	ctJSON = "application/json"
	ctTCC  = "application/tcc+json"
)

// mustJSON encodes v; it keeps control characters in URIs intact on the
// wire (as \u escapes).
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

type wireLink struct {
	URI     any `json:"uri,omitempty"`
	Expires any `json:"expires,omitempty"`
}

func linkBody(uri, expires string) string { return mustJSON(wireLink{URI: uri, Expires: expires}) }

func beginBody(links ...wireLink) string {
	return mustJSON(map[string]any{"timeout": "1h", "participants": links})
}

func confirmBody(links ...wireLink) string {
	return mustJSON(map[string]any{"participants": links})
}

func atomikosBody(links ...wireLink) string {
	return mustJSON(map[string]any{"participantLinks": links})
}

func TestHostileRequests(t *testing.T) {
	e := newHostileEnv(t)

	// A participant for the one case that really calls one: it answers
	// every call with 404 (the reservation is gone).
	part := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	}))
	t.Cleanup(part.Close)

	future := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	const enlisted = "http://127.0.0.1:9/r/1" // nothing is called while active
	const fresh = "http://127.0.0.1:9/r/2"

	// Fixtures: an active transaction with one participant, a cancelled
	// one and a confirmed one (both without participants, so they settle
	// at once).
	active := e.fixture(t, "POST", "/api/v1/transactions", beginBody(wireLink{URI: enlisted, Expires: future}), http.StatusCreated)
	if active.State != "active" || len(active.Participants) != 1 {
		t.Fatalf("active fixture: %+v", active)
	}
	cancelled := e.fixture(t, "POST", "/api/v1/transactions", `{"timeout":"1h"}`, http.StatusCreated)
	if got := e.fixture(t, "PUT", "/api/v1/transactions/"+cancelled.ID+"/cancel", "", http.StatusOK); got.State != "cancelled" {
		t.Fatalf("cancelled fixture: state %s", got.State)
	}
	confirmed := e.fixture(t, "POST", "/api/v1/transactions", `{"timeout":"1h"}`, http.StatusCreated)
	if got := e.fixture(t, "PUT", "/api/v1/transactions/"+confirmed.ID+"/confirm", "", http.StatusOK); got.State != "confirmed" {
		t.Fatalf("confirmed fixture: state %s", got.State)
	}
	if n := len(e.snapshot(t)); n != 3 {
		t.Fatalf("fixtures: %d transactions stored, want 3", n)
	}

	const unknown = "01J00000000000000000000000"
	txs := "/api/v1/transactions"
	act := txs + "/" + active.ID
	can := txs + "/" + cancelled.ID
	con := txs + "/" + confirmed.ID
	unk := txs + "/" + unknown

	sixLinks := make([]wireLink, hostileMaxLinks+1)
	for i := range sixLinks {
		sixLinks[i] = wireLink{URI: fmt.Sprintf("http://127.0.0.1:9/many/%d", i), Expires: future}
	}
	fiveNew := sixLinks[:hostileMaxLinks] // with the enlisted one: one too many
	longURI := "http://127.0.0.1:9/" + strings.Repeat("a", tccd.MaxURILength)
	bigBody := `{"name":"` + strings.Repeat("x", hostileMaxBody+100) + `"}`
	bigAtomikos := atomikosBody(wireLink{URI: "http://127.0.0.1:9/" + strings.Repeat("b", hostileMaxBody), Expires: future})

	badURIs := []struct{ name, uri string }{
		{"ftp scheme", "ftp://127.0.0.1/r/1"},
		{"file scheme", "file:///etc/passwd"},
		{"javascript scheme", "javascript:alert(1)"},
		{"mailto scheme", "mailto:root@127.0.0.1"},
		{"relative path", "/r/1"},
		{"scheme-relative", "//127.0.0.1:9/r/1"},
		{"no host", "http:///r/1"},
		{"port without host", "http://:80/r/1"},
		{"userinfo", "http://user:secret@127.0.0.1:9/r/1"},
		{"user without password", "http://user@127.0.0.1:9/r/1"},
		{"fragment", "http://127.0.0.1:9/r/1#top"},
		{"empty fragment", "http://127.0.0.1:9/r/1#"},
		{"space", "http://127.0.0.1:9/r 1"},
		{"tab", "http://127.0.0.1:9/r\t1"},
		{"newline", "http://127.0.0.1:9/r/1\r\nX-Evil: 1"},
		{"NUL", "http://127.0.0.1:9/r/\x001"},
		{"DEL", "http://127.0.0.1:9/r/\x7f"},
		{"escape char", "http://127.0.0.1:9/r/\x1b[31m"},
		{"port 0", "http://127.0.0.1:0/r/1"},
		{"port 99999", "http://127.0.0.1:99999/r/1"},
		{"negative port", "http://127.0.0.1:-1/r/1"},
		{"unclosed IPv6", "http://[::1/r/1"},
		{"over-long", longURI},
	}

	cases := []hostileCase{
		// Malformed and mistyped JSON (native).
		{name: "begin malformed JSON", method: "POST", path: txs, ctype: ctJSON, body: `{"timeout":`, status: 400, code: tccd.EInvalid},
		{name: "begin unquoted key", method: "POST", path: txs, ctype: ctJSON, body: `{timeout:"1s"}`, status: 400, code: tccd.EInvalid},
		{name: "begin trailing garbage", method: "POST", path: txs, ctype: ctJSON, body: `{"timeout":"1h"} x`, status: 400, code: tccd.EInvalid},
		{name: "begin two objects", method: "POST", path: txs, ctype: ctJSON, body: `{}{}`, status: 400, code: tccd.EInvalid},
		{name: "begin trailing bracket", method: "POST", path: txs, ctype: ctJSON, body: `{}]`, status: 400, code: tccd.EInvalid},
		{name: "begin JSON array", method: "POST", path: txs, ctype: ctJSON, body: `[]`, status: 400, code: tccd.EInvalid},
		{name: "begin JSON number", method: "POST", path: txs, ctype: ctJSON, body: `42`, status: 400, code: tccd.EInvalid},
		{name: "begin JSON string", method: "POST", path: txs, ctype: ctJSON, body: `"begin"`, status: 400, code: tccd.EInvalid},
		{name: "begin JSON true", method: "POST", path: txs, ctype: ctJSON, body: `true`, status: 400, code: tccd.EInvalid},
		{name: "begin byte order mark", method: "POST", path: txs, ctype: ctJSON, body: "\xef\xbb\xbf{}", status: 400, code: tccd.EInvalid},
		{name: "begin invalid UTF-8 outside strings", method: "POST", path: txs, ctype: ctJSON, body: "{\xff}", status: 400, code: tccd.EInvalid},
		{name: "begin timeout as number", method: "POST", path: txs, ctype: ctJSON, body: `{"timeout":30}`, status: 400, code: tccd.EInvalid, field: "timeout"},
		{name: "begin labels as array", method: "POST", path: txs, ctype: ctJSON, body: `{"labels":["a","b"]}`, status: 400, code: tccd.EInvalid, field: "labels"},
		{name: "begin label value as number", method: "POST", path: txs, ctype: ctJSON, body: `{"labels":{"a":1}}`, status: 400, code: tccd.EInvalid},
		{name: "begin participants as object", method: "POST", path: txs, ctype: ctJSON, body: `{"participants":{}}`, status: 400, code: tccd.EInvalid, field: "participants"},
		{name: "begin uri as number", method: "POST", path: txs, ctype: ctJSON, body: `{"participants":[{"uri":42,"expires":"` + future + `"}]}`, status: 400, code: tccd.EInvalid, field: "participants.uri"},
		{name: "begin expires as bool", method: "POST", path: txs, ctype: ctJSON, body: `{"participants":[{"uri":"` + fresh + `","expires":true}]}`, status: 400, code: tccd.EInvalid, field: "participants.expires"},
		{name: "begin unknown field", method: "POST", path: txs, ctype: ctJSON, body: `{"timeot":"1h"}`, status: 400, code: tccd.EInvalid, field: "timeot"},
		{name: "begin unknown field in link", method: "POST", path: txs, ctype: ctJSON, body: `{"participants":[{"uri":"` + fresh + `","expires":"` + future + `","foo":1}]}`, status: 400, code: tccd.EInvalid, field: "foo"},
		{name: "begin timeout not a duration", method: "POST", path: txs, ctype: ctJSON, body: `{"timeout":"soon"}`, status: 400, code: tccd.EInvalid, field: "timeout"},
		{name: "begin timeout zero", method: "POST", path: txs, ctype: ctJSON, body: `{"timeout":"0s"}`, status: 400, code: tccd.EInvalid, field: "timeout"},
		{name: "begin timeout negative", method: "POST", path: txs, ctype: ctJSON, body: `{"timeout":"-5s"}`, status: 400, code: tccd.EInvalid, field: "timeout"},
		{name: "begin timeout overflows", method: "POST", path: txs, ctype: ctJSON, body: `{"timeout":"9999999999h"}`, status: 400, code: tccd.EInvalid, field: "timeout"},
		{name: "begin timeout over max", method: "POST", path: txs, ctype: ctJSON, body: `{"timeout":"25h"}`, status: 400, code: tccd.EInvalid, field: "timeout"},
		{name: "begin name too long", method: "POST", path: txs, ctype: ctJSON, body: `{"name":"` + strings.Repeat("n", 257) + `"}`, status: 400, code: tccd.EInvalid, field: "name"},
		{name: "begin empty label key", method: "POST", path: txs, ctype: ctJSON, body: `{"labels":{"":"v"}}`, status: 400, code: tccd.EInvalid, field: "labels"},
		{name: "begin too many labels", method: "POST", path: txs, ctype: ctJSON, body: mustJSON(map[string]any{"labels": manyLabels(33)}), status: 400, code: tccd.EInvalid, field: "labels"},

		// Bad links in begin.
		{name: "begin link without uri", method: "POST", path: txs, ctype: ctJSON, body: beginBody(wireLink{Expires: future}), status: 400, code: tccd.EInvalid, field: "participants[0].uri"},
		{name: "begin link without expires", method: "POST", path: txs, ctype: ctJSON, body: beginBody(wireLink{URI: fresh}), status: 400, code: tccd.EInvalid, field: "participants[0].expires"},
		{name: "begin second link bad", method: "POST", path: txs, ctype: ctJSON, body: beginBody(wireLink{URI: fresh, Expires: future}, wireLink{URI: "ftp://x/y", Expires: future}), status: 400, code: tccd.EInvalid, field: "participants[1].uri"},
		{name: "begin link expired", method: "POST", path: txs, ctype: ctJSON, body: beginBody(wireLink{URI: fresh, Expires: past}), status: 400, code: tccd.EInvalid, field: "expires"},
		{name: "begin duplicate links", method: "POST", path: txs, ctype: ctJSON, body: beginBody(wireLink{URI: fresh, Expires: future}, wireLink{URI: fresh, Expires: future}), status: 400, code: tccd.EInvalid, field: "uri"},
		{name: "begin too many links", method: "POST", path: txs, ctype: ctJSON, body: beginBody(sixLinks...), status: 400, code: tccd.EInvalid},

		// Bad links in enlist.
		{name: "enlist malformed JSON", method: "POST", path: act + "/participants", ctype: ctJSON, body: `{"uri":"` + fresh, status: 400, code: tccd.EInvalid},
		{name: "enlist empty body", method: "POST", path: act + "/participants", ctype: ctJSON, status: 400, code: tccd.EInvalid},
		{name: "enlist null", method: "POST", path: act + "/participants", ctype: ctJSON, body: `null`, status: 400, code: tccd.EInvalid},
		{name: "enlist JSON array", method: "POST", path: act + "/participants", ctype: ctJSON, body: `[` + linkBody(fresh, future) + `]`, status: 400, code: tccd.EInvalid},
		{name: "enlist trailing garbage", method: "POST", path: act + "/participants", ctype: ctJSON, body: linkBody(fresh, future) + `,`, status: 400, code: tccd.EInvalid},
		{name: "enlist uri as number", method: "POST", path: act + "/participants", ctype: ctJSON, body: `{"uri":1,"expires":"` + future + `"}`, status: 400, code: tccd.EInvalid, field: "uri"},
		{name: "enlist uri as object", method: "POST", path: act + "/participants", ctype: ctJSON, body: `{"uri":{"href":"` + fresh + `"},"expires":"` + future + `"}`, status: 400, code: tccd.EInvalid, field: "uri"},
		{name: "enlist expires as bool", method: "POST", path: act + "/participants", ctype: ctJSON, body: `{"uri":"` + fresh + `","expires":false}`, status: 400, code: tccd.EInvalid, field: "expires"},
		{name: "enlist expires as number", method: "POST", path: act + "/participants", ctype: ctJSON, body: `{"uri":"` + fresh + `","expires":1700000000}`, status: 400, code: tccd.EInvalid, field: "expires"},
		{name: "enlist unknown field", method: "POST", path: act + "/participants", ctype: ctJSON, body: `{"uri":"` + fresh + `","expires":"` + future + `","href":"x"}`, status: 400, code: tccd.EInvalid, field: "href"},
		{name: "enlist missing uri", method: "POST", path: act + "/participants", ctype: ctJSON, body: `{"expires":"` + future + `"}`, status: 400, code: tccd.EInvalid, field: "uri"},
		{name: "enlist empty uri", method: "POST", path: act + "/participants", ctype: ctJSON, body: linkBody("", future), status: 400, code: tccd.EInvalid, field: "uri"},
		{name: "enlist null uri", method: "POST", path: act + "/participants", ctype: ctJSON, body: `{"uri":null,"expires":"` + future + `"}`, status: 400, code: tccd.EInvalid, field: "uri"},
		{name: "enlist missing expires", method: "POST", path: act + "/participants", ctype: ctJSON, body: `{"uri":"` + fresh + `"}`, status: 400, code: tccd.EInvalid, field: "expires"},
		{name: "enlist unparsable expires", method: "POST", path: act + "/participants", ctype: ctJSON, body: linkBody(fresh, "tomorrow"), status: 400, code: tccd.EInvalid, field: "expires"},
		{name: "enlist impossible date", method: "POST", path: act + "/participants", ctype: ctJSON, body: linkBody(fresh, "2099-02-30T10:00:00Z"), status: 400, code: tccd.EInvalid, field: "expires"},
		{name: "enlist expires without offset", method: "POST", path: act + "/participants", ctype: ctJSON, body: linkBody(fresh, "2099-01-01T10:00:00"), status: 400, code: tccd.EInvalid, field: "expires"},
		{name: "enlist expires date only", method: "POST", path: act + "/participants", ctype: ctJSON, body: linkBody(fresh, "2099-01-01"), status: 400, code: tccd.EInvalid, field: "expires"},
		{name: "enlist expires unix seconds string", method: "POST", path: act + "/participants", ctype: ctJSON, body: linkBody(fresh, "4102444800"), status: 400, code: tccd.EInvalid, field: "expires"},
		{name: "enlist expires year zero instant", method: "POST", path: act + "/participants", ctype: ctJSON, body: linkBody(fresh, "0001-01-01T00:00:00Z"), status: 400, code: tccd.EInvalid, field: "expires"},
		{name: "enlist expires after 2262", method: "POST", path: act + "/participants", ctype: ctJSON, body: linkBody(fresh, "2300-01-01T00:00:00Z"), status: 400, code: tccd.EInvalid, field: "expires"},
		{name: "enlist expires year 9999 west", method: "POST", path: act + "/participants", ctype: ctJSON, body: linkBody(fresh, "9999-12-31T23:59:59-23:59"), status: 400, code: tccd.EInvalid, field: "expires"},
		{name: "enlist expires at the Unix epoch", method: "POST", path: act + "/participants", ctype: ctJSON, body: linkBody(fresh, "1970-01-01T01:00:00+01:00"), status: 400, code: tccd.EInvalid, field: "expires"},
		{name: "begin expires after 2262", method: "POST", path: txs, ctype: ctJSON, body: beginBody(wireLink{URI: fresh, Expires: "2262-04-12T00:00:00Z"}), status: 400, code: tccd.EInvalid, field: "participants[0].expires"},
		{name: "enlist expired link", method: "POST", path: act + "/participants", ctype: ctJSON, body: linkBody(fresh, past), status: 400, code: tccd.EInvalid, field: "expires"},

		// Bad links in confirm: the active transaction must stay active.
		{name: "confirm malformed JSON", method: "PUT", path: act + "/confirm", ctype: ctJSON, body: `{"participants":[`, status: 400, code: tccd.EInvalid},
		{name: "confirm unknown field", method: "PUT", path: act + "/confirm", ctype: ctJSON, body: `{"participantLinks":[]}`, status: 400, code: tccd.EInvalid, field: "participantLinks"},
		{name: "confirm JSON string", method: "PUT", path: act + "/confirm", ctype: ctJSON, body: `"confirm"`, status: 400, code: tccd.EInvalid},
		{name: "confirm bad link", method: "PUT", path: act + "/confirm", ctype: ctJSON, body: confirmBody(wireLink{URI: "javascript:alert(1)", Expires: future}), status: 400, code: tccd.EInvalid},
		{name: "confirm duplicate links", method: "PUT", path: act + "/confirm", ctype: ctJSON, body: mustJSON(map[string]any{"participants": []wireLink{{URI: fresh, Expires: future}, {URI: fresh, Expires: future}}}), status: 400, code: tccd.EInvalid, field: "uri"},
		{name: "confirm duplicate of the enlisted link", method: "PUT", path: act + "/confirm", ctype: ctJSON, body: mustJSON(map[string]any{"participants": []wireLink{{URI: enlisted, Expires: future}, {URI: enlisted, Expires: future}}}), status: 400, code: tccd.EInvalid, field: "uri"},
		{name: "confirm too many links", method: "PUT", path: act + "/confirm", ctype: ctJSON, body: mustJSON(map[string]any{"participants": fiveNew}), status: 400, code: tccd.EInvalid},

		// Bad bodies on cancel: the active transaction must stay active.
		{name: "cancel malformed JSON", method: "PUT", path: act + "/cancel", ctype: ctJSON, body: `{`, status: 400, code: tccd.EInvalid},
		{name: "cancel unknown field", method: "PUT", path: act + "/cancel", ctype: ctJSON, body: `{"reason":"changed my mind"}`, status: 400, code: tccd.EInvalid, field: "reason"},
		{name: "cancel JSON array", method: "PUT", path: act + "/cancel", ctype: ctJSON, body: `[]`, status: 400, code: tccd.EInvalid},
		{name: "cancel trailing garbage", method: "PUT", path: act + "/cancel", ctype: ctJSON, body: `{} {}`, status: 400, code: tccd.EInvalid},

		// Oversized bodies.
		{name: "begin oversized body", method: "POST", path: txs, ctype: ctJSON, body: bigBody, status: 413, code: tccd.ETooLarge},
		{name: "begin oversized chunked body", method: "POST", path: txs, ctype: ctJSON, body: bigBody, chunked: true, status: 413, code: tccd.ETooLarge},
		{name: "enlist oversized body", method: "POST", path: act + "/participants", ctype: ctJSON, body: bigBody, status: 413, code: tccd.ETooLarge},
		{name: "confirm oversized body", method: "PUT", path: act + "/confirm", ctype: ctJSON, body: bigBody, status: 413, code: tccd.ETooLarge},
		{name: "cancel oversized body", method: "PUT", path: act + "/cancel", ctype: ctJSON, body: bigBody, status: 413, code: tccd.ETooLarge},

		// Wrong content types.
		{name: "begin text/plain", method: "POST", path: txs, ctype: "text/plain", body: `{}`, status: 415, code: tccd.EUnsupportedMedia},
		{name: "begin application/xml", method: "POST", path: txs, ctype: "application/xml", body: `<begin/>`, status: 415, code: tccd.EUnsupportedMedia},
		{name: "begin form", method: "POST", path: txs, ctype: "application/x-www-form-urlencoded", body: `timeout=1h`, status: 415, code: tccd.EUnsupportedMedia},
		{name: "begin no content type with body", method: "POST", path: txs, body: `{}`, status: 415, code: tccd.EUnsupportedMedia},
		{name: "begin malformed content type", method: "POST", path: txs, ctype: "application/json;;;", body: `{}`, status: 415, code: tccd.EUnsupportedMedia},
		{name: "begin json prefix type", method: "POST", path: txs, ctype: "application/jsonx", body: `{}`, status: 415, code: tccd.EUnsupportedMedia},
		{name: "begin tcc+json on native", method: "POST", path: txs, ctype: ctTCC, body: `{}`, status: 415, code: tccd.EUnsupportedMedia},
		{name: "enlist text/plain", method: "POST", path: act + "/participants", ctype: "text/plain", body: linkBody(fresh, future), status: 415, code: tccd.EUnsupportedMedia},
		{name: "enlist no content type with body", method: "POST", path: act + "/participants", body: linkBody(fresh, future), status: 415, code: tccd.EUnsupportedMedia},
		{name: "confirm application/xml", method: "PUT", path: act + "/confirm", ctype: "application/xml", body: `<confirm/>`, status: 415, code: tccd.EUnsupportedMedia},
		{name: "confirm no content type with body", method: "PUT", path: act + "/confirm", body: `{}`, status: 415, code: tccd.EUnsupportedMedia},
		{name: "cancel text/plain", method: "PUT", path: act + "/cancel", ctype: "text/plain", body: `cancel`, status: 415, code: tccd.EUnsupportedMedia},

		// Unknown transactions.
		{name: "get unknown id", method: "GET", path: unk, status: 404, code: tccd.ENotFound},
		{name: "get odd id", method: "GET", path: txs + "/%00%C3%A9", status: 404, code: tccd.ENotFound},
		{name: "enlist unknown id", method: "POST", path: unk + "/participants", ctype: ctJSON, body: linkBody(fresh, future), status: 404, code: tccd.ENotFound},
		{name: "confirm unknown id", method: "PUT", path: unk + "/confirm", status: 404, code: tccd.ENotFound},
		{name: "confirm unknown id with links", method: "PUT", path: unk + "/confirm", ctype: ctJSON, body: confirmBody(wireLink{URI: fresh, Expires: future}), status: 404, code: tccd.ENotFound},
		{name: "cancel unknown id", method: "PUT", path: unk + "/cancel", status: 404, code: tccd.ENotFound},

		// Illegal transitions.
		{name: "enlist into cancelled", method: "POST", path: can + "/participants", ctype: ctJSON, body: linkBody(fresh, future), status: 409, code: tccd.EConflict, state: "cancelled"},
		{name: "enlist into confirmed", method: "POST", path: con + "/participants", ctype: ctJSON, body: linkBody(fresh, future), status: 409, code: tccd.EConflict, state: "confirmed"},
		{name: "confirm cancelled", method: "PUT", path: can + "/confirm", status: 409, code: tccd.EConflict, state: "cancelled"},
		{name: "confirm cancelled with links", method: "PUT", path: can + "/confirm", ctype: ctJSON, body: confirmBody(wireLink{URI: fresh, Expires: future}), status: 409, code: tccd.EConflict, state: "cancelled"},
		{name: "confirm confirmed with new links", method: "PUT", path: con + "/confirm", ctype: ctJSON, body: confirmBody(wireLink{URI: fresh, Expires: future}), status: 409, code: tccd.EConflict, state: "confirmed"},
		{name: "cancel confirmed", method: "PUT", path: con + "/cancel", status: 409, code: tccd.EConflict, state: "confirmed"},

		// List queries.
		{name: "list unknown state", method: "GET", path: txs + "?state=bogus", status: 400, code: tccd.EInvalid, field: "state"},
		{name: "list state wrong case", method: "GET", path: txs + "?state=ACTIVE", status: 400, code: tccd.EInvalid, field: "state"},
		{name: "list limit 0", method: "GET", path: txs + "?limit=0", status: 400, code: tccd.EInvalid, field: "limit"},
		{name: "list limit negative", method: "GET", path: txs + "?limit=-1", status: 400, code: tccd.EInvalid, field: "limit"},
		{name: "list limit abc", method: "GET", path: txs + "?limit=abc", status: 400, code: tccd.EInvalid, field: "limit"},
		{name: "list limit 100000", method: "GET", path: txs + "?limit=100000", status: 400, code: tccd.EInvalid, field: "limit"},
		{name: "list limit huge", method: "GET", path: txs + "?limit=99999999999999999999", status: 400, code: tccd.EInvalid, field: "limit"},
		{name: "list limit float", method: "GET", path: txs + "?limit=1.5", status: 400, code: tccd.EInvalid, field: "limit"},
		{name: "list cursor garbage", method: "GET", path: txs + "?cursor=garbage", status: 400, code: tccd.EInvalid, field: "cursor"},
		{name: "list cursor not base64", method: "GET", path: txs + "?cursor=%25%25%25%25", status: 400, code: tccd.EInvalid, field: "cursor"},

		// Routing.
		{name: "unknown route", method: "GET", path: "/api/v1/nope", status: 404, code: tccd.ENotFound},
		{name: "unknown route under root", method: "GET", path: "/", status: 404, code: tccd.ENotFound},
		{name: "unknown sub-resource", method: "GET", path: act + "/secrets", status: 404, code: tccd.ENotFound},
		{name: "unknown API version", method: "POST", path: "/api/v2/transactions", ctype: ctJSON, body: `{}`, status: 404, code: tccd.ENotFound},
		{name: "delete transaction", method: "DELETE", path: act, status: 405, code: tccd.EMethodNotAllowed, allow: []string{"GET"}},
		{name: "patch collection", method: "PATCH", path: txs, ctype: ctJSON, body: `{}`, status: 405, code: tccd.EMethodNotAllowed, allow: []string{"GET", "POST"}},
		{name: "POST confirm", method: "POST", path: act + "/confirm", status: 405, code: tccd.EMethodNotAllowed, allow: []string{"PUT"}},
		{name: "GET cancel", method: "GET", path: act + "/cancel", status: 405, code: tccd.EMethodNotAllowed, allow: []string{"PUT"}},
		{name: "GET Atomikos confirm", method: "GET", path: "/coordinator/confirm", status: 405, code: tccd.EMethodNotAllowed, allow: []string{"PUT"}},
		{name: "DELETE Atomikos cancel", method: "DELETE", path: "/coordinator/cancel", status: 405, code: tccd.EMethodNotAllowed, allow: []string{"PUT"}},

		// Atomikos endpoints: plain-text answers.
		{name: "atomikos confirm missing body", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, status: 400, text: "transaction must not be null"},
		{name: "atomikos confirm no body no type", method: "PUT", path: "/coordinator/confirm", status: 400, text: "transaction must not be null"},
		{name: "atomikos confirm null", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: `null`, status: 400, text: "transaction must not be null"},
		{name: "atomikos confirm blank body", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: " \n\t", status: 400, text: "transaction must not be null"},
		{name: "atomikos cancel missing body", method: "PUT", path: "/coordinator/cancel", ctype: ctTCC, status: 400, text: "transaction must not be null"},
		{name: "atomikos confirm missing uri", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: atomikosBody(wireLink{Expires: future}), status: 400, text: "each participantLink must have a value for 'uri'"},
		{name: "atomikos confirm empty uri", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: `{"participantLinks":[{"uri":"","expires":"` + future + `"}]}`, status: 400, text: "each participantLink must have a value for 'uri'"},
		{name: "atomikos confirm missing expires", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: atomikosBody(wireLink{URI: fresh}), status: 400, text: "each participantLink must have an 'expires'"},
		{name: "atomikos confirm bad date", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: atomikosBody(wireLink{URI: fresh, Expires: "2014-13-45T25:00:00Z"}), status: 400, text: "invalid date format for participantLink 'expires': 2014-13-45T25:00:00Z"},
		{name: "atomikos confirm date without offset", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: atomikosBody(wireLink{URI: fresh, Expires: "2099-01-01T10:00:00"}), status: 400, text: "invalid date format for participantLink 'expires'"},
		{name: "atomikos confirm date after 2262", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: atomikosBody(wireLink{URI: fresh, Expires: "2300-01-01T00:00:00Z"}), status: 400, text: "invalid date format for participantLink 'expires': 2300-01-01T00:00:00Z"},
		{name: "atomikos confirm date before 1970", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: atomikosBody(wireLink{URI: fresh, Expires: "1600-01-01T00:00:00Z"}), status: 400, text: "invalid date format for participantLink 'expires': 1600-01-01T00:00:00Z"},
		{name: "atomikos confirm zero date", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: atomikosBody(wireLink{URI: fresh, Expires: "0001-01-01T00:00:00Z"}), status: 400, text: "invalid date format for participantLink 'expires'"},
		{name: "atomikos cancel bad date", method: "PUT", path: "/coordinator/cancel", ctype: ctTCC, body: atomikosBody(wireLink{URI: fresh, Expires: "yesterday"}), status: 400, text: "invalid date format for participantLink 'expires': yesterday"},
		{name: "atomikos cancel missing uri", method: "PUT", path: "/coordinator/cancel", ctype: ctTCC, body: atomikosBody(wireLink{Expires: future}), status: 400, text: "each participantLink must have a value for 'uri'"},
		{name: "atomikos confirm malformed JSON", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: `{"participantLinks":[`, status: 400, text: "malformed JSON"},
		{name: "atomikos confirm trailing garbage", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: atomikosBody(wireLink{URI: fresh, Expires: future}) + `garbage`, status: 400, text: "malformed JSON"},
		{name: "atomikos confirm JSON array", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: `[]`, status: 400, text: "must be a JSON object"},
		{name: "atomikos confirm links as object", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: `{"participantLinks":{}}`, status: 400, text: "participantLinks"},
		{name: "atomikos confirm uri as number", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: `{"participantLinks":[{"uri":7,"expires":"` + future + `"}]}`, status: 400, text: "uri"},
		{name: "atomikos confirm ftp uri", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: atomikosBody(wireLink{URI: "ftp://127.0.0.1/r/1", Expires: future}), status: 400, text: "uri scheme must be http or https"},
		{name: "atomikos confirm userinfo uri", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: atomikosBody(wireLink{URI: "http://u:p@127.0.0.1:9/r/1", Expires: future}), status: 400, text: "user credentials"},
		{name: "atomikos confirm duplicate links", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: atomikosBody(wireLink{URI: fresh, Expires: future}, wireLink{URI: fresh, Expires: future}), status: 400, text: "duplicate participant link"},
		{name: "atomikos cancel duplicate links", method: "PUT", path: "/coordinator/cancel", ctype: ctTCC, body: atomikosBody(wireLink{URI: fresh, Expires: future}, wireLink{URI: fresh, Expires: future}), status: 400, text: "duplicate participant link"},
		{name: "atomikos confirm too many links", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: atomikosBody(sixLinks...), status: 400, text: "too many participant links"},
		{name: "atomikos confirm text/plain", method: "PUT", path: "/coordinator/confirm", ctype: "text/plain", body: atomikosBody(wireLink{URI: fresh, Expires: future}), status: 415, text: "content type text/plain is not supported"},
		{name: "atomikos confirm application/xml", method: "PUT", path: "/coordinator/confirm", ctype: "application/xml", body: `<tx/>`, status: 415, text: "is not supported"},
		{name: "atomikos confirm no content type with body", method: "PUT", path: "/coordinator/confirm", body: atomikosBody(wireLink{URI: fresh, Expires: future}), status: 415, text: "content type none is not supported"},
		{name: "atomikos confirm oversized body", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: bigAtomikos, status: 413, text: fmt.Sprintf("request body is larger than %d bytes", hostileMaxBody)},
		{name: "atomikos cancel oversized body", method: "PUT", path: "/coordinator/cancel", ctype: ctTCC, body: bigAtomikos, status: 413, text: fmt.Sprintf("request body is larger than %d bytes", hostileMaxBody)},
		{
			name: "atomikos confirm expired link", method: "PUT", path: "/coordinator/confirm", ctype: ctTCC,
			body:   atomikosBody(wireLink{URI: part.URL + "/r/expired", Expires: past}),
			status: 404, text: "transaction has timed out and was cancelled",
			check: func(t *testing.T, before, after []*tccd.Transaction) {
				added := newTxs(before, after)
				if len(after) != len(before)+1 || len(added) != 1 {
					t.Fatalf("want exactly one new transaction; before %d, after %d, new %d", len(before), len(after), len(added))
				}
				tx := added[0]
				if tx.Protocol != tccd.ProtocolAtomikos || tx.State != tccd.StateCancelled || tx.Reason != tccd.ReasonExpiryMargin {
					t.Errorf("new transaction: protocol %s, state %s, reason %s; want atomikos, cancelled, expiry_margin", tx.Protocol, tx.State, tx.Reason)
				}
				if len(tx.Participants) != 1 || tx.Participants[0].URI != part.URL+"/r/expired" || !tx.Participants[0].State.Settled() || tx.Participants[0].State == tccd.ParticipantConfirmed {
					t.Errorf("new transaction participants: %+v", tx.Participants)
				}
				assertUnchanged(t, before, withoutIDs(after, tx.ID))
			},
		},
	}

	// Every bad URI, through each decoder that takes one.
	for _, b := range badURIs {
		cases = append(cases,
			hostileCase{name: "begin uri " + b.name, method: "POST", path: txs, ctype: ctJSON, body: beginBody(wireLink{URI: b.uri, Expires: future}), status: 400, code: tccd.EInvalid, field: "participants[0].uri"},
			hostileCase{name: "enlist uri " + b.name, method: "POST", path: act + "/participants", ctype: ctJSON, body: linkBody(b.uri, future), status: 400, code: tccd.EInvalid, field: "uri"},
			hostileCase{name: "atomikos confirm uri " + b.name, method: "PUT", path: "/coordinator/confirm", ctype: ctTCC, body: atomikosBody(wireLink{URI: b.uri, Expires: future}), status: 400, text: "uri"},
		)
	}

	t.Logf("%d catalogue entries", len(cases))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snapshot(t)
			resp, body := e.send(t, tc.method, tc.path, tc.ctype, tc.body, tc.chunked)
			after := e.snapshot(t)

			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d; body: %s", resp.StatusCode, tc.status, body)
			}
			if tc.text != "" {
				checkPlainText(t, resp, body, tc.text)
			} else {
				checkProblem(t, resp, body, tc)
			}
			for _, m := range tc.allow {
				if !strings.Contains(resp.Header.Get("Allow"), m) {
					t.Errorf("Allow %q does not list %s", resp.Header.Get("Allow"), m)
				}
			}
			if tc.check != nil {
				tc.check(t, before, after)
			} else {
				assertUnchanged(t, before, after)
			}
		})
	}
}

func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	return m
}

func checkPlainText(t *testing.T, resp *http.Response, body []byte, want string) {
	t.Helper()
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "text/plain" {
		t.Errorf("Content-Type %q, want text/plain", resp.Header.Get("Content-Type"))
	}
	if v := resp.Header.Get("X-Content-Type-Options"); v != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff", v)
	}
	if !strings.Contains(string(body), want) {
		t.Errorf("body %q does not contain %q", body, want)
	}
}

func checkProblem(t *testing.T, resp *http.Response, body []byte, tc hostileCase) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	if v := resp.Header.Get("X-Content-Type-Options"); v != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff", v)
	}
	var p tccdhttp.Problem
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Errorf("answer is not a problem document: %v: %s", err, body)
		return
	}
	if p.Code != string(tc.code) {
		t.Errorf("code %q, want %q (detail %q)", p.Code, tc.code, p.Detail)
	}
	if want := tccdhttp.ProblemTypePrefix + string(tc.code); p.Type != want {
		t.Errorf("type %q, want %q", p.Type, want)
	}
	if p.Status != resp.StatusCode {
		t.Errorf("problem status %d, HTTP status %d", p.Status, resp.StatusCode)
	}
	if p.Title != http.StatusText(resp.StatusCode) {
		t.Errorf("title %q, want %q", p.Title, http.StatusText(resp.StatusCode))
	}
	if p.Detail == "" {
		t.Errorf("problem without detail")
	}
	if path, _, _ := strings.Cut(tc.path, "?"); p.Instance != path {
		t.Errorf("instance %q, want %q", p.Instance, path)
	}
	if tc.field != "" && p.Field != tc.field {
		t.Errorf("field %q, want %q (detail %q)", p.Field, tc.field, p.Detail)
	}
	if tc.state != "" {
		if p.State != tc.state || p.Transaction == nil || p.Transaction.State != tc.state {
			t.Errorf("problem state %q (transaction %v), want %q", p.State, p.Transaction, tc.state)
		}
	}
	if resp.StatusCode < 500 && p.ErrorID != "" {
		t.Errorf("client error carries an error_id %q", p.ErrorID)
	}
}

// assertUnchanged fails unless the two snapshots hold the same
// transactions: ids, states, versions, participants, everything.
func assertUnchanged(t *testing.T, before, after []*tccd.Transaction) {
	t.Helper()
	if reflect.DeepEqual(before, after) {
		return
	}
	if len(before) != len(after) {
		t.Errorf("store changed: %d transactions before, %d after", len(before), len(after))
	}
	for i := range min(len(before), len(after)) {
		if !reflect.DeepEqual(before[i], after[i]) {
			t.Errorf("store changed:\nbefore %+v\nafter  %+v", *before[i], *after[i])
		}
	}
	if !t.Failed() {
		t.Errorf("store changed")
	}
}

// newTxs returns the transactions of after whose id is not in before.
func newTxs(before, after []*tccd.Transaction) []*tccd.Transaction {
	seen := make(map[string]bool, len(before))
	for _, tx := range before {
		seen[tx.ID] = true
	}
	var out []*tccd.Transaction
	for _, tx := range after {
		if !seen[tx.ID] {
			out = append(out, tx)
		}
	}
	return out
}

func withoutIDs(txs []*tccd.Transaction, id string) []*tccd.Transaction {
	var out []*tccd.Transaction
	for _, tx := range txs {
		if tx.ID != id {
			out = append(out, tx)
		}
	}
	return out
}

// TestHostileSlowClient: a client that sends half a request header and
// stalls is disconnected once ReadHeaderTimeout passes.
func TestHostileSlowClient(t *testing.T) {
	store, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	coord := tccd.NewCoordinator(tccd.Config{MaxLinks: hostileMaxLinks}, store, tccdhttp.NewCaller(), nil, nil)
	if err := coord.Open(context.Background()); err != nil {
		t.Fatalf("open coordinator: %v", err)
	}
	t.Cleanup(func() { coord.Close() })

	const readHeaderTimeout = 300 * time.Millisecond
	srv := tccdhttp.NewServer(coord, tccdhttp.ServerConfig{ReadHeaderTimeout: readHeaderTimeout}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})

	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "); err != nil {
		t.Fatalf("write: %v", err)
	}
	// The test cannot hang: the read gives up after a deadline far
	// beyond the server's timeout.
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	got, err := io.ReadAll(conn)
	elapsed := time.Since(start)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v (read-header-timeout %v); read %q", elapsed, readHeaderTimeout, got)
	}
	// The server closes the connection (EOF, or a reset) without
	// answering the half request.
	if len(got) > 0 && !bytes.HasPrefix(got, []byte("HTTP/1.1 408")) {
		t.Errorf("server answered a half request: %q", got)
	}
	if elapsed < readHeaderTimeout-50*time.Millisecond {
		t.Errorf("connection closed after %v, before read-header-timeout %v", elapsed, readHeaderTimeout)
	}

	// The server still serves well-behaved clients.
	resp, err := http.Get("http://" + srv.Addr() + "/healthz")
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: status %d", resp.StatusCode)
	}
}
