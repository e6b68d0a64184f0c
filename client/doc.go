// Package client is the Go SDK for the service that starts and ends a TCC
// transaction (the initiator), and for a participant that calls further
// participants on the transaction's behalf.
//
// It depends on the standard library and on package
// github.com/tccd/tccd/api only: linking it does not pull in the
// coordinator, its store engine or any database driver.
//
// # Two ways to use the coordinator
//
// One-shot, as in the Atomikos "TCC for REST" protocol: collect the
// participant links yourself and hand them over in one call.
//
//	c, _ := client.New("http://127.0.0.1:8420")
//	err := c.Confirm(ctx, client.Link{URI: uri1, Expires: exp1}, client.Link{URI: uri2, Expires: exp2})
//
// Registered, with the native API: begin a transaction, let participants
// be enlisted as the business process goes, then confirm or cancel it.
//
//	tx, _ := c.Begin(ctx, client.WithTimeout(2*time.Minute), client.WithName("trip-42"))
//	hc := c.WrapHTTPClient(nil)
//	req, _ := http.NewRequestWithContext(client.NewContext(ctx, tx), "POST", "http://swiss/booking", body)
//	resp, err := hc.Do(req)   // the reservation in the answer is enlisted before Do returns
//	...
//	t, err := tx.Confirm(ctx)
//
// # Errors
//
// Errors from the coordinator are typed so that a caller can branch on them
// with errors.Is and errors.As:
//
//   - ErrTimedOut: asked to confirm, the coordinator cancelled everything
//     instead (a participant had cancelled, or a link expired or expires too
//     soon). Native API: 409 with code timed_out; Atomikos API: 404.
//   - *HeuristicError (errors.Is(err, ErrHeuristic)): the participants did
//     not all end the same way. On the native API it carries the
//     per-participant outcome; the Atomikos API gives no detail.
//   - *ConflictError (errors.Is(err, ErrConflict)): the transaction's state
//     does not allow the request; State is the current state.
//   - ErrNotFound: no transaction has that id.
//   - ErrInProgress: the context ended while the coordinator was still
//     settling a decided transaction; it will finish without you.
//
// Every error from the coordinator is, or wraps, an *Error with the HTTP
// status, the stable code (api.Code*) and, for the native API, the decoded
// problem document (api.Problem).
//
// # Context propagation
//
// As Oracle MicroTx does it, the transaction travels with the calls the
// initiator makes to its participants, and the participants' reservations
// travel back in the answers. Put a *Tx in a request's context with
// NewContext and send the request through the RoundTripper of
// (*Client).Transport (or an *http.Client from (*Client).WrapHTTPClient).
// The request then carries
//
//	Link: <http://coordinator/api/v1/transactions/{id}>; rel="tcc-transaction"
//	Tcc-Transaction-Id: {id}
//
// (api.RelTransaction, api.HeaderTransactionID), and these participant
// links are collected from the response and enlisted with the coordinator
// before the round trip returns:
//
//   - a Link header with rel="tcc" (api.RelParticipant) and an expires
//     parameter, an RFC 3339 date-time:
//     Link: <http://svc/booking/42>; rel="tcc"; expires="2026-11-21T10:15:54Z"
//   - a Link header with MicroTx's
//     rel="https://otmm.oracle.com/tcc-participant" (api.MicroTxRelParticipant)
//     and a timeLimit parameter (api.MicroTxParamTimeLimit): an RFC 3339
//     date-time, or a time from now as a number of seconds ("30", "2.5") or
//     a Go duration ("30s", "1m30s"); an expires parameter is also accepted;
//   - for a 2xx application/json answer, a body
//     {"participantLink":{"uri":"…","expires":"…"}} (at most 1 MiB is read,
//     and the body is given back to the caller unread);
//   - a 201 Created answer with a Location header and a Tcc-Expires header
//     (api.HeaderExpires, RFC 3339); a relative Location is resolved against
//     the request URL.
//
// Link headers are read on every answer, whatever its status: a
// reservation the participant reports is put under the coordinator's
// control. Relative link targets are resolved against the request URL. The
// same URI reported twice (testpart's answers carry all of the styles at
// once) is enlisted once. Date-times may carry any offset (Z, +01:00 or
// +0100) and fractional seconds.
//
// If a link cannot be read (no expiry, a bad date) or enlisting fails, the
// round trip fails: the response body is closed and RoundTrip returns the
// error, so the caller learns that its reservation is not covered (it will
// cancel itself at its expiry).
//
// Headers set with WithHeader (a bearer token, say) go to the coordinator
// only, never to participants.
//
// # Participants that call participants
//
// A participant A that itself calls B (which calls C) wraps its handler
// with Middleware. The middleware reads the inbound transaction headers
// (ours, or MicroTx's rel="https://otmm.oracle.com/tcc-transaction"), puts
// a *Tx in the request context, and A's outgoing calls made through a
// wrapped client propagate it further. In A the links of B's and C's
// reservations are collected instead of enlisted (A does not talk to the
// coordinator) and appended to A's own answer as
//
//	Link: <uri>; rel="tcc"; expires="2026-11-21T10:15:54Z"
//
// so that they reach the initiator, whose transport enlists them.
package client
