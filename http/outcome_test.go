package http

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd"
)

// TestParticipantOutcome: POST /api/v1/transactions/{id}/participants/outcome
// with authentication on. Knowing the transaction id and a participant's
// link URI is what lets a client that did not create the transaction read
// that much of it: without the URI the answer is the 404 of a transaction
// that does not exist. The answer is the stored states, nothing more, and
// matches the OpenAPI document.
func TestParticipantOutcome(t *testing.T) {
	e := newSecureEnv(t, ServerConfig{})
	h := e.h
	const js = "application/json"
	future := time.Now().Add(time.Hour).Format(time.RFC3339)
	uri := func(name string) string { return e.part.URL + "/" + name }
	link := func(name, style string) string {
		s := `{"uri":"` + uri(name) + `","expires":"` + future + `"`
		if style != "" {
			s += `,"style":"` + style + `"`
		}
		return s + "}"
	}
	begin := func(links ...string) string {
		t.Helper()
		_, body := h.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: js, token: aliceTok,
			body: `{"participants":[` + strings.Join(links, ",") + `]}`}, http.StatusCreated)
		return decodeAs[Transaction](t, body).ID
	}
	ask := func(id, uri string) string { return `{"uri":"` + uri + `"}` }
	stored := func(id, u string) (tccd.State, tccd.ParticipantState) {
		t.Helper()
		tx, err := e.coord.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		canon, _ := tccd.CanonicalURI(u)
		i := tx.Participant(canon)
		if i < 0 {
			t.Fatalf("transaction %s has no participant %s", id, canon)
		}
		return tx.State, tx.Participants[i].State
	}

	// active: alice's, with a TCC and a compensate-style participant.
	active := begin(link("ok/a1", ""), link("ok/c1", "compensate"))
	// confirming: the compensate-style participant is recorded confirmed
	// by the decision, the TCC one keeps answering 503 (in doubt).
	confirming := begin(link("busy/b2", ""), link("ok/c2", "compensate"))
	h.do(apiCall{method: "PUT", path: "/api/v1/transactions/" + confirming + "/confirm", token: aliceTok, prefer: "respond-async"}, http.StatusAccepted)
	waitFor(t, "the busy participant in doubt", func() bool {
		_, ps := stored(confirming, uri("busy/b2"))
		return ps == tccd.ParticipantInDoubt
	})
	// cancelled: the compensate-style participant's DELETE undid it.
	cancelled := begin(link("ok/c3", "compensate"))
	h.do(apiCall{method: "PUT", path: "/api/v1/transactions/" + cancelled + "/cancel", token: aliceTok}, http.StatusOK)
	// confirmed.
	confirmed := begin(link("ok/a4", ""), link("ok/c4", "compensate"))
	h.do(apiCall{method: "PUT", path: "/api/v1/transactions/" + confirmed + "/confirm", token: aliceTok}, http.StatusOK)

	const missing = "01NOSUCHTRANSACTION0000000"
	respelled := strings.Replace(strings.Replace(uri("ok/c1"), "http://", "HTTP://", 1), "/ok/", "/x/../ok/./", 1)
	tests := []struct {
		name      string
		token     string
		id, body  string
		ctype     string
		invalid   bool // the request breaks the document on purpose
		want      int
		wantTx    tccd.State
		wantPart  tccd.ParticipantState // "" with wantTx: as stored
		wantURI   string
		wantField string
	}{
		{name: "creator", token: aliceTok, id: active, body: ask(active, uri("ok/c1")), want: 200, wantTx: tccd.StateActive, wantPart: tccd.ParticipantPending},
		{name: "another client naming the URI", token: bobTok, id: active, body: ask(active, uri("ok/c1")), want: 200, wantTx: tccd.StateActive, wantPart: tccd.ParticipantPending},
		{name: "another client, TCC participant", token: bobTok, id: active, body: ask(active, uri("ok/a1")), want: 200, wantTx: tccd.StateActive, wantPart: tccd.ParticipantPending},
		{name: "URI spelled otherwise", token: bobTok, id: active, body: ask(active, respelled), want: 200, wantTx: tccd.StateActive, wantPart: tccd.ParticipantPending, wantURI: uri("ok/c1")},
		{name: "admin", token: opsTok, id: active, body: ask(active, uri("ok/c1")), want: 200, wantTx: tccd.StateActive, wantPart: tccd.ParticipantPending},
		{name: "confirming: compensate style recorded confirmed", token: bobTok, id: confirming, body: ask(confirming, uri("ok/c2")), want: 200, wantTx: tccd.StateConfirming, wantPart: tccd.ParticipantConfirmed},
		{name: "confirming: in doubt as stored", token: bobTok, id: confirming, body: ask(confirming, uri("busy/b2")), want: 200, wantTx: tccd.StateConfirming, wantPart: tccd.ParticipantInDoubt},
		{name: "cancelled: undone", token: bobTok, id: cancelled, body: ask(cancelled, uri("ok/c3")), want: 200, wantTx: tccd.StateCancelled, wantPart: tccd.ParticipantCompensated},
		{name: "confirmed", token: bobTok, id: confirmed, body: ask(confirmed, uri("ok/c4")), want: 200, wantTx: tccd.StateConfirmed, wantPart: tccd.ParticipantConfirmed},
		{name: "another client without the URI", token: bobTok, id: active, body: ask(active, uri("ok/nope")), want: 404},
		{name: "the creator without the URI", token: aliceTok, id: active, body: ask(active, uri("ok/nope")), want: 404},
		{name: "a URI of another transaction", token: bobTok, id: active, body: ask(active, uri("ok/c2")), want: 404},
		{name: "no such transaction", token: bobTok, id: missing, body: ask(missing, uri("ok/c1")), want: 404},
		{name: "no token", id: active, body: ask(active, uri("ok/c1")), want: 401},
		{name: "malformed uri", token: bobTok, id: active, body: ask(active, "ftp://x/y"), want: 400, wantField: "uri"},
		{name: "relative uri", token: bobTok, id: active, body: ask(active, "/ok/c1"), want: 400, wantField: "uri"},
		{name: "bad percent-encoding", token: bobTok, id: active, body: ask(active, uri("ok/c%zz")), want: 400, wantField: "uri"},
		{name: "a message's URN", token: bobTok, id: active, body: ask(active, "urn:tccd:message:1"), want: 400, wantField: "uri"},
		{name: "no uri", token: bobTok, id: active, body: `{}`, invalid: true, want: 400, wantField: "uri"},
		{name: "unknown field", token: bobTok, id: active, body: `{"uri":"` + uri("ok/c1") + `","state":"confirmed"}`, invalid: true, want: 400, wantField: "state"},
		{name: "no body", token: bobTok, id: active, invalid: true, want: 400},
		{name: "not JSON", token: bobTok, id: active, body: "uri=x", ctype: "text/plain", invalid: true, want: 415},
	}
	var notFound []Problem
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctype := tt.ctype
			if ctype == "" && tt.body != "" {
				ctype = js
			}
			hdr, body := h.do(apiCall{method: "POST", path: "/api/v1/transactions/" + tt.id + "/participants/outcome",
				ctype: ctype, body: tt.body, token: tt.token, invalid: tt.invalid}, tt.want)
			switch tt.want {
			case http.StatusOK:
				got := decodeAs[Outcome](t, body)
				wantURI := tt.wantURI
				if wantURI == "" {
					wantURI = strings.TrimSuffix(strings.TrimPrefix(tt.body, `{"uri":"`), `"}`)
				}
				if got.Transaction != tt.id || got.State != string(tt.wantTx) || got.Participant.State != string(tt.wantPart) || got.Participant.URI != wantURI {
					t.Errorf("answer %s; want %s, %s, participant %s %s", body, tt.id, tt.wantTx, wantURI, tt.wantPart)
				}
				// Never more than the record says.
				txState, pState := stored(tt.id, wantURI)
				if got.State != string(txState) || got.Participant.State != string(pState) {
					t.Errorf("answer %s; the record says %s, participant %s", body, txState, pState)
				}
				if hdr.Get("Cache-Control") != "no-store" {
					t.Errorf("Cache-Control %q", hdr.Get("Cache-Control"))
				}
				// Nothing else of the transaction: not its creator, not
				// its other participants.
				for _, secret := range []string{"alice", "created_by", "participants", "ok/a", "busy/"} {
					if tt.token == bobTok && strings.Contains(string(body), secret) && !strings.Contains(wantURI, secret) {
						t.Errorf("the answer shows %q: %s", secret, body)
					}
				}
			case http.StatusNotFound:
				p := decodeAs[Problem](t, body)
				if p.Code != "not_found" || p.Field != "uri" || p.Transaction != nil || p.State != "" {
					t.Errorf("404 %s: want not_found, field uri, without the transaction or its state", body)
				}
				// One message for every 404, but for the id and URI asked.
				p.Detail = strings.ReplaceAll(p.Detail, tt.id, "<id>")
				p.Instance = strings.ReplaceAll(p.Instance, tt.id, "<id>")
				for _, u := range []string{uri("ok/nope"), uri("ok/c1"), uri("ok/c2")} {
					p.Detail = strings.ReplaceAll(p.Detail, u, "<uri>")
				}
				notFound = append(notFound, p)
			case http.StatusBadRequest:
				if p := decodeAs[Problem](t, body); p.Code != "invalid" || p.Field != tt.wantField {
					t.Errorf("400 %s: want invalid, field %q", body, tt.wantField)
				}
			}
		})
	}
	for i := 1; i < len(notFound); i++ {
		if notFound[i] != notFound[0] {
			t.Errorf("404s differ: %+v and %+v", notFound[0], notFound[i])
		}
	}
	if len(notFound) != 4 {
		t.Errorf("%d 404s compared, want 4", len(notFound))
	}
}

// TestParticipantOutcomeRateLimited: the question counts against its
// client's rate like every other route.
func TestParticipantOutcomeRateLimited(t *testing.T) {
	e := newSecureEnv(t, ServerConfig{RateLimit: 0.01, RateBurst: 2})
	future := time.Now().Add(time.Hour).Format(time.RFC3339)
	u := e.part.URL + "/ok/r1"
	_, body := e.h.do(apiCall{method: "POST", path: "/api/v1/transactions", ctype: "application/json", token: aliceTok,
		body: `{"participants":[{"uri":"` + u + `","expires":"` + future + `","style":"compensate"}]}`}, http.StatusCreated)
	id := decodeAs[Transaction](t, body).ID
	call := apiCall{method: "POST", path: "/api/v1/transactions/" + id + "/participants/outcome",
		ctype: "application/json", body: `{"uri":"` + u + `"}`, token: bobTok}
	e.h.do(call, http.StatusOK)
	e.h.do(call, http.StatusOK)
	hdr, body := e.h.do(call, http.StatusTooManyRequests)
	if p := decodeAs[Problem](t, body); p.Code != "too_many_requests" {
		t.Errorf("429: %s", body)
	}
	if n, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("Retry-After %q", hdr.Get("Retry-After"))
	}
	// alice's budget is her own.
	call.token = aliceTok
	e.h.do(call, http.StatusOK)
}

// waitFor polls cond until it holds, for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
