package http

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
)

// sameAsEncodingJSON checks that appendTransaction and encoding/json
// render t to JSON that reads back to the same value.
func sameAsEncodingJSON(t *testing.T, tx Transaction) {
	t.Helper()
	fast := appendTransaction(nil, &tx)
	slow, err := json.Marshal(tx)
	if err != nil {
		t.Fatal(err)
	}
	var a, b Transaction
	if err := json.Unmarshal(fast, &a); err != nil {
		t.Fatalf("appendTransaction wrote invalid JSON %s: %v", fast, err)
	}
	if err := json.Unmarshal(slow, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("appendTransaction reads back as\n%+v\nencoding/json as\n%+v\n(%s\nvs %s)", a, b, fast, slow)
	}
	// The same members are present (encoding/json omits the same ones).
	var ma, mb map[string]any
	_ = json.Unmarshal(fast, &ma)
	_ = json.Unmarshal(slow, &mb)
	if !reflect.DeepEqual(ma, mb) {
		t.Fatalf("members differ:\n%s\n%s", fast, slow)
	}
}

func TestAppendTransaction(t *testing.T) {
	at := time.Date(2026, 11, 21, 8, 0, 0, 123456789, time.UTC)
	at2 := at.Add(time.Second)
	d := 0.125
	tiny := 1e-7
	for name, tx := range map[string]Transaction{
		"minimal": {ID: "x", Protocol: "native", State: "active", CreatedAt: at, UpdatedAt: at, Participants: []Participant{}},
		"full": {
			ID: "01J", Protocol: "native", Name: "trip <&> \"quoted\"\n", Labels: map[string]string{"b": "2", "a": "\u2028", "\x01": "\xff"},
			State: "heuristic", Reason: "mixed_outcome", Timeout: "30s", Deadline: &at2, CreatedAt: at, UpdatedAt: at2,
			DecidedAt: &at, FinishedAt: &at2, CreatedBy: "ops", ResolvedBy: "admin", ResolutionNote: "fixed by hand",
			Notify: "https://shop.example/outcome?x=<1>", Barrier: true, Round: &api.Round{N: 2, Committed: true},
			Notification: &api.Notification{State: "pending", Attempts: 3, DeliveryID: "01K", LastStatus: 503, LastError: "HTTP 503", LastAttemptAt: &at2},
			Participants: []Participant{
				{URI: "http://a/r/1?x=<1>&y=2", Expires: at, State: "confirmed", Attempts: 2, LastStatus: 204, LastError: "", LastAttemptAt: &at, LastDurationMS: &d, Style: "compensate", Compensate: "http://a/undo"},
				{URI: "https://b/r/2", Expires: at2, State: "failed", Attempts: 1, LastStatus: 500, LastError: "boom\t", LastDurationMS: &tiny},
				{URI: "http://c/", Expires: at, State: "pending"},
			},
		},
		"notification delivered": {ID: "z", Protocol: "native", State: "confirmed", CreatedAt: at, UpdatedAt: at, Notify: "http://n/",
			Notification: &api.Notification{State: "delivered", Attempts: 1}, Participants: []Participant{}},
		"zero times and offsets": {ID: "y", Protocol: "atomikos", State: "confirmed", CreatedAt: time.Unix(0, 0).UTC(), UpdatedAt: at.In(time.FixedZone("x", 3600)), Participants: []Participant{}},
	} {
		t.Run(name, func(t *testing.T) { sameAsEncodingJSON(t, tx) })
	}
}

// FuzzAppendTransaction: for any strings and numbers, the hand-written
// rendering reads back as encoding/json's does.
func FuzzAppendTransaction(f *testing.F) {
	f.Add("trip", "k", "v", "http://a/r/1", "error <x>", int64(1732176000123456789), 2, 0.5)
	f.Add("\xff\x00\u2029", "", "\"", "\\", "", int64(0), 0, 1e-9)
	f.Fuzz(func(t *testing.T, name, key, value, uri, lastErr string, nanos int64, attempts int, ms float64) {
		if ms != ms || ms > 1e300 || ms < -1e300 {
			return // encoding/json refuses NaN and infinities; durations are finite
		}
		at := time.Unix(0, nanos).UTC()
		tx := Transaction{
			ID: name, Protocol: "native", Name: name, Labels: map[string]string{key: value},
			State: "active", CreatedAt: at, UpdatedAt: at, Deadline: &at, CreatedBy: key, Notify: lastErr,
			Notification: &api.Notification{State: value, Attempts: attempts, LastError: lastErr, LastAttemptAt: &at},
			Participants: []Participant{{URI: uri, Expires: at, State: "pending", Attempts: attempts, LastStatus: attempts, LastError: lastErr, LastDurationMS: &ms}},
		}
		sameAsEncodingJSON(t, tx)
	})
}
