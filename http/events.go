package http

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
)

// Defaults of the event stream.
const (
	DefaultMaxStreams      = 8
	DefaultStreamKeepAlive = 15 * time.Second
)

// streams counts the open event streams of each client, to bound them.
type streams struct {
	mu   sync.Mutex
	open map[string]int
	// done is closed when the server shuts down: streams end.
	done chan struct{}
	once sync.Once
}

func newStreams() *streams {
	return &streams{open: make(map[string]int), done: make(chan struct{})}
}

// enter counts a new stream of client key; false when it has max open.
func (s *streams) enter(key string, max int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[key] >= max {
		return false
	}
	s.open[key]++
	return true
}

func (s *streams) leave(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[key]--; s.open[key] <= 0 {
		delete(s.open, key)
	}
}

func (s *streams) close() { s.once.Do(func() { close(s.done) }) }

// events serves GET /api/v1/events: the coordinator's events as
// Server-Sent Events (id: seq, event: type, data: the JSON), filtered by
// ?transaction=, ?type= and ?state= (repeatable), resumed after the
// Last-Event-ID header (or ?last_event_id=; 0 replays every event still
// kept). A client sees only its own
// transactions' events, an admin all. A comment line goes out every
// keep-alive period; a client that falls behind gets a lagged event and
// the stream ends. Lagged and gap events have no id: line, so a client
// resumes after the last event it received (see tccd.EventLagged).
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := tccd.EventFilter{Transaction: q.Get("transaction")}
	for _, v := range q["type"] {
		t := tccd.EventType(v)
		if t != tccd.EventState && t != tccd.EventAttempt {
			return tccd.FieldError("type", "type must be %s or %s, not %q", tccd.EventState, tccd.EventAttempt, v)
		}
		f.Types = append(f.Types, t)
	}
	for _, v := range q["state"] {
		st, err := tccd.ParseState(v)
		if err != nil {
			return tccd.FieldError("state", "state must be one of %v, not %q", tccd.States, v)
		}
		f.States = append(f.States, st)
	}
	var after uint64
	last := r.Header.Get(api.HeaderLastEventID)
	if last == "" {
		last = q.Get("last_event_id")
	}
	if last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			return tccd.FieldError("last_event_id", "Last-Event-ID must be an event's seq, not %q", last)
		}
		after = n
		if n == 0 {
			// Seqs start at 1, so no stream ever sent id 0: resuming
			// "after 0" asks for everything still kept.
			after = tccd.FromOldest
		}
	}
	key := "addr " + remoteHost(r)
	if p, ok := tccd.PrincipalFrom(r.Context()); ok {
		key = "token " + p.Name
		if p.Role != tccd.RoleAdmin {
			f.Owner, f.OnlyOwner = p.Name, true
		}
	}
	if !s.streams.enter(key, s.cfg.MaxStreams) {
		w.Header().Set("Retry-After", "5")
		return tccd.Errorf(tccd.ETooManyRequests, "too many event streams: at most %d at once per client", s.cfg.MaxStreams)
	}
	defer s.streams.leave(key)
	sub, err := s.coord.Events().Subscribe(f, after)
	if err != nil {
		return tccd.Errorf(tccd.EUnavailable, "cannot subscribe to events: %v", err)
	}
	defer sub.Close()

	// A stream outlives the server's write timeout.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", api.MediaEventStream)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no") // tell proxies not to buffer
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 4096)
	flush := func() bool {
		if bw.Flush() != nil {
			return false
		}
		return rc.Flush() == nil
	}
	for _, ev := range sub.Replay {
		writeSSE(bw, ev)
	}
	if !flush() {
		return nil
	}
	keep := time.NewTicker(s.cfg.StreamKeepAlive)
	defer keep.Stop()
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				return nil // lagged (sent) or closed
			}
			writeSSE(bw, ev)
			// Write what is queued before flushing: one flush for a burst.
			for more := true; more; {
				select {
				case ev, ok := <-sub.C:
					if !ok {
						flush()
						return nil
					}
					writeSSE(bw, ev)
				default:
					more = false
				}
			}
			if !flush() {
				return nil
			}
		case <-keep.C:
			_, _ = bw.WriteString(": keep-alive\n\n")
			if !flush() {
				return nil
			}
		case <-r.Context().Done():
			return nil
		case <-s.streams.done:
			return nil
		}
	}
}

// writeSSE writes one event in the Server-Sent Events format.
func writeSSE(w *bufio.Writer, ev tccd.Event) {
	data, _ := json.Marshal(WireEvent(ev))
	if ev.Seq > 0 {
		_, _ = w.WriteString("id: ")
		_, _ = w.WriteString(strconv.FormatUint(ev.Seq, 10))
		_ = w.WriteByte('\n')
	}
	_, _ = w.WriteString("event: ")
	_, _ = w.WriteString(string(ev.Type))
	_, _ = w.WriteString("\ndata: ")
	_, _ = w.Write(data)
	_, _ = w.WriteString("\n\n")
}

// WireEvent is the JSON form of an event.
func WireEvent(ev tccd.Event) api.Event {
	out := api.Event{Seq: ev.Seq, Time: ev.Time.UTC(), Type: string(ev.Type), Transaction: ev.Transaction}
	switch ev.Type {
	case tccd.EventState:
		prev := string(ev.Previous)
		out.State, out.Previous, out.Reason = string(ev.State), &prev, string(ev.Reason)
	case tccd.EventAttempt:
		status, errText := ev.Status, ev.Error
		out.Participant, out.Phase, out.Attempt = ev.Participant, ev.Phase.String(), ev.Attempt
		out.Status, out.Error = &status, &errText
		if !ev.NextRetry.IsZero() {
			t := ev.NextRetry.UTC()
			out.NextRetry = &t
		}
	}
	return out
}
