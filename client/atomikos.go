package client

import (
	"context"
	"net/http"

	"github.com/tccd/tccd/api"
)

// Confirm confirms a set of participant links in one call, with the
// Atomikos protocol's PUT /coordinator/confirm. The set identifies the
// transaction: repeating the call with the same links is safe and gives
// the same answer.
//
// It returns nil once every participant confirmed (also for no links);
// an error matching ErrTimedOut when the coordinator cancelled them all
// instead; a *HeuristicError (without participant detail, which this
// protocol does not give) when some confirmed and some did not; an *Error
// with the coordinator's message for a bad request (400). While the
// outcome is not known yet (503) the request is repeated, honouring
// Retry-After, until ctx ends; the error then wraps ctx.Err().
func (c *Client) Confirm(ctx context.Context, links ...Link) error {
	return c.oneShot(ctx, "/coordinator/confirm", links)
}

// Cancel cancels a set of participant links in one call (PUT
// /coordinator/cancel). It returns nil once the set is cancelled, or
// decided to cancel with no participant that may have confirmed. It
// never undoes a confirmation: for a set being confirmed or confirmed it
// returns a *ConflictError (ErrConflict); a *HeuristicError when a
// participant refused to cancel or may have confirmed. Other errors as
// for Confirm.
func (c *Client) Cancel(ctx context.Context, links ...Link) error {
	return c.oneShot(ctx, "/coordinator/cancel", links)
}

func (c *Client) oneShot(ctx context.Context, path string, links []Link) error {
	body := api.AtomikosRequest{ParticipantLinks: make([]api.Link, len(links))}
	for i, l := range links {
		body.ParticipantLinks[i] = l.wire()
	}
	r := request{
		method: http.MethodPut, path: path, mediaType: api.MediaTCCJSON, body: body,
		retry503: true, atomikos: true,
	}
	resp, err := c.do(ctx, r, http.StatusNoContent, http.StatusOK)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}
