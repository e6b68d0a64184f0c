package reserve

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/participant"
)

func TestPost(t *testing.T) {
	const link = `{"participantLink":{"uri":"http://svc/r/1","expires":"2030-01-02T03:04:05.5+01:00","rel":"tcc"},"data":{"seat":"1A"}}`
	tests := []struct {
		name    string
		status  int
		ctype   string
		body    string
		wantURI string
		refused int // the status of a *Refused; 0: no Refused
		detail  string
		anyErr  bool
	}{
		{name: "created", status: 201, ctype: "application/json", body: link, wantURI: "http://svc/r/1"},
		{name: "retried try", status: 200, ctype: "application/json", body: link, wantURI: "http://svc/r/1"},
		{name: "problem", status: 409, ctype: "application/problem+json", body: `{"title":"Conflict","detail":"flight LX318 is full"}`, refused: 409, detail: "flight LX318 is full"},
		{name: "problem without detail", status: 402, ctype: "application/problem+json", body: `{"title":"Payment Required"}`, refused: 402, detail: "Payment Required"},
		{name: "text", status: 503, ctype: "text/plain", body: "busy\n", refused: 503, detail: "busy"},
		{name: "empty", status: 500, refused: 500, detail: "Internal Server Error"},
		{name: "not json", status: 201, ctype: "application/json", body: `<html>`, anyErr: true},
		{name: "no uri", status: 201, ctype: "application/json", body: `{"participantLink":{"expires":"2030-01-02T03:04:05Z"}}`, anyErr: true},
		{name: "bad expires", status: 201, ctype: "application/json", body: `{"participantLink":{"uri":"http://svc/r/1","expires":"tomorrow"}}`, anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("got %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
				}
				if tt.ctype != "" {
					w.Header().Set("Content-Type", tt.ctype)
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			ans, err := Post(context.Background(), srv.Client(), srv.URL, map[string]int{"n": 1})
			var refused *Refused
			switch {
			case tt.wantURI != "":
				if err != nil {
					t.Fatal(err)
				}
				want := time.Date(2030, 1, 2, 2, 4, 5, 5e8, time.UTC)
				if ans.Link.URI != tt.wantURI || !ans.Link.Expires.Equal(want) || string(ans.Data) != `{"seat":"1A"}` {
					t.Errorf("got %+v, data %s", ans.Link, ans.Data)
				}
			case tt.refused != 0:
				if !errors.As(err, &refused) || refused.Status != tt.refused || refused.Detail != tt.detail {
					t.Errorf("got %v, want a Refused %d %q", err, tt.refused, tt.detail)
				}
			case tt.anyErr:
				if err == nil || errors.As(err, &refused) {
					t.Errorf("got %v, want an error that is not a refusal", err)
				}
			}
		})
	}
}

func TestPostUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := Post(context.Background(), http.DefaultClient, url, nil)
	var down *Unreachable
	if !errors.As(err, &down) {
		t.Fatalf("got %v, want Unreachable", err)
	}
	if got := Reason("easyjet", err); got != "easyjet unreachable" {
		t.Errorf("Reason = %q", got)
	}
}

func TestTTLParam(t *testing.T) {
	tests := []struct {
		query string
		max   time.Duration
		want  time.Duration
		bad   string // in the refusal's detail
	}{
		{query: "", want: 0},
		{query: "ttl=90s", want: 90 * time.Second},
		{query: "ttl=1m30s", want: 90 * time.Second},
		{query: "ttl=24h", want: 24 * time.Hour},
		{query: "ttl=90", bad: "positive duration"},
		{query: "ttl=-1s", bad: "positive duration"},
		{query: "ttl=0s", bad: "positive duration"},
		{query: "ttl=soon", bad: "positive duration"},
		{query: "ttl=25h", bad: "at most 24h0m0s"},
		{query: "ttl=2m", max: time.Minute, bad: "at most 1m0s"},
		{query: "ttl=1m", max: time.Minute, want: time.Minute},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/x?"+tt.query, nil)
		got, err := TTLParam(r, tt.max)
		var rej *participant.Rejection
		switch {
		case tt.bad == "" && (err != nil || got != tt.want):
			t.Errorf("%q (max %v): got %v, %v; want %v", tt.query, tt.max, got, err, tt.want)
		case tt.bad != "" && (!errors.As(err, &rej) || rej.Status != http.StatusBadRequest || !strings.Contains(rej.Detail, tt.bad)):
			t.Errorf("%q (max %v): got %v, %v; want a 400 saying %q", tt.query, tt.max, got, err, tt.bad)
		}
	}
	if got := WithTTL("http://a/b", time.Minute); got != "http://a/b?ttl=1m0s" {
		t.Errorf("WithTTL = %q", got)
	}
	if got := WithTTL("http://a/b?x=1", time.Second); got != "http://a/b?x=1&ttl=1s" {
		t.Errorf("WithTTL = %q", got)
	}
	if got := WithTTL("http://a/b", 0); got != "http://a/b" {
		t.Errorf("WithTTL = %q", got)
	}
}
