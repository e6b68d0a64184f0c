package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"

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
	stream, streamErr := t.c.openEvents(ctx, url.Values{"transaction": {t.id}, "type": {api.EventState}})
	if stream != nil {
		defer stream.Body.Close()
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
	go func() { done <- readEvents(stream, events) }()
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

// openEvents opens the event stream with the given filters.
func (c *Client) openEvents(ctx context.Context, q url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(context.WithValue(ctx, txKey{}, (*Tx)(nil)), http.MethodGet, c.base+"/api/v1/events?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", api.MediaEventStream)
	for k, vs := range c.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); resp.StatusCode != http.StatusOK || mt != api.MediaEventStream {
		err := decodeError(resp, false)
		drain(resp)
		return nil, err
	}
	return resp, nil
}

// readEvents reads Server-Sent Events from resp and sends the data of
// each to out until the stream ends.
func readEvents(resp *http.Response, out chan<- api.Event) error {
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() > 0 {
				var ev api.Event
				if err := json.Unmarshal([]byte(data.String()), &ev); err == nil {
					out <- ev
				}
				data.Reset()
			}
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	return sc.Err()
}
