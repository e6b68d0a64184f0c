package client

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
)

func TestParseLinkHeader(t *testing.T) {
	type L = webLink
	p := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name   string
		values []string
		want   []L
	}{
		{"none", nil, nil},
		{"empty", []string{""}, nil},
		{"one", []string{`<http://a/1>; rel="tcc"; expires="2026-01-02T03:04:05Z"`},
			[]L{{"http://a/1", p("rel", "tcc", "expires", "2026-01-02T03:04:05Z")}}},
		{"token values", []string{`<http://a/1>;rel=tcc;expires=2026-01-02T03:04:05Z`},
			[]L{{"http://a/1", p("rel", "tcc", "expires", "2026-01-02T03:04:05Z")}}},
		{"several per header", []string{`<http://a/1>; rel="tcc", <http://b/2>; rel="next"`},
			[]L{{"http://a/1", p("rel", "tcc")}, {"http://b/2", p("rel", "next")}}},
		{"several headers", []string{`<http://a/1>; rel="tcc"`, `<http://b/2>; rel="tcc"`},
			[]L{{"http://a/1", p("rel", "tcc")}, {"http://b/2", p("rel", "tcc")}}},
		{"comma and semicolon in quotes", []string{`<http://a/1>; title="x, y; z"; rel="tcc", <http://b/2>`},
			[]L{{"http://a/1", p("title", "x, y; z", "rel", "tcc")}, {"http://b/2", p()}}},
		{"escaped quote", []string{`<http://a/1>; title="say \"hi\", bye"; rel=tcc`},
			[]L{{"http://a/1", p("title", `say "hi", bye`, "rel", "tcc")}}},
		{"comma in target", []string{`<http://a/x,y>; rel="tcc"`},
			[]L{{"http://a/x,y", p("rel", "tcc")}}},
		{"parameter names are case-insensitive", []string{`<http://a/1>; REL="tcc"; timeLimit="30"`},
			[]L{{"http://a/1", p("rel", "tcc", "timelimit", "30")}}},
		{"first occurrence wins", []string{`<http://a/1>; rel="tcc"; rel="other"`},
			[]L{{"http://a/1", p("rel", "tcc")}}},
		{"valueless parameter", []string{`<http://a/1>; crossorigin; rel=tcc`},
			[]L{{"http://a/1", p("crossorigin", "", "rel", "tcc")}}},
		{"white space everywhere", []string{"  <http://a/1>\t ;\trel = \"tcc\" ,  ,<http://b/2> "},
			[]L{{"http://a/1", p("rel", "tcc")}, {"http://b/2", p()}}},
		{"malformed link is skipped", []string{`garbage; rel="tcc", <http://b/2>; rel="tcc"`},
			[]L{{"http://b/2", p("rel", "tcc")}}},
		{"junk after target is skipped", []string{`<http://a/1> junk, <http://b/2>`},
			[]L{{"http://b/2", p()}}},
		{"unterminated target", []string{`<http://a/1; rel="tcc"`}, nil},
		{"unterminated quote", []string{`<http://a/1>; rel="tcc`}, nil},
		{"stray semicolons", []string{`<http://a/1>;; rel=tcc;`},
			[]L{{"http://a/1", p("rel", "tcc")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseLinkHeader(tt.values)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseLinkHeader(%q)\n got %#v\nwant %#v", tt.values, got, tt.want)
			}
		})
	}
}

func TestHasRel(t *testing.T) {
	l := parseLinkHeader([]string{`<http://a/1>; rel="next TCC https://otmm.oracle.com/tcc-participant"`})[0]
	for _, rel := range []string{"next", api.RelParticipant, api.MicroTxRelParticipant} {
		if !l.hasRel(rel) {
			t.Errorf("hasRel(%q) = false", rel)
		}
	}
	if l.hasRel(api.RelTransaction) {
		t.Errorf("hasRel(%q) = true", api.RelTransaction)
	}
}

func TestFormatLinkRoundTrip(t *testing.T) {
	exp := time.Date(2026, 11, 21, 10, 15, 54, 261000000, time.UTC)
	v := formatLink(Link{URI: "http://svc/booking/42?a=1,2", Expires: exp})
	if want := `<http://svc/booking/42?a=1,2>; rel="tcc"; expires="2026-11-21T10:15:54.261Z"`; v != want {
		t.Fatalf("formatLink = %s, want %s", v, want)
	}
	got := parseLinkHeader([]string{v})
	if len(got) != 1 || got[0].Target != "http://svc/booking/42?a=1,2" || !got[0].hasRel(api.RelParticipant) {
		t.Fatalf("parsed back as %#v", got)
	}
	if e, err := parseTime(got[0].Params[api.ParamExpires]); err != nil || !e.Equal(exp) {
		t.Fatalf("expires parsed back as %v, %v", e, err)
	}
}

func TestParseTimeLimit(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "2026-01-01T00:10:00Z", want: now.Add(10 * time.Minute)},
		{in: "2026-01-01T01:10:00+01:00", want: now.Add(10 * time.Minute)},
		{in: "2026-01-01T01:10:00.5+0100", want: now.Add(10*time.Minute + 500*time.Millisecond)},
		{in: "30", want: now.Add(30 * time.Second)},
		{in: " 2.5 ", want: now.Add(2500 * time.Millisecond)},
		{in: "30s", want: now.Add(30 * time.Second)},
		{in: "1m30s", want: now.Add(90 * time.Second)},
		{in: "0", wantErr: true},
		{in: "-5", wantErr: true},
		{in: "-1m", wantErr: true},
		{in: "", wantErr: true},
		{in: "soon", wantErr: true},
		{in: "NaN", wantErr: true},
		{in: "Inf", wantErr: true},
		{in: "1e300", wantErr: true},
		{in: "2026-01-01", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseTimeLimit(tt.in, now)
		if (err != nil) != tt.wantErr || (!tt.wantErr && !got.Equal(tt.want)) {
			t.Errorf("parseTimeLimit(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	def := 3 * time.Second
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", def},
		{"2", 2 * time.Second},
		{"0", minRetryWait},
		{"soon", def},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second},
		{now.Add(-5 * time.Second).Format(http.TimeFormat), minRetryWait},
		{"-3", def},
		{"99999999999999", maxRetryWait},
		{now.Add(100 * 24 * time.Hour).Format(http.TimeFormat), maxRetryWait},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.in, now, def); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestResolve(t *testing.T) {
	base, _ := url.Parse("http://svc:8080/api/try?x=1")
	tests := []struct {
		target, want string
		wantErr      bool
	}{
		{target: "http://other/r/1", want: "http://other/r/1"},
		{target: "https://other/r/1?a=b", want: "https://other/r/1?a=b"},
		{target: "/r/1", want: "http://svc:8080/r/1"},
		{target: "r/1", want: "http://svc:8080/api/r/1"},
		{target: "//other:9/r/1", want: "http://other:9/r/1"},
		{target: "mailto:a@b", wantErr: true},
		{target: "http:///r/1", wantErr: true},
		{target: "http://other/r?q=<x>", wantErr: true},
		{target: "http://other/r?q=a|b", want: "http://other/r?q=a|b"},
		{target: "http://other/r?q=a b", wantErr: true},
		{target: "http://other/r\n", wantErr: true},
		{target: "http://other/%zz", wantErr: true},
	}
	for _, tt := range tests {
		got, err := resolve(base, tt.target)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("resolve(%q) = %q, %v; want %q (error %v)", tt.target, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCodeOfStatus(t *testing.T) {
	tests := map[int]string{
		400: api.CodeInvalid, 404: api.CodeNotFound, 503: api.CodeUnavailable,
		500: api.CodeInternal, 409: "", 418: "",
	}
	for status, want := range tests {
		if got := codeOfStatus(status); got != want {
			t.Errorf("codeOfStatus(%d) = %q, want %q", status, got, want)
		}
	}
}

func TestCollectLinksRestoresBody(t *testing.T) {
	body := `{"participantLink":{"uri":"/r/1","expires":"2026-01-02T03:04:05Z","rel":"tcc"}}`
	resp := &http.Response{
		StatusCode: 200,
		Header:     http.Header{"Content-Type": {"application/json; charset=utf-8"}},
		Body:       io.NopCloser(strings.NewReader(body)),
	}
	base, _ := url.Parse("http://svc:8080/try?x=1")
	links, err := collectLinks(resp, base, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := []Link{{URI: "http://svc:8080/r/1", Expires: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	if len(links) != 1 || links[0].URI != want[0].URI || !links[0].Expires.Equal(want[0].Expires) {
		t.Errorf("links = %v, want %v", links, want)
	}
	got, _ := io.ReadAll(resp.Body)
	if string(got) != body {
		t.Errorf("body given back = %q, want %q", got, body)
	}
}

func TestCollectLinksLargeBodyUntouched(t *testing.T) {
	body := bytes.Repeat([]byte(" "), maxLinkBody+10)
	body = append(body, `{"participantLink":{"uri":"http://a/1","expires":"2026-01-02T03:04:05Z"}}`...)
	resp := &http.Response{
		StatusCode: 200,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(bytes.NewReader(body)),
	}
	links, err := collectLinks(resp, nil, time.Now())
	if err != nil || len(links) != 0 {
		t.Errorf("links = %v, %v; want none (the body is over the limit)", links, err)
	}
	got, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(got, body) {
		t.Errorf("body given back has %d bytes, want %d", len(got), len(body))
	}
}

func FuzzParseLinkHeader(f *testing.F) {
	for _, s := range []string{
		`<http://a/1>; rel="tcc"; expires="2026-01-02T03:04:05Z"`,
		`<http://a/1>; title="x, \"y\"; z", <b>; rel=next`,
		`<http://a/1`, `<a>; rel="`, `,,;<>;=;"`, `<a>;b=c;d;e="f\`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		links := parseLinkHeader([]string{s})
		for _, l := range links {
			if strings.Contains(l.Target, ">") {
				t.Errorf("target %q contains >", l.Target)
			}
		}
		// A link formatted by us reads back the same whatever precedes it.
		l := Link{URI: "http://svc/r/1", Expires: time.Unix(1e9, 0)}
		after := parseLinkHeader([]string{s + ", " + formatLink(l)})
		if len(after) < 1 {
			return // s left a quote or bracket open: the rest is swallowed, by design
		}
		last := after[len(after)-1]
		if last.Target == l.URI && last.Params[api.ParamExpires] != formatTime(l.Expires) {
			t.Errorf("formatted link read back as %#v", last)
		}
	})
}

// TestCollectLinksStyle: a participant's style travels from its answer
// (a style parameter of its Link header, or the style of its
// participantLink) into the link, and back out in a Link header for the
// caller's own answer; a style that is not a plain word is dropped.
func TestCollectLinksStyle(t *testing.T) {
	const exp = "2026-01-02T03:04:05Z"
	tests := []struct {
		name   string
		header []string
		body   string
		want   string
	}{
		{name: "Link header", header: []string{`<http://a/1>; rel="tcc"; expires="` + exp + `"; style="compensate"`}, want: StyleCompensate},
		{name: "Link header, token", header: []string{`<http://a/1>; rel=tcc; expires=` + exp + `; style=compensate`}, want: StyleCompensate},
		{name: "body", body: `{"participantLink":{"uri":"http://a/1","expires":"` + exp + `","rel":"tcc","style":"compensate"}}`, want: StyleCompensate},
		{name: "none", header: []string{`<http://a/1>; rel="tcc"; expires="` + exp + `"`}, want: ""},
		{name: "tcc", body: `{"participantLink":{"uri":"http://a/1","expires":"` + exp + `","style":"tcc"}}`, want: StyleTCC},
		{name: "not a word", header: []string{`<http://a/1>; rel="tcc"; expires="` + exp + `"; style="a\"; b=c"`}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: 201, Header: http.Header{"Link": tt.header, "Content-Type": {"application/json"}},
				Body: io.NopCloser(strings.NewReader(tt.body))}
			links, err := collectLinks(resp, nil, time.Now())
			if err != nil || len(links) != 1 {
				t.Fatalf("links %v, %v", links, err)
			}
			if links[0].Style != tt.want {
				t.Errorf("style %q, want %q", links[0].Style, tt.want)
			}
			if w := links[0].wire(); w.Style != tt.want {
				t.Errorf("sent to the coordinator with style %q, want %q", w.Style, tt.want)
			}
			// Passed on in a Link header, it reads back the same.
			back := parseLinkHeader([]string{formatLink(links[0])})
			if len(back) != 1 || back[0].Params[api.ParamStyle] != tt.want {
				t.Errorf("formatted as %q, read back as %#v", formatLink(links[0]), back)
			}
		})
	}
}
