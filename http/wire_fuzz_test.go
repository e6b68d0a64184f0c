package http_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
)

// Seeds shared by the decoder fuzzers: valid bodies of each endpoint,
// near misses, and the shapes the hostile catalogue sends.
var decodeSeeds = []string{
	``,
	` `,
	`null`,
	`{}`,
	`[]`,
	`42`,
	`"x"`,
	`true`,
	`{} x`,
	`{}{}`,
	`{"timeout":`,
	"\xef\xbb\xbf{}",
	`{"timeout":"30s","name":"order-42","labels":{"shop":"eu"},"participants":[{"uri":"http://127.0.0.1:9/r/1","expires":"2099-01-01T10:00:00Z","rel":"tcc"}]}`,
	`{"timeout":30}`,
	`{"timeout":"-1s"}`,
	`{"timeout":"9999999999h"}`,
	`{"labels":["a"]}`,
	`{"labels":{"":"v"}}`,
	`{"timeot":"1s"}`,
	`{"uri":"http://127.0.0.1:9/r/1","expires":"2099-01-01T10:00:00.123456789+01:00"}`,
	`{"uri":"https://[::1]:8443/r/1?x=1","expires":"2099-01-01 10:00:00+0100"}`,
	`{"uri":"http://h/r","expires":"2099-01-01t10:00:00z"}`,
	`{"uri":1,"expires":"2099-01-01T10:00:00Z"}`,
	`{"uri":"http://h/r","expires":true}`,
	`{"uri":"http://h/r"}`,
	`{"expires":"2099-01-01T10:00:00Z"}`,
	`{"uri":"ftp://h/r","expires":"2099-01-01T10:00:00Z"}`,
	`{"uri":"http://u:p@h/r","expires":"2099-01-01T10:00:00Z"}`,
	`{"uri":"http://h/r#f","expires":"2099-01-01T10:00:00Z"}`,
	`{"uri":"http://h:0/r","expires":"2099-01-01T10:00:00Z"}`,
	`{"uri":"http://h/r\u0000","expires":"2099-01-01T10:00:00Z"}`,
	`{"uri":"http://h/r","expires":"0001-01-01T00:00:00Z"}`,
	`{"uri":"http://h/r","expires":"2300-01-01T00:00:00Z"}`,
	`{"uri":"http://h/r","expires":"2099-01-01T10:00:00"}`,
	`{"participants":[{"uri":"http://h/r","expires":"2099-01-01T10:00:00Z"},{"uri":"http://h/r","expires":"2099-01-01T10:00:00Z"}]}`,
	`{"participants":{}}`,
	`{"participantLinks":[{"uri":"http://127.0.0.1:9/r/1","expires":"2014-01-11T10:15:54Z"}],"extra":1}`,
	`{"participantLinks":[{"uri":"http://h/r","expires":"2014-04-07T10:15:54.261+01:00"},{"uri":"http://h/s","expires":"2014-04-07T10:15:54.261+0100"}]}`,
	`{"participantLinks":[{"expires":"2014-01-11T10:15:54Z"}]}`,
	`{"participantLinks":[{"uri":"http://h/r"}]}`,
	`{"participantLinks":[{"uri":"http://h/r","expires":"bad"}]}`,
	`{"participantLinks":{}}`,
	`{"participantLinks":null}`,
}

// checkDecodeError asserts the decoders' error contract: a *tccd.Error
// with a code, and that code is a client error.
func checkDecodeError(t *testing.T, body []byte, err error) {
	t.Helper()
	var e *tccd.Error
	if !errors.As(err, &e) {
		t.Fatalf("%q: error %v (%T) is not a *tccd.Error", body, err, err)
	}
	if tccd.ErrorCode(err) == "" || e.Code == "" {
		t.Fatalf("%q: error %v has no code", body, err)
	}
	if e.Code != tccd.EInvalid {
		t.Fatalf("%q: error code %s, want %s", body, e.Code, tccd.EInvalid)
	}
	if e.Message == "" {
		t.Fatalf("%q: error without message", body)
	}
}

// checkLinks asserts that decoded links are ones the coordinator may use.
func checkLinks(t *testing.T, body []byte, links []tccd.Link) {
	t.Helper()
	for i, l := range links {
		if err := tccd.ValidateURI(l.URI); err != nil {
			t.Fatalf("%q: link %d: uri %q accepted but ValidateURI says %v", body, i, l.URI, err)
		}
		if l.Expires.IsZero() {
			t.Fatalf("%q: link %d: zero expires accepted", body, i)
		}
		// The expiry survives the store's Unix-nanosecond encoding.
		if got := time.Unix(0, l.Expires.UnixNano()); !got.Equal(l.Expires) || got.UnixNano() == 0 {
			t.Fatalf("%q: link %d: expires %v does not survive storage (reads back as %v)", body, i, l.Expires, got)
		}
	}
}

func addDecodeSeeds(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
}

func FuzzDecodeBegin(f *testing.F) {
	addDecodeSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := tccdhttp.DecodeBegin(body)
		if err != nil {
			checkDecodeError(t, body, err)
			return
		}
		if req.Timeout < 0 {
			t.Fatalf("%q: negative timeout %v accepted", body, req.Timeout)
		}
		if len(req.Name) > 256 || len(req.Labels) > 32 {
			t.Fatalf("%q: name of %d bytes or %d labels accepted", body, len(req.Name), len(req.Labels))
		}
		for k := range req.Labels {
			if k == "" {
				t.Fatalf("%q: empty label key accepted", body)
			}
		}
		checkLinks(t, body, req.Participants)
	})
}

func FuzzDecodeLink(f *testing.F) {
	addDecodeSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		l, err := tccdhttp.DecodeLink(body)
		if err != nil {
			checkDecodeError(t, body, err)
			return
		}
		checkLinks(t, body, []tccd.Link{l})
	})
}

func FuzzDecodeConfirm(f *testing.F) {
	addDecodeSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		links, err := tccdhttp.DecodeConfirm(body)
		if err != nil {
			checkDecodeError(t, body, err)
			return
		}
		checkLinks(t, body, links)
	})
}

func FuzzDecodeCancel(f *testing.F) {
	addDecodeSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		if err := tccdhttp.DecodeCancel(body); err != nil {
			checkDecodeError(t, body, err)
		}
	})
}

func FuzzDecodeAtomikos(f *testing.F) {
	addDecodeSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		links, err := tccdhttp.DecodeAtomikos(body)
		if err != nil {
			checkDecodeError(t, body, err)
			return
		}
		checkLinks(t, body, links)
	})
}

func FuzzParseExpires(f *testing.F) {
	for _, s := range []string{
		"",
		"2014-01-11T10:15:54Z",
		"2014-04-07T10:15:54.261+01:00",
		"2014-04-07T10:15:54.261+0100",
		"2014-04-07 10:15:54-0530",
		"2014-04-07t10:15:54z",
		" 2014-04-07T10:15:54Z ",
		"2014-04-07T10:15:54,5Z",
		"2014-04-07T10:15:54.123456789123Z",
		"2014-04-07T10:15:54",
		"2014-04-07",
		"2014-02-30T10:15:54Z",
		"2014-04-07T24:00:00Z",
		"2014-04-07T10:15:60Z",
		"2014-04-07T10:15:54+24:00",
		"2014-04-07T10:15:54+2400",
		"2014-04-07T10:15:54+99:99",
		"0001-01-01T00:00:00Z",
		"1970-01-01T00:00:00Z",
		"1970-01-01T00:00:00.000000001Z",
		"1677-09-21T00:12:43.145224192Z",
		"2262-04-11T23:47:16.854775807Z",
		"2262-04-11T23:47:16.854775808Z",
		"9999-12-31T23:59:59-23:59",
		"tomorrow",
		"1700000000",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := tccdhttp.ParseExpires(s)
		if err != nil {
			if !got.IsZero() {
				t.Fatalf("%q: error %v with a time %v", s, err, got)
			}
			return
		}
		if got.IsZero() {
			t.Fatalf("%q: parsed to the zero time", s)
		}
		formatted := got.Format(time.RFC3339Nano)
		back, err := tccdhttp.ParseExpires(formatted)
		if err != nil {
			t.Fatalf("%q: parsed to %v, whose RFC 3339 form %q does not parse: %v", s, got, formatted, err)
		}
		if !back.Equal(got) {
			t.Fatalf("%q: parsed to %v, reformatted %q parses to %v", s, got, formatted, back)
		}
		if std, err := time.Parse(time.RFC3339Nano, formatted); err != nil || !std.Equal(got) {
			t.Fatalf("%q: reformatted %q: time.Parse gives %v, %v; want %v", s, formatted, std, err, got)
		}
		if n := got.UnixNano(); n == 0 || !time.Unix(0, n).Equal(got) {
			t.Fatalf("%q: %v is not representable in Unix nanoseconds", s, got)
		}
	})
}

func FuzzDecodeResolve(f *testing.F) {
	addDecodeSeeds(f)
	for _, s := range []string{
		`{"state":"confirmed"}`,
		`{"state":"cancelled","note":"refunded by hand"}`,
		`{"state":"heuristic"}`,
		`{"state":"confirmed","note":7}`,
		`{"state":"confirmed","by":"ops"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		st, note, err := tccdhttp.DecodeResolve(body)
		if err != nil {
			checkDecodeError(t, body, err)
			return
		}
		if st != tccd.StateConfirmed && st != tccd.StateCancelled {
			t.Fatalf("%q: state %q accepted", body, st)
		}
		if len(note) > tccd.MaxNoteLength {
			t.Fatalf("%q: note of %d bytes accepted", body, len(note))
		}
	})
}

// FuzzParseTokens: a tokens file either parses or gives an error that
// shows no hash; what parses authenticates nothing but its tokens.
func FuzzParseTokens(f *testing.F) {
	h := tccdhttp.HashToken("t")
	for _, s := range []string{
		"", "# c\n", "a client " + h, "a admin " + h + "\nb client " + tccdhttp.HashToken("u"),
		"a " + h + " client", "a client " + h[:10], "a client " + h + " x", "a\tclient\t" + h + "\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, file string) {
		toks, err := tccdhttp.ParseTokens(strings.NewReader(file))
		if err != nil {
			for _, field := range strings.Fields(file) {
				if len(field) >= 16 && strings.Contains(err.Error(), field) {
					t.Fatalf("the error %q shows the field %q", err, field)
				}
			}
			return
		}
		if _, ok := toks.Authenticate(""); ok && !strings.Contains(strings.ToLower(file), tccdhttp.HashToken("")) {
			t.Fatal("the empty token authenticates")
		}
	})
}
