package client_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/internal/testpart"
)

// TestList: pages newest first, the state filter, the cursor, and the
// coordinator's refusal of a bad filter.
func TestList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	ctx := testCtx(t)
	var ids []string
	for range 3 {
		tx, err := e.c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tx.ID())
	}
	if _, err := e.c.Tx(ids[0]).Cancel(ctx); err != nil {
		t.Fatal(err)
	}

	page, err := e.c.List(ctx, client.ListFilter{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Transactions) != 2 || page.Transactions[0].ID != ids[2] || page.Transactions[1].ID != ids[1] || page.NextCursor == "" {
		t.Fatalf("first page %+v, want %s, %s and a cursor", page, ids[2], ids[1])
	}
	rest, err := e.c.List(ctx, client.ListFilter{Limit: 2, Cursor: page.NextCursor})
	if err != nil {
		t.Fatal(err)
	}
	if len(rest.Transactions) != 1 || rest.Transactions[0].ID != ids[0] || rest.NextCursor != "" {
		t.Fatalf("second page %+v, want %s alone", rest, ids[0])
	}
	cancelled, err := e.c.List(ctx, client.ListFilter{State: "cancelled"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cancelled.Transactions) != 1 || cancelled.Transactions[0].ID != ids[0] {
		t.Fatalf("cancelled: %+v", cancelled)
	}
	for _, f := range []client.ListFilter{{State: "done"}, {Limit: 1001}} {
		_, err := e.c.List(ctx, f)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != api.CodeInvalid {
			t.Errorf("List(%+v) = %v, want an invalid error", f, err)
		}
	}
}

// TestResolveAndPurge: a heuristic transaction resolved by an operator,
// a second resolve to the same state, a resolve of a transaction that is
// not heuristic, and a purge.
func TestResolveAndPurge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	ok, refusing := newPart(t, nil), newPart(t, nil)
	refusing.svc.AddFault(testpart.Fault{Op: "confirm", Count: -1, Status: http.StatusBadRequest})
	ctx := testCtx(t)
	tx, err := e.c.Begin(ctx, client.WithParticipants(ok.try(time.Minute), refusing.try(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Confirm(ctx); !errors.Is(err, client.ErrHeuristic) {
		t.Fatalf("confirm = %v, want a heuristic outcome", err)
	}
	for range 2 {
		got, err := e.c.Resolve(ctx, tx.ID(), "confirmed", "confirmed by hand at the airline")
		if err != nil {
			t.Fatal(err)
		}
		if got.State != "confirmed" || got.Reason != "resolved" || got.ResolutionNote != "confirmed by hand at the airline" {
			t.Fatalf("resolved: %+v", got)
		}
	}
	plain, err := e.c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var conflict *client.ConflictError
	if _, err := e.c.Resolve(ctx, plain.ID(), "cancelled", ""); !errors.As(err, &conflict) || conflict.State != "active" {
		t.Fatalf("resolve of an active transaction = %v, want a conflict", err)
	}
	if _, err := e.c.Resolve(ctx, "nope", "cancelled", ""); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("resolve of an unknown transaction = %v", err)
	}
	// Nothing is past the retention yet.
	if n, err := e.c.Purge(ctx); err != nil || n != 0 {
		t.Fatalf("Purge = %d, %v", n, err)
	}
}

// TestEvents: a stream filtered to one transaction gets its state changes
// in order, with the data as sent; a stream resumed after a seq gets what
// followed it; a bad filter is the coordinator's error.
func TestEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	ctx := testCtx(t)
	tx, err := e.c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.c.Events(ctx, client.EventFilter{Transaction: tx.ID(), Types: []string{api.EventState}})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	other, err := e.c.Begin(ctx) // filtered out
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	var states []string
	var first uint64
	for len(states) < 2 {
		ev, err := stream.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Transaction != tx.ID() || ev.Type != api.EventState {
			t.Fatalf("event %+v, not of the filter", ev)
		}
		var raw map[string]any
		if err := json.Unmarshal(stream.Data(), &raw); err != nil || raw["state"] != ev.State {
			t.Fatalf("Data() = %s (%v) for %+v", stream.Data(), err, ev)
		}
		if first == 0 {
			first = ev.Seq
		}
		if stream.LastSeq() != ev.Seq {
			t.Fatalf("LastSeq %d after event %d", stream.LastSeq(), ev.Seq)
		}
		states = append(states, ev.State)
	}
	if strings.Join(states, " ") != "cancelling cancelled" {
		t.Fatalf("states %q", states)
	}

	resumed, err := e.c.Events(ctx, client.EventFilter{Transaction: tx.ID(), After: first})
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	ev, err := resumed.Next()
	if err != nil || ev.State != "cancelled" || ev.Seq <= first {
		t.Fatalf("resumed after %d: %+v, %v", first, ev, err)
	}

	_, err = e.c.Events(ctx, client.EventFilter{Types: []string{"everything"}})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != api.CodeInvalid {
		t.Fatalf("bad filter: %v", err)
	}
}

// TestEventStreamFormat reads the Server-Sent Events format itself:
// comments, multi-line data, events without data, undecodable data, and
// the end of the stream.
func TestEventStreamFormat(t *testing.T) {
	t.Parallel()
	body := ": keep-alive\n\n" +
		"id: 7\nevent: state\ndata: {\"seq\":7,\"type\":\"state\",\n" +
		"data: \"state\":\"active\"}\n\n" +
		"event: nothing\n\n" +
		"data: not json\n\n" +
		"data:{\"type\":\"gap\"}\r\n\r\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(api.HeaderLastEventID) != "5" {
			http.Error(w, "want Last-Event-ID 5", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", api.MediaEventStream)
		io.WriteString(w, body)
	}))
	defer srv.Close()
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Events(testCtx(t), client.EventFilter{After: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.LastSeq() != 5 {
		t.Fatalf("LastSeq before reading: %d", s.LastSeq())
	}
	ev, err := s.Next()
	if err != nil || ev.Seq != 7 || ev.State != "active" || string(s.Data()) != "{\"seq\":7,\"type\":\"state\",\n\"state\":\"active\"}" {
		t.Fatalf("first: %+v, %v, data %q", ev, err, s.Data())
	}
	if _, err := s.Next(); !errors.Is(err, client.ErrBadEvent) || string(s.Data()) != "not json" {
		t.Fatalf("undecodable: %v, data %q", err, s.Data())
	}
	if ev, err := s.Next(); err != nil || ev.Type != api.EventGap || s.LastSeq() != 7 {
		t.Fatalf("gap: %+v, %v, LastSeq %d", ev, err, s.LastSeq())
	}
	if _, err := s.Next(); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
}

// TestReadLinks: an answer's links as Transport reads them, relative
// ones resolved against the request, the body left for the caller.
func TestReadLinks(t *testing.T) {
	t.Parallel()
	exp := "2030-01-02T03:04:05Z"
	req := httptest.NewRequest(http.MethodPost, "http://svc.example/reservations", nil)
	tests := []struct {
		name    string
		header  http.Header
		status  int
		body    string
		want    []string
		wantErr string
	}{
		{name: "link header, relative", header: http.Header{"Link": {`</reservations/1>; rel="tcc"; expires="` + exp + `"`}}, status: 200, want: []string{"http://svc.example/reservations/1"}},
		{name: "json body", header: http.Header{"Content-Type": {"application/json"}}, status: 201, body: `{"participantLink":{"uri":"http://svc.example/r/2","expires":"` + exp + `"}}`, want: []string{"http://svc.example/r/2"}},
		{name: "json body as text", header: http.Header{"Content-Type": {"text/plain"}}, status: 201, body: `{"participantLink":{"uri":"http://svc.example/r/2","expires":"` + exp + `"}}`},
		{name: "created", header: http.Header{"Location": {"/r/3"}, api.HeaderExpires: {exp}}, status: 201, want: []string{"http://svc.example/r/3"}},
		{name: "no expiry", header: http.Header{"Link": {`</r/4>; rel="tcc"`}}, status: 200, wantErr: "no expires"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Header: tt.header, Body: io.NopCloser(strings.NewReader(tt.body)), Request: req}
			links, err := client.ReadLinks(resp)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadLinks = %v, %v; want an error with %q", links, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range links {
				got = append(got, l.URI)
				if !l.Expires.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
					t.Errorf("expires %v", l.Expires)
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("links %q, want %q", got, tt.want)
			}
			if rest, _ := io.ReadAll(resp.Body); string(rest) != tt.body {
				t.Fatalf("body left %q", rest)
			}
		})
	}
}
