package client

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tccd/tccd/api"
)

// Transport returns an http.RoundTripper over base (http.DefaultTransport
// when nil) that, for a request whose context carries a *Tx (NewContext):
//
//   - adds "Link: <{transaction URL}>; rel="tcc-transaction"" and
//     "Tcc-Transaction-Id: {id}" to the request (on a copy: the request
//     itself is not changed);
//   - collects the participant links of the answer (see the package
//     documentation for the four forms understood) and enlists each with
//     the transaction (tx.Enlist) before returning the answer.
//
// If a reported link cannot be read or enlisting fails, the answer's body
// is closed and RoundTrip returns the error: the reservation is not
// covered by the transaction (it cancels itself at its expiry). Requests
// without a *Tx pass through untouched. Headers of WithHeader are not
// added: they are for the coordinator.
func (c *Client) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{base: base}
}

// WrapHTTPClient returns a copy of hc (a new *http.Client when nil) whose
// Transport is (*Client).Transport over hc's.
func (c *Client) WrapHTTPClient(hc *http.Client) *http.Client {
	out := &http.Client{}
	if hc != nil {
		*out = *hc
	}
	out.Transport = c.Transport(out.Transport)
	return out
}

type transport struct {
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	tx, ok := FromContext(req.Context())
	if !ok {
		return t.base.RoundTrip(req)
	}
	out := req.Clone(req.Context())
	if tx.url != "" {
		out.Header.Add("Link", formatTxLink(tx.url))
	}
	out.Header.Set(api.HeaderTransactionID, tx.id)
	resp, err := t.base.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	links, err := collectLinks(resp, req.URL, time.Now())
	if err != nil {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("tccd: cannot read the participant link in the answer of %s: %w", req.URL.Redacted(), err)
	}
	for _, l := range links {
		if err := tx.Enlist(req.Context(), l); err != nil {
			_ = resp.Body.Close()
			return nil, fmt.Errorf("tccd: the reservation %s is not covered by transaction %s: %w", l.URI, tx.id, err)
		}
	}
	return resp, nil
}
