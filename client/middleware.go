package client

import (
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/tccd/tccd/api"
)

// Middleware returns net/http middleware for a participant that itself
// calls further participants (A in A → B → C).
//
// For a request that carries a transaction — a Link header with
// rel="tcc-transaction" or MicroTx's
// rel="https://otmm.oracle.com/tcc-transaction", and/or a
// Tcc-Transaction-Id header — it puts a *Tx in the request context. Calls
// the handler makes with that context through a wrapped client
// ((*Client).WrapHTTPClient or Transport) pass the transaction on, and the
// participant links of their answers are collected instead of enlisted:
// the handler's answer gets one
//
//	Link: <uri>; rel="tcc"; expires="2026-11-21T10:15:54Z"
//
// per collected link, added when the handler writes the header (or its
// first byte, or flushes, or returns). Links collected after that can no
// longer be passed on: the call that reports one then fails (see
// Transport), so the handler learns it.
//
// The transaction id is Tcc-Transaction-Id, or else the last path segment
// of the Link target; the URL passed on is the Link target, or else c's
// transaction URL for the id. c may be nil when requests always carry the
// Link. Requests without a transaction pass through untouched.
func Middleware(c *Client) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tx := inboundTx(c, r.Header)
			if tx == nil {
				next.ServeHTTP(w, r)
				return
			}
			lw := &linkWriter{ResponseWriter: w, col: tx.col}
			next.ServeHTTP(lw, r.WithContext(NewContext(r.Context(), tx)))
			lw.seal()
		})
	}
}

// inboundTx builds the propagated Tx of a request, or nil.
func inboundTx(c *Client, h http.Header) *Tx {
	id := strings.TrimSpace(h.Get(api.HeaderTransactionID))
	txURL := ""
	for _, l := range parseLinkHeader(h.Values("Link")) {
		if l.hasRel(api.RelTransaction) || l.hasRel(api.MicroTxRelTransaction) {
			txURL = l.Target
			break
		}
	}
	if id == "" && txURL != "" {
		if u, err := url.Parse(txURL); err == nil {
			if seg := path.Base(u.Path); seg != "/" && seg != "." {
				id = seg
			}
		}
	}
	if id == "" {
		return nil
	}
	if txURL == "" && c != nil {
		txURL = c.txURL(id)
	}
	return &Tx{c: c, id: id, url: txURL, col: &collector{}}
}

// linkWriter adds the collected links to the answer's header before it is
// written.
type linkWriter struct {
	http.ResponseWriter
	col *collector
}

// seal adds the collected links to the header, once.
func (w *linkWriter) seal() {
	links, first := w.col.seal()
	if !first {
		return
	}
	h := w.ResponseWriter.Header()
	for _, l := range links {
		h.Add("Link", formatLink(l))
	}
}

func (w *linkWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.seal()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *linkWriter) Write(b []byte) (int, error) {
	w.seal()
	return w.ResponseWriter.Write(b)
}

// Flush writes the header (with the links) and flushes, when the
// underlying writer can.
func (w *linkWriter) Flush() {
	w.seal()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *linkWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
