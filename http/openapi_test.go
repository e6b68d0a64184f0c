package http

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/pebble"
)

// loadOpenAPI parses and validates the embedded document.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("cannot load openapi.json: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	return doc
}

func TestOpenAPIValid(t *testing.T) {
	doc := loadOpenAPI(t)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}

	// The enums say what the code says.
	enum := func(schema, prop string, want []string) {
		t.Helper()
		ref := doc.Components.Schemas[schema]
		if ref == nil {
			t.Errorf("schema %s is missing", schema)
			return
		}
		s := ref.Value
		if prop != "" {
			p := s.Properties[prop]
			if p == nil {
				t.Errorf("schema %s has no property %s", schema, prop)
				return
			}
			s = p.Value
		}
		var got []string
		for _, v := range s.Enum {
			got = append(got, v.(string))
		}
		sort.Strings(got)
		want = slices.Clone(want)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s.%s enum = %v, want %v", schema, prop, got, want)
		}
	}
	var states []string
	for _, s := range tccd.States {
		states = append(states, string(s))
	}
	enum("TransactionState", "", states)
	var pstates []string
	for _, s := range tccd.ParticipantStates {
		pstates = append(pstates, string(s))
	}
	enum("ParticipantState", "", pstates)
	enum("Protocol", "", []string{string(tccd.ProtocolNative), string(tccd.ProtocolAtomikos)})
	enum("Reason", "", []string{
		string(tccd.ReasonRequested), string(tccd.ReasonTimeout), string(tccd.ReasonExpiryMargin),
		string(tccd.ReasonParticipant), string(tccd.ReasonMixedOutcome), string(tccd.ReasonInDoubt),
		string(tccd.ReasonResolved),
	})
	codes := api.Codes()
	enum("Problem", "code", codes)

	// Error answers: problem documents on the native API, plain text on
	// the Atomikos endpoints; every API operation can answer 500 and 503.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if op.OperationID == "" {
				t.Errorf("%s has no operationId", name)
			}
			api := strings.HasPrefix(path, "/api/v1/transactions")
			atomikos := strings.HasPrefix(path, "/coordinator/")
			if !api && !atomikos {
				continue
			}
			for _, status := range []string{"500", "503"} {
				if op.Responses.Value(status) == nil {
					t.Errorf("%s does not list %s", name, status)
				}
			}
			for status, resp := range op.Responses.Map() {
				if status < "400" {
					continue
				}
				want := "application/problem+json"
				if atomikos {
					want = "text/plain"
				}
				var got []string
				for mt := range resp.Value.Content {
					got = append(got, mt)
				}
				if len(got) != 1 || got[0] != want {
					t.Errorf("%s %s: media types %v, want [%s]", name, status, got, want)
				}
			}
		}
	}
}

// TestOpenAPIRoutes checks that the document describes exactly the routes
// the server registers.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	var inDoc []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inDoc = append(inDoc, method+" "+path)
		}
	}
	var served []string
	for _, rt := range NewServer(nil, ServerConfig{}, nil).routeTable() {
		// {$} anchors a pattern at a trailing slash; the document has the
		// plain path.
		served = append(served, rt.method+" "+strings.TrimSuffix(rt.path, "{$}"))
	}
	sort.Strings(inDoc)
	sort.Strings(served)
	for _, r := range served {
		if !slices.Contains(inDoc, r) {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for _, r := range inDoc {
		if !slices.Contains(served, r) {
			t.Errorf("openapi.json describes %s, which the server does not serve", r)
		}
	}
}

// apiHarness sends requests to a real server and checks requests and
// answers against the document.
type apiHarness struct {
	t      *testing.T
	base   string
	client *http.Client
	router routers.Router
}

func newAPIHarness(t *testing.T, base string) *apiHarness {
	t.Helper()
	doc := loadOpenAPI(t)
	// Route requests to the test server rather than the documented one.
	doc.Servers = openapi3.Servers{{URL: base}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return &apiHarness{t: t, base: base, client: &http.Client{Timeout: 30 * time.Second}, router: router}
}

type apiCall struct {
	method, path string
	ctype, body  string
	// invalid marks a request that breaks the document on purpose: it is
	// not validated, only the answer is.
	invalid bool
	// token, when set, is sent as Authorization: Bearer; auth as the
	// whole Authorization header; prefer as Prefer.
	token, auth, prefer string
}

// do sends c, checks the status, validates the request (unless c.invalid)
// and the answer against the document, and returns the answer.
func (h *apiHarness) do(c apiCall, want int) (http.Header, []byte) {
	t := h.t
	t.Helper()
	newReq := func() *http.Request {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		req, err := http.NewRequest(c.method, h.base+c.path, body)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		if c.prefer != "" {
			req.Header.Set("Prefer", c.prefer)
		}
		return req
	}
	resp, err := h.client.Do(newReq())
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", c.method, c.path, err)
	}
	if resp.StatusCode != want {
		t.Errorf("%s %s: status %d, want %d; body: %s", c.method, c.path, resp.StatusCode, want, body)
	}

	ctx := context.Background()
	vreq := newReq()
	route, params, err := h.router.FindRoute(vreq)
	if err != nil {
		t.Errorf("%s %s: no operation in openapi.json: %v", c.method, c.path, err)
		return resp.Header, body
	}
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	if !c.invalid {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Errorf("%s %s: the request does not match openapi.json: %v", c.method, c.path, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s %s: the %d answer does not match openapi.json: %v\nbody: %s", c.method, c.path, resp.StatusCode, err, body)
	}
	return resp.Header, body
}

func decodeAs[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("cannot decode %T from %s: %v", v, body, err)
	}
	return v
}

// fakeParticipants answers confirm and cancel calls: /ok/* confirms and
// cancels, /refuse/* refuses to confirm (slowly, so that the others
// confirm first), /busy/* answers 503 to confirm.
func fakeParticipants(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	noContent := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }
	mux.HandleFunc("PUT /ok/{n}", noContent)
	mux.HandleFunc("DELETE /ok/{n}", noContent)
	mux.HandleFunc("PUT /refuse/{n}", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(250 * time.Millisecond)
		w.WriteHeader(http.StatusUnprocessableEntity)
	})
	mux.HandleFunc("DELETE /refuse/{n}", noContent)
	mux.HandleFunc("PUT /busy/{n}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	mux.HandleFunc("DELETE /busy/{n}", noContent)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

// TestOpenAPIResponses checks answers of a real server over a real
// coordinator against the document.
func TestOpenAPIResponses(t *testing.T) {
	store, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	part := fakeParticipants(t)
	caller := NewCaller()
	t.Cleanup(caller.Close)
	coord := tccd.NewCoordinator(tccd.Config{ConfirmWait: time.Second}, store, caller, nil, nil)
	if err := coord.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { coord.Close() })
	ts := httptest.NewServer(NewServer(coord, ServerConfig{MaxBody: 8 << 10}, nil))
	t.Cleanup(ts.Close)
	h := newAPIHarness(t, ts.URL)

	const js, tcc = "application/json", "application/tcc+json"
	future := time.Now().Add(time.Hour).Format(time.RFC3339)
	past := time.Now().Add(-time.Minute).Format(time.RFC3339)
	link := func(name, expires string) string {
		return `{"uri":"` + part.URL + "/" + name + `","expires":"` + expires + `"}`
	}
	begin := func(links ...string) Transaction {
		t.Helper()
		hdr, body := h.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: js,
			body: `{"participants":[` + strings.Join(links, ",") + `]}`}, http.StatusCreated)
		tx := decodeAs[Transaction](t, body)
		if got := hdr.Get("Location"); got != txLocation(tx.ID) {
			t.Errorf("begin: Location %q, want %q", got, txLocation(tx.ID))
		}
		return tx
	}
	problem := func(body []byte, code string) Problem {
		t.Helper()
		p := decodeAs[Problem](t, body)
		if p.Code != code || p.Type != ProblemTypePrefix+code {
			t.Errorf("problem code %q type %q, want %q: %s", p.Code, p.Type, code, body)
		}
		return p
	}

	// Probes and the document itself.
	h.do(apiCall{method: "GET", path: "/healthz"}, http.StatusOK)
	h.do(apiCall{method: "GET", path: "/readyz"}, http.StatusOK)
	if _, body := h.do(apiCall{method: "GET", path: "/api/v1/openapi.json"}, http.StatusOK); !bytes.Equal(body, OpenAPI()) {
		t.Error("GET /api/v1/openapi.json does not serve the embedded document")
	}

	// Begin, with and without a body.
	h.do(apiCall{method: "POST", path: "/api/v1/transactions"}, http.StatusCreated)
	_, body := h.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: js,
		body: `{"timeout":"30s","name":"trip","labels":{"customer":"42"},"participants":[` + link("ok/1", future) + `]}`}, http.StatusCreated)
	tx := decodeAs[Transaction](t, body)
	if tx.State != "active" || tx.Name != "trip" || len(tx.Participants) != 1 || tx.Timeout != "30s" {
		t.Errorf("begin: unexpected transaction %s", body)
	}
	txPath := "/api/v1/transactions/" + url.PathEscape(tx.ID)

	// Get and list.
	if _, body := h.do(apiCall{method: "GET", path: txPath}, http.StatusOK); decodeAs[Transaction](t, body).ID != tx.ID {
		t.Errorf("get: unexpected transaction %s", body)
	}
	_, body = h.do(apiCall{method: "GET", path: "/api/v1/transactions?limit=1"}, http.StatusOK)
	page := decodeAs[TransactionList](t, body)
	if len(page.Transactions) != 1 || page.NextCursor == "" {
		t.Errorf("list: want one transaction and a cursor: %s", body)
	}
	h.do(apiCall{method: "GET", path: "/api/v1/transactions?state=active&cursor=" + url.QueryEscape(page.NextCursor)}, http.StatusOK)

	// Enlist: added, then already there.
	h.do(apiCall{method: "POST", path: txPath + "/participants", ctype: js, body: link("ok/2", future)}, http.StatusCreated)
	h.do(apiCall{method: "POST", path: txPath + "/participants", ctype: js, body: link("ok/2", future)}, http.StatusOK)

	// Cancel (twice), then confirm and enlist are conflicts.
	if _, body := h.do(apiCall{method: "PUT", path: txPath + "/cancel"}, http.StatusOK); decodeAs[Transaction](t, body).State != "cancelled" {
		t.Errorf("cancel: not cancelled: %s", body)
	}
	h.do(apiCall{method: "PUT", path: txPath + "/cancel", ctype: js, body: `{}`}, http.StatusOK)
	_, body = h.do(apiCall{method: "PUT", path: txPath + "/confirm"}, http.StatusConflict)
	if p := problem(body, "conflict"); p.State != "cancelled" || p.Transaction == nil || p.Transaction.ID != tx.ID {
		t.Errorf("confirm after cancel: problem without the transaction: %s", body)
	}
	_, body = h.do(apiCall{method: "POST", path: txPath + "/participants", ctype: js, body: link("ok/3", future)}, http.StatusConflict)
	problem(body, "conflict")

	// Confirm: confirmed, then cancel is a conflict.
	tx = begin(link("ok/4", future), link("ok/5", future))
	txPath = "/api/v1/transactions/" + tx.ID
	if _, body := h.do(apiCall{method: "PUT", path: txPath + "/confirm"}, http.StatusOK); decodeAs[Transaction](t, body).State != "confirmed" {
		t.Errorf("confirm: not confirmed: %s", body)
	}
	_, body = h.do(apiCall{method: "PUT", path: txPath + "/cancel"}, http.StatusConflict)
	problem(body, "conflict")

	// Confirm with an expired link: timed out.
	tx = begin()
	_, body = h.do(apiCall{method: "PUT", path: "/api/v1/transactions/" + tx.ID + "/confirm", ctype: js,
		body: `{"participants":[` + link("ok/6", past) + `]}`}, http.StatusConflict)
	problem(body, "timed_out")

	// A participant refuses after another confirmed: heuristic.
	tx = begin(link("ok/7", future), link("refuse/1", future))
	_, body = h.do(apiCall{method: "PUT", path: "/api/v1/transactions/" + tx.ID + "/confirm"}, http.StatusConflict)
	if p := problem(body, "heuristic"); p.State != "heuristic" {
		t.Errorf("heuristic: state %q", p.State)
	}

	// A participant keeps answering 503: still confirming.
	tx = begin(link("busy/1", future))
	txPath = "/api/v1/transactions/" + tx.ID
	hdr, _ := h.do(apiCall{method: "PUT", path: txPath + "/confirm"}, http.StatusAccepted)
	if hdr.Get("Location") != txPath || hdr.Get("Retry-After") == "" {
		t.Errorf("202: Location %q, Retry-After %q", hdr.Get("Location"), hdr.Get("Retry-After"))
	}
	_, body = h.do(apiCall{method: "PUT", path: txPath + "/cancel"}, http.StatusConflict)
	problem(body, "conflict")
	// Asked not to wait: 202 at once, saying so.
	tx = begin(link("busy/3", future))
	txPath = "/api/v1/transactions/" + tx.ID
	hdr, _ = h.do(apiCall{method: "PUT", path: txPath + "/confirm", prefer: "respond-async"}, http.StatusAccepted)
	if hdr.Get("Preference-Applied") != "respond-async" {
		t.Errorf("async 202: Preference-Applied %q", hdr.Get("Preference-Applied"))
	}
	// A notify URL without a webhook secret.
	_, body = h.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: "application/json", body: `{"notify":"http://127.0.0.1:1/hook"}`}, http.StatusUnprocessableEntity)
	problem(body, "not_configured")

	// Native errors.
	_, body = h.do(apiCall{method: "GET", path: "/api/v1/transactions/nope"}, http.StatusNotFound)
	problem(body, "not_found")
	_, body = h.do(apiCall{method: "GET", path: "/api/v1/transactions?limit=0", invalid: true}, http.StatusBadRequest)
	if p := problem(body, "invalid"); p.Field != "limit" {
		t.Errorf("limit=0: field %q", p.Field)
	}
	h.do(apiCall{method: "GET", path: "/api/v1/transactions?cursor=%21", invalid: true}, http.StatusBadRequest)
	_, body = h.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: js, body: `{"timeout":"soon"}`}, http.StatusBadRequest)
	if p := problem(body, "invalid"); p.Field != "timeout" {
		t.Errorf("bad timeout: field %q", p.Field)
	}
	h.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: js, body: `{"bogus":1}`, invalid: true}, http.StatusBadRequest)
	h.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: "text/plain", body: "x", invalid: true}, http.StatusUnsupportedMediaType)
	h.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: js,
		body: `{"name":"` + strings.Repeat("x", 10<<10) + `"}`, invalid: true}, http.StatusRequestEntityTooLarge)

	// Atomikos.
	h.do(apiCall{method: "PUT", path: "/coordinator/confirm", ctype: tcc, body: `{"participantLinks":[]}`}, http.StatusNoContent)
	h.do(apiCall{method: "PUT", path: "/coordinator/cancel", ctype: js, body: `{"participantLinks":[]}`}, http.StatusNoContent)
	_, body = h.do(apiCall{method: "PUT", path: "/coordinator/confirm", invalid: true}, http.StatusBadRequest)
	if string(body) != "transaction must not be null\n" {
		t.Errorf("atomikos, no body: %q", body)
	}
	h.do(apiCall{method: "PUT", path: "/coordinator/confirm", ctype: "text/plain", body: "x", invalid: true}, http.StatusUnsupportedMediaType)
	h.do(apiCall{method: "PUT", path: "/coordinator/confirm", ctype: tcc,
		body: `{"participantLinks":[` + link("ok/8", future) + `,` + link("ok/9", future) + `]}`}, http.StatusNoContent)
	// A cancel never undoes a confirm, and says so.
	_, body = h.do(apiCall{method: "PUT", path: "/coordinator/cancel", ctype: tcc,
		body: `{"participantLinks":[` + link("ok/8", future) + `,` + link("ok/9", future) + `]}`}, http.StatusConflict)
	if string(body) != "these participant links were confirmed; a cancel never undoes a confirm\n" {
		t.Errorf("atomikos cancel of a confirmed set: %q", body)
	}
	h.do(apiCall{method: "PUT", path: "/coordinator/cancel", ctype: tcc,
		body: `{"participantLinks":[` + link("ok/8b", future) + `]}`}, http.StatusNoContent)
	// A body that does not say what to do is refused.
	for _, b := range []string{`{}`, `{"participantLink":[` + link("ok/8c", future) + `]}`, `{"links":[]}`, `{"participantLinks":null}`} {
		_, body = h.do(apiCall{method: "PUT", path: "/coordinator/confirm", ctype: tcc, body: b, invalid: true}, http.StatusBadRequest)
		if !strings.Contains(string(body), "participantLinks") {
			t.Errorf("atomikos confirm %s: %q", b, body)
		}
	}
	_, body = h.do(apiCall{method: "PUT", path: "/coordinator/confirm", ctype: tcc,
		body: `{"participantLinks":[` + link("ok/10", past) + `]}`}, http.StatusNotFound)
	if string(body) != "transaction has timed out and was cancelled\n" {
		t.Errorf("atomikos, expired: %q", body)
	}
	_, body = h.do(apiCall{method: "PUT", path: "/coordinator/confirm", ctype: tcc,
		body: `{"participantLinks":[` + link("ok/11", future) + `,` + link("refuse/2", future) + `]}`}, http.StatusConflict)
	if string(body) != "partial confirmation - check each participant for details\n" {
		t.Errorf("atomikos, heuristic: %q", body)
	}
	hdr, body = h.do(apiCall{method: "PUT", path: "/coordinator/confirm", ctype: tcc,
		body: `{"participantLinks":[` + link("busy/2", future) + `]}`}, http.StatusServiceUnavailable)
	if string(body) != "confirmation in progress - repeat the request for the outcome\n" || hdr.Get("Retry-After") == "" {
		t.Errorf("atomikos, in progress: %q, Retry-After %q", body, hdr.Get("Retry-After"))
	}

	// A coordinator that has not recovered yet: 503 everywhere but the probes.
	idle := tccd.NewCoordinator(tccd.Config{}, store, caller, nil, nil)
	ts2 := httptest.NewServer(NewServer(idle, ServerConfig{}, nil))
	t.Cleanup(ts2.Close)
	h2 := newAPIHarness(t, ts2.URL)
	h2.do(apiCall{method: "GET", path: "/healthz"}, http.StatusOK)
	h2.do(apiCall{method: "GET", path: "/readyz"}, http.StatusServiceUnavailable)
	_, body = h2.do(apiCall{method: "POST", path: "/api/v1/transactions"}, http.StatusServiceUnavailable)
	problem(body, "unavailable")
	h2.do(apiCall{method: "PUT", path: "/coordinator/cancel", ctype: tcc, body: `{}`}, http.StatusServiceUnavailable)
}
