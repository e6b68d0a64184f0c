// Package ui is tccd's activity monitor: a web dashboard of the
// coordinator's transactions, served from the binary at /ui/.
//
// The page is plain HTML, CSS and JavaScript embedded with go:embed: no
// build step, nothing fetched from elsewhere, so it works offline and what
// is reviewed is what runs. It holds no data: its script reads the native
// API (GET /api/v1/transactions, /api/v1/events) with the operator's
// token, which it keeps in the tab's sessionStorage. It shows what the
// coordinator reports, and resolves a heuristic transaction with PUT
// /api/v1/transactions/{id}/resolve.
//
// Every answer carries a strict Content-Security-Policy: scripts and
// styles from the page's own origin only, no inline script, connections
// to its own origin only, Trusted Types required (the script never builds
// HTML from strings).
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is sent with every answer of the dashboard.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// contentTypes maps the extensions of the embedded files to their media
// types: a fixed table, not the system's MIME database, so the answers
// are the same on every machine.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// file is one embedded file, ready to serve.
type file struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the dashboard's files at the root of its paths ("/" is
// the page, "/app.js" its script): mount it under a prefix with
// http.StripPrefix. Unknown paths get 404. Files are revalidated on every
// load (Cache-Control: no-cache, with a strong ETag from their content),
// so a new tccd binary never leaves a browser on an old script.
type Handler struct {
	files map[string]file
}

// New returns the dashboard's handler.
func New() (*Handler, error) {
	h := &Handler{files: map[string]file{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		ctype, ok := contentTypes[path.Ext(p)]
		if !ok {
			return nil // not served: only known types go out
		}
		sum := sha256.Sum256(body)
		name := strings.TrimPrefix(p, "static")
		if name == "/index.html" {
			name = "/"
		}
		h.files[name] = file{body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the embedded files: %w", err)
	}
	if _, ok := h.files["/"]; !ok {
		return nil, fmt.Errorf("the embedded files lack index.html")
	}
	return h, nil
}

// ServeHTTP serves one file (GET and HEAD; the server's routes admit
// nothing else).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", ContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	hdr.Set("Cross-Origin-Resource-Policy", "same-origin")
	f, ok := h.files[r.URL.Path]
	if !ok {
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
		hdr.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("404: no such page of the activity monitor; it is at /ui/\n"))
		return
	}
	hdr.Set("Content-Type", f.ctype)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
