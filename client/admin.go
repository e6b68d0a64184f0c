package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/tccd/tccd/api"
)

// ListFilter selects the transactions List returns.
type ListFilter struct {
	// State keeps only the transactions in this state ("" for all).
	State string
	// Limit is the size of the page, 1 to 1000; 0 means the
	// coordinator's default (50).
	Limit int
	// Cursor continues a listing: the NextCursor of the previous page.
	Cursor string
}

// List returns a page of transactions, newest first; its NextCursor, when
// not empty, continues the listing. With authentication on it needs an
// admin token (a client token gets an *Error with code forbidden). An
// unknown state or a limit out of range is an *Error with code invalid.
func (c *Client) List(ctx context.Context, f ListFilter) (*api.TransactionList, error) {
	q := url.Values{}
	if f.State != "" {
		q.Set("state", f.State)
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Cursor != "" {
		q.Set("cursor", f.Cursor)
	}
	path := "/api/v1/transactions"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out api.TransactionList
	r := request{method: http.MethodGet, path: path, retry503: true}
	if err := c.doJSON(ctx, r, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

// Resolve records how an operator settled a heuristic transaction by
// hand: state is "confirmed" or "cancelled", note says what was done
// (both are recorded, with the operator's token name). Nothing is sent
// to the participants. It needs an admin token. A transaction that is
// not heuristic is a *ConflictError, unless it was resolved to the same
// state before: Resolve may be repeated.
func (c *Client) Resolve(ctx context.Context, id, state, note string) (*api.Transaction, error) {
	var tx api.Transaction
	r := request{
		method: http.MethodPut, path: "/api/v1/transactions/" + url.PathEscape(id) + "/resolve",
		mediaType: api.MediaJSON, body: api.ResolveRequest{State: state, Note: note}, retry503: true,
	}
	if err := c.doJSON(ctx, r, &tx, http.StatusOK); err != nil {
		return nil, err
	}
	return &tx, nil
}

// Purge runs the coordinator's retention purge now and returns how many
// finished transactions it removed. It needs an admin token.
func (c *Client) Purge(ctx context.Context) (int, error) {
	var out api.PurgeResult
	r := request{method: http.MethodPost, path: "/api/v1/admin/purge"}
	if err := c.doJSON(ctx, r, &out, http.StatusOK); err != nil {
		return 0, err
	}
	return out.Purged, nil
}
