package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
)

func TestTxFormatWhen(t *testing.T) {
	t.Parallel()
	loc := time.FixedZone("UTC+1", 3600)
	f := txFormat{now: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC), loc: loc}
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "-"},
		{time.Date(2026, 12, 3, 9, 30, 5, 0, time.UTC), "10:30:05"},
		{time.Date(2026, 12, 2, 23, 30, 0, 0, time.UTC), "00:30:00"}, // today where the reader is
		{time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC), "Nov 20 09:00"},
		{time.Date(2025, 12, 3, 9, 0, 0, 0, time.UTC), "2025-12-03"},
	}
	for _, tt := range tests {
		if got := f.when(tt.t); got != tt.want {
			t.Errorf("when(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

func TestTxFormatEvent(t *testing.T) {
	t.Parallel()
	f := txFormat{now: time.Now(), loc: time.UTC}
	at := time.Date(2026, 12, 3, 10, 0, 0, 123e6, time.UTC)
	str := func(s string) *string { return &s }
	status := func(n int) *int { return &n }
	next := at.Add(time.Second)
	tests := []struct {
		ev   api.Event
		want string
	}{
		{api.Event{Time: at, Type: api.EventState, Transaction: "T1", State: "active", Previous: str("")},
			"10:00:00.123  T1                          state    active\n"},
		{api.Event{Time: at, Type: api.EventState, Transaction: "T1", State: "confirming", Previous: str("active"), Reason: "requested"},
			"10:00:00.123  T1                          state    active → confirming (requested)\n"},
		{api.Event{Time: at, Type: api.EventAttempt, Transaction: "T1", Participant: "http://p/r/1", Phase: "confirm", Attempt: 2,
			Status: status(503), Error: str("busy\nnow"), NextRetry: &next},
			"10:00:00.123  T1                          attempt  confirm #2 http://p/r/1 → 503: busy now, again at 10:00:01.123\n"},
		{api.Event{Time: at, Type: api.EventAttempt, Transaction: "T1", Participant: "http://p/r/1", Phase: "cancel", Attempt: 1, Status: status(0), Error: str("connection refused")},
			"10:00:00.123  T1                          attempt  cancel #1 http://p/r/1 → no answer: connection refused\n"},
		{api.Event{Time: at, Type: api.EventGap}, "10:00:00.123  -                           gap      events were missed: the coordinator no longer keeps them\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		f.event(&b, tt.ev)
		if b.String() != tt.want {
			t.Errorf("event %+v:\n%q\nwant\n%q", tt.ev, b.String(), tt.want)
		}
	}
}
