package tccd_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tccd/tccd"
)

func FuzzValidateURI(f *testing.F) {
	for _, s := range []string{
		"",
		"http://127.0.0.1:9/r/1",
		"https://api.example.com/booking/42?x=1&y=%20",
		"http://[::1]:8080/r",
		"http://[fe80::1%25eth0]:8080/r",
		"HTTP://EXAMPLE.COM/R",
		"http://h:/r",
		"http://h:0/r",
		"http://h:65535/r",
		"http://h:65536/r",
		"http://h:99999/r",
		"http://h:-1/r",
		"http://h:+80/r",
		"http://h:0080/r",
		"http:///r",
		"http://:80/r",
		"http:h/r",
		"http:/h/r",
		"//h/r",
		"/r/1",
		"ftp://h/r",
		"file:///etc/passwd",
		"javascript:alert(1)",
		"mailto:a@b.c",
		"http://u:p@h/r",
		"http://@h/r",
		"http://h/r#f",
		"http://h/r#",
		"http://h/r 1",
		"http://h/r\t",
		"http://h/r\x00",
		"http://h/r\x7f",
		"http://h/\u00e9",
		"http://h/r%zz",
		"http://[::1/r",
		"http://h/" + strings.Repeat("a", tccd.MaxURILength),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		err := tccd.ValidateURI(raw)
		if err != nil {
			var e *tccd.Error
			if !errors.As(err, &e) || tccd.ErrorCode(err) == "" {
				t.Fatalf("%q: error %v (%T) is not a *tccd.Error with a code", raw, err, err)
			}
			if e.Code != tccd.EInvalid || e.Field != "uri" || e.Message == "" {
				t.Fatalf("%q: error code %q field %q message %q; want invalid, uri, a message", raw, e.Code, e.Field, e.Message)
			}
			return
		}
		if len(raw) > tccd.MaxURILength {
			t.Fatalf("%q: accepted a URI of %d bytes", raw, len(raw))
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("%q: accepted, but url.Parse fails: %v", raw, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("%q: accepted scheme %q", raw, u.Scheme)
		}
		if u.Hostname() == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
			t.Fatalf("%q: accepted (host %q, user %v, fragment %q, opaque %q)", raw, u.Hostname(), u.User, u.Fragment, u.Opaque)
		}
		if tccd.HostOf(raw) == "" {
			t.Fatalf("%q: accepted, but HostOf is empty", raw)
		}
		// The caller must be able to build its confirm and cancel calls.
		for _, m := range []string{http.MethodPut, http.MethodDelete} {
			req, err := http.NewRequest(m, raw, nil)
			if err != nil {
				t.Fatalf("%q: accepted, but no %s request can be made of it: %v", raw, m, err)
			}
			if req.URL.Host == "" {
				t.Fatalf("%q: accepted, but its %s request has no host", raw, m)
			}
		}
	})
}
