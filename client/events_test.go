package client_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
)

// TestEventStreamResumeAfterLagged: a stream that ends with a lagged
// event is resumed with After: LastSeq() and gets every event it missed,
// each event once across the two streams — whether the lagged event has
// no id (as the coordinator sends it) or, as earlier coordinators sent
// it, the seq of the event it replaced.
func TestEventStreamResumeAfterLagged(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		lagged string // the lagged event, in place of event 3
	}{
		{"no id", "event: lagged\ndata: {\"time\":\"2030-01-01T00:00:00Z\",\"type\":\"lagged\"}\n\n"},
		{"the id of the dropped event", "id: 3\nevent: lagged\ndata: {\"seq\":3,\"time\":\"2030-01-01T00:00:00Z\",\"type\":\"lagged\"}\n\n"},
	}
	event := func(seq int) string {
		return fmt.Sprintf("id: %d\nevent: state\ndata: {\"seq\":%d,\"time\":\"2030-01-01T00:00:00Z\",\"type\":\"state\",\"state\":\"active\"}\n\n", seq, seq)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// The coordinator: events 1 and 2 then lagged to a new stream;
			// to one that resumes, the events 1 to 5 after its Last-Event-ID.
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", api.MediaEventStream)
				last := r.Header.Get(api.HeaderLastEventID)
				if last == "" {
					io.WriteString(w, event(1)+event(2)+tt.lagged)
					return
				}
				after, err := strconv.Atoi(last)
				if err != nil {
					t.Errorf("Last-Event-ID %q", last)
				}
				for seq := after + 1; seq <= 5; seq++ {
					io.WriteString(w, event(seq))
				}
			}))
			defer srv.Close()
			c, err := client.New(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			got := map[uint64]int{}
			read := func(s *client.EventStream) (lagged bool) {
				defer s.Close()
				for {
					ev, err := s.Next()
					if errors.Is(err, io.EOF) {
						return lagged
					}
					if err != nil {
						t.Fatal(err)
					}
					if ev.Type == api.EventLagged {
						lagged = true
					} else {
						got[ev.Seq]++
					}
				}
			}
			first, err := c.Events(testCtx(t), client.EventFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if !read(first) {
				t.Fatal("no lagged event")
			}
			if first.LastSeq() != 2 {
				t.Errorf("LastSeq after the lagged event: %d, want 2, the last event read", first.LastSeq())
			}
			second, err := c.Events(testCtx(t), client.EventFilter{After: first.LastSeq()})
			if err != nil {
				t.Fatal(err)
			}
			read(second)
			var counts []string
			for seq := uint64(1); seq <= 5; seq++ {
				counts = append(counts, fmt.Sprintf("%d:%d", seq, got[seq]))
			}
			if want := "1:1 2:1 3:1 4:1 5:1"; strings.Join(counts, " ") != want || len(got) != 5 {
				t.Errorf("events received (seq:times) %v, want %s", counts, want)
			}
		})
	}
}
