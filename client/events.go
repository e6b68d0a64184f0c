package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tccd/tccd/api"
)

// EventFilter selects the events of an event stream. The zero value
// selects every event the caller may see: with authentication on, a
// client sees only its own transactions' events, an admin all.
type EventFilter struct {
	// Transaction keeps only the events of this transaction.
	Transaction string
	// Types keeps only events of these types (api.EventState,
	// api.EventAttempt); lagged and gap events are always sent.
	Types []string
	// States keeps only state events into these states.
	States []string
	// After resumes a stream after the event whose seq it is (the
	// Last-Event-ID of Server-Sent Events): the events the coordinator
	// still keeps after it come first, preceded by a gap event if some
	// are gone. Zero means only events published from now on.
	After uint64
}

// query is f as the query of GET /api/v1/events.
func (f EventFilter) query() url.Values {
	q := url.Values{}
	if f.Transaction != "" {
		q.Set("transaction", f.Transaction)
	}
	for _, t := range f.Types {
		q.Add("type", t)
	}
	for _, s := range f.States {
		q.Add("state", s)
	}
	return q
}

// EventStream is an open stream of the coordinator's events, read with
// Next. It is not safe for concurrent use; Close may be called from
// another goroutine to end a Next that is waiting.
type EventStream struct {
	resp *http.Response
	sc   *bufio.Scanner
	data []byte
	last uint64
}

// ErrBadEvent is returned by Next for an event whose data is not the JSON
// of an api.Event; the stream can be read on.
var ErrBadEvent = errors.New("tccd: the coordinator sent an event that cannot be decoded")

// Events opens the coordinator's stream of events (GET /api/v1/events,
// Server-Sent Events). The stream has no deadline of its own: it ends
// when ctx ends, on Close, or when the coordinator ends it — after a
// lagged event (the reader fell behind) or at its shutdown. To resume
// without missing events, open it again with After set to LastSeq.
func (c *Client) Events(ctx context.Context, f EventFilter) (*EventStream, error) {
	var hdr http.Header
	if f.After > 0 {
		hdr = http.Header{api.HeaderLastEventID: {strconv.FormatUint(f.After, 10)}}
	}
	resp, err := c.openEvents(ctx, f.query(), hdr)
	if err != nil {
		return nil, err
	}
	return newEventStream(resp, f.After), nil
}

func newEventStream(resp *http.Response, after uint64) *EventStream {
	sc := bufio.NewScanner(resp.Body)
	// An event's data is one transaction's event: small; a megabyte bounds
	// a misbehaving server.
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	return &EventStream{resp: resp, sc: sc, last: after}
}

// Next waits for the next event and returns it. At the end of the stream
// it returns io.EOF. An event whose data cannot be decoded is returned as
// an error matching ErrBadEvent, with Data set; reading may go on.
func (s *EventStream) Next() (api.Event, error) {
	var data strings.Builder
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case line == "":
			// A blank line ends an event; one without data is nothing.
			if data.Len() == 0 {
				continue
			}
			s.data = []byte(data.String())
			var ev api.Event
			if err := json.Unmarshal(s.data, &ev); err != nil {
				return api.Event{}, fmt.Errorf("%w: %w", ErrBadEvent, err)
			}
			// A lagged event stands for an event this stream did not
			// deliver: earlier coordinators gave it that event's seq, and
			// resuming after it would skip that event. Only state and
			// attempt events read advance the resume point.
			if ev.Seq > 0 && ev.Type != api.EventLagged {
				s.last = ev.Seq
			}
			return ev, nil
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
		// id:, event: and comment lines: the data carries seq and type.
	}
	if err := s.sc.Err(); err != nil {
		return api.Event{}, fmt.Errorf("tccd: reading the event stream: %w", err)
	}
	return api.Event{}, io.EOF
}

// Data returns the data of the event Next last returned: its JSON as the
// coordinator sent it.
func (s *EventStream) Data() []byte { return s.data }

// LastSeq returns the seq of the last state or attempt event read, or the
// After the stream was opened with: reopen with After: LastSeq() to
// resume where this stream ended — after a lagged event too, which gets
// the events this stream missed (or a gap event if they are gone).
func (s *EventStream) LastSeq() uint64 { return s.last }

// Close ends the stream.
func (s *EventStream) Close() error { return s.resp.Body.Close() }
