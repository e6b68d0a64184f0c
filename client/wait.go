package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/tccd/tccd/api"
)

// Wait waits until the transaction reaches a final state (confirmed,
// cancelled or heuristic) and returns it; which state it reached is the
// caller's to read. It follows the coordinator's event stream (GET
// /api/v1/events) and falls back to polling when the stream is not
// available. If ctx ends first it returns the transaction as last seen
// and an error matching both ErrInProgress and ctx.Err().
func (t *Tx) Wait(ctx context.Context) (*api.Transaction, error) {
	if t.col != nil {
		return nil, errPropagated
	}
	// Subscribe first, then look: a change between the two is not missed.
	stream, streamErr := t.c.Events(ctx, EventFilter{Transaction: t.id, Types: []string{api.EventState}})
	if stream != nil {
		defer stream.Close()
	}
	cur, err := t.c.Get(ctx, t.id)
	if err != nil {
		return nil, err
	}
	if finalState(cur.State) || streamErr != nil {
		return t.waitPolling(ctx, cur)
	}
	events := make(chan api.Event)
	done := make(chan error, 1)
	// quit stops the reader when Wait returns while it holds an event.
	quit := make(chan struct{})
	defer close(quit)
	go func() { done <- readEvents(stream, events, quit) }()
	for {
		select {
		case ev := <-events:
			if ev.Type == api.EventState && !finalState(ev.State) {
				continue
			}
			// A final state, or events missed (lagged, gap): look.
			if cur, err = t.c.Get(ctx, t.id); err != nil {
				return nil, err
			}
			if finalState(cur.State) {
				return cur, nil
			}
			if ev.Type == api.EventLagged {
				return t.waitPolling(ctx, cur)
			}
		case <-done:
			// The stream ended (the coordinator restarted, say): poll.
			return t.waitPolling(ctx, cur)
		case <-ctx.Done():
			return cur, fmt.Errorf("%w (transaction %s is %s): %w", ErrInProgress, t.id, cur.State, ctx.Err())
		}
	}
}

// waitPolling polls the transaction until it is final.
func (t *Tx) waitPolling(ctx context.Context, cur *api.Transaction) (*api.Transaction, error) {
	for !finalState(cur.State) {
		if err := sleep(ctx, t.c.poll); err != nil {
			return cur, fmt.Errorf("%w (transaction %s is %s): %w", ErrInProgress, t.id, cur.State, err)
		}
		next, err := t.c.Get(ctx, t.id)
		if err != nil {
			return cur, fmt.Errorf("%w (transaction %s is %s): %w", ErrInProgress, t.id, cur.State, err)
		}
		cur = next
	}
	return cur, nil
}

// openEvents opens the event stream with the given filters and headers.
func (c *Client) openEvents(ctx context.Context, q url.Values, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(context.WithValue(ctx, txKey{}, (*Tx)(nil)), http.MethodGet, c.base+"/api/v1/events?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("tccd: %w", err)
	}
	req.Header.Set("Accept", api.MediaEventStream)
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	for k, vs := range c.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("tccd: GET /api/v1/events: %w", err)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); resp.StatusCode != http.StatusOK || mt != api.MediaEventStream {
		err := decodeError(resp, false)
		drain(resp)
		return nil, err
	}
	return resp, nil
}

// readEvents sends the events of s to out until the stream ends or quit
// is closed. Events that cannot be decoded are skipped.
func readEvents(s *EventStream, out chan<- api.Event, quit <-chan struct{}) error {
	for {
		ev, err := s.Next()
		switch {
		case errors.Is(err, ErrBadEvent):
			continue
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		}
		select {
		case out <- ev:
		case <-quit:
			return nil
		}
	}
}
