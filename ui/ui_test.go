package ui_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/ui"
)

// newServer is the API server with the dashboard mounted, as tccd serve
// wires it; tokens turn authentication on. No coordinator: these tests
// reach no route that needs one.
func newServer(t *testing.T, tokens *tccdhttp.Tokens) *httptest.Server {
	t.Helper()
	h, err := ui.New()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tccdhttp.NewServer(nil, tccdhttp.ServerConfig{UI: h, Tokens: tokens}, nil))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, method, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestServeFiles: every file of the dashboard with its content type, the
// security headers and the caching headers; revalidation answers 304.
func TestServeFiles(t *testing.T) {
	srv := newServer(t, nil)
	for _, tt := range []struct{ path, ctype, contains string }{
		{"/ui/", "text/html; charset=utf-8", `<script type="module" src="app.js"></script>`},
		{"/ui/app.js", "text/javascript; charset=utf-8", "class Stream"},
		{"/ui/app.css", "text/css; charset=utf-8", ".badge"},
		{"/ui/favicon.svg", "image/svg+xml", "<svg"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(t, "GET", srv.URL+tt.path)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, tt.contains) {
				t.Fatalf("%d, body lacks %q", resp.StatusCode, tt.contains)
			}
			wantHeaders(t, resp, map[string]string{
				"Content-Type":            tt.ctype,
				"Content-Security-Policy": ui.ContentSecurityPolicy,
				"X-Content-Type-Options":  "nosniff",
				"X-Frame-Options":         "DENY",
				"Referrer-Policy":         "no-referrer",
				"Cache-Control":           "no-cache",
			})
			etag := resp.Header.Get("ETag")
			if !regexp.MustCompile(`^"[0-9a-f]{24}"$`).MatchString(etag) {
				t.Fatalf("ETag %q", etag)
			}
			if resp, body := get(t, "GET", srv.URL+tt.path, "If-None-Match", etag); resp.StatusCode != http.StatusNotModified || body != "" {
				t.Errorf("revalidation: %d %q", resp.StatusCode, body)
			}
			if resp, body := get(t, "HEAD", srv.URL+tt.path); resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("Content-Type") != tt.ctype {
				t.Errorf("HEAD: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Type"))
			}
		})
	}
}

func wantHeaders(t *testing.T, resp *http.Response, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}

// TestCSP: the policy allows nothing but the page's own origin, no inline
// script or style, and requires Trusted Types.
func TestCSP(t *testing.T) {
	dirs := map[string]string{}
	for _, d := range strings.Split(ui.ContentSecurityPolicy, ";") {
		f := strings.Fields(d)
		dirs[f[0]] = strings.Join(f[1:], " ")
	}
	want := map[string]string{
		"default-src": "'none'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self'", "connect-src": "'self'",
		"base-uri": "'none'", "form-action": "'none'", "frame-ancestors": "'none'",
		"require-trusted-types-for": "'script'", "trusted-types": "'none'",
	}
	for k, v := range want {
		if dirs[k] != v {
			t.Errorf("%s %q, want %q", k, dirs[k], v)
		}
	}
	if strings.Contains(ui.ContentSecurityPolicy, "unsafe") || strings.Contains(ui.ContentSecurityPolicy, "http") {
		t.Errorf("policy %q", ui.ContentSecurityPolicy)
	}
}

// TestNotFound: unknown files of the dashboard are 404 with the same
// headers; other methods are refused by the server; /ui goes to /ui/.
func TestNotFound(t *testing.T) {
	srv := newServer(t, nil)
	for _, p := range []string{"/ui/nope", "/ui/index.html", "/ui/static/app.js", "/ui/../api/v1/openapi.json/x", "/ui/app.js/"} {
		resp, body := get(t, "GET", srv.URL+p)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d %q", p, resp.StatusCode, body)
			continue
		}
		if strings.HasPrefix(p, "/ui/") && !strings.Contains(p, "..") {
			wantHeaders(t, resp, map[string]string{"Content-Type": "text/plain; charset=utf-8", "Content-Security-Policy": ui.ContentSecurityPolicy,
				"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})
		}
	}
	if resp, _ := get(t, "POST", srv.URL+"/ui/"); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("POST /ui/: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := get(t, "GET", srv.URL+"/ui"); resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Without the dashboard (--ui=false) there is nothing at /ui/.
	bare := httptest.NewServer(tccdhttp.NewServer(nil, tccdhttp.ServerConfig{}, nil))
	defer bare.Close()
	if resp, _ := get(t, "GET", bare.URL+"/ui/"); resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("GET /ui/ without the dashboard: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// TestAuth: with authentication on, the dashboard's files are open (they
// hold no data) while the API it reads still needs a token.
func TestAuth(t *testing.T) {
	tok, err := tccdhttp.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := tccdhttp.ParseTokens(strings.NewReader("ops admin " + tccdhttp.HashToken(tok) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, tokens)
	if resp, _ := get(t, "GET", srv.URL+"/ui/"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /ui/ without a token: %d", resp.StatusCode)
	}
	if resp, _ := get(t, "GET", srv.URL+"/ui/app.js", "Authorization", "Bearer nonsense"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /ui/app.js with a bad token: %d", resp.StatusCode)
	}
	for _, p := range []string{"/api/v1/transactions?limit=1", "/api/v1/events"} {
		if resp, _ := get(t, "GET", srv.URL+p); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d", p, resp.StatusCode)
		}
	}
}

// TestPageRules reads the dashboard's files: nothing is loaded from
// elsewhere, no inline script or style, no HTML built from strings, and
// the token is kept in sessionStorage only.
func TestPageRules(t *testing.T) {
	files, err := filepath.Glob("static/*")
	if err != nil || len(files) < 4 {
		t.Fatalf("static files: %v %v", files, err)
	}
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, m := range external.FindAllString(s, -1) {
			if m != "http://www.w3.org" { // the SVG namespace, an identifier
				t.Errorf("%s refers to %q: the dashboard loads nothing from elsewhere", f, m)
			}
		}
		switch filepath.Ext(f) {
		case ".html":
			for _, bad := range []string{"<style", " style=", "javascript:", " onclick", " onload", " onsubmit"} {
				if strings.Contains(s, bad) {
					t.Errorf("%s has %q: inline code or style (the CSP refuses it)", f, bad)
				}
			}
			for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(s, -1) {
				if !strings.Contains(m, `src="`) {
					t.Errorf("%s has an inline script %s", f, m)
				}
			}
		case ".css":
			if strings.Contains(s, "url(") {
				t.Errorf("%s loads a url()", f)
			}
		case ".js":
			for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
				"localStorage.", "document.cookie", "new EventSource"} {
				if strings.Contains(s, bad) {
					t.Errorf("%s uses %s", f, bad)
				}
			}
			if !strings.Contains(s, "sessionStorage") || !strings.Contains(s, "credentials: 'omit'") {
				t.Errorf("%s: the token belongs in sessionStorage, and no cookie is sent", f)
			}
		}
	}
}

// TestStatesInSync: the script's list of states is tccd.States.
func TestStatesInSync(t *testing.T) {
	b, err := os.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`const STATES = \[([^\]]*)\]`).FindSubmatch(b)
	if m == nil {
		t.Fatal("app.js has no STATES")
	}
	var got []string
	for _, q := range regexp.MustCompile(`'([a-z_]+)'`).FindAllSubmatch(m[1], -1) {
		got = append(got, string(q[1]))
	}
	var want []string
	for _, s := range tccd.States {
		want = append(want, string(s))
	}
	if !slices.Equal(got, want) {
		t.Errorf("app.js STATES %v, tccd.States %v", got, want)
	}
}
