package pebble

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd"
)

// TestDecodeFormatV1 reads a record written by the format-1 encoder (the
// bytes were saved before format 2 existed): stores written before the
// upgrade stay readable, with the format-2 fields empty.
func TestDecodeFormatV1(t *testing.T) {
	v, err := os.ReadFile("testdata/record-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	if v[17] != formatV1 {
		t.Fatalf("golden record has format %d, want 1", v[17])
	}
	got, err := decode(v)
	if err != nil {
		t.Fatalf("decode format 1: %v", err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	want := &tccd.Transaction{
		ID: "01J9Z3K8Q4V7T2X6M5N0P1R2S3", Protocol: tccd.ProtocolNative, Name: "trip", Labels: map[string]string{"team": "travel"},
		State: tccd.StateHeuristic, Reason: tccd.ReasonMixedOutcome, Timeout: 30 * time.Second,
		Deadline: now.Add(30 * time.Second), CreatedAt: now, UpdatedAt: now.Add(3 * time.Second),
		DecidedAt: now.Add(time.Second), FinishedAt: now.Add(3 * time.Second),
		Owner: "node-1", LeaseUntil: now.Add(time.Minute), Version: 7,
		Participants: []tccd.Participant{
			{URI: "http://127.0.0.1:1/a", Expires: now.Add(time.Hour), State: tccd.ParticipantConfirmed, Attempts: 1, LastStatus: 204, LastAttemptAt: now.Add(time.Second), LastDuration: time.Millisecond},
			{URI: "https://127.0.0.1:2/b", Expires: now.Add(2 * time.Hour), State: tccd.ParticipantFailed, Attempts: 3, LastStatus: 422, LastError: "HTTP 422", LastAttemptAt: now.Add(2 * time.Second), LastDuration: 1500 * time.Microsecond},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("format 1 decodes to\n %+v\nwant\n %+v", got, want)
	}

	// Written again, it is format 3 and round-trips, with the new fields.
	got.CreatedBy, got.ResolvedBy, got.ResolutionNote = "billing", "ops", "refunded by hand"
	got.State, got.Reason = tccd.StateConfirmed, tccd.ReasonResolved
	v3, err := encode(got, 8)
	if err != nil {
		t.Fatal(err)
	}
	if v3[17] != formatV3 {
		t.Fatalf("encode wrote format %d, want 3", v3[17])
	}
	again, err := decode(v3)
	if err != nil {
		t.Fatal(err)
	}
	got.Version = 8
	if !reflect.DeepEqual(again, got) {
		t.Fatalf("format 3 round trip:\n %+v\nwant\n %+v", again, got)
	}
	// Format 2 is format 3 without the tagged fields (two empty counts).
	v2 := append([]byte(nil), v3[:len(v3)-2]...)
	v2[17] = formatV2
	if again, err = decode(v2); err != nil || !reflect.DeepEqual(again, got) {
		t.Fatalf("format 2: %+v, %v", again, err)
	}
	// The tagged fields, and the flag of a pending notification.
	got.Notify = "https://shop.example/tcc-outcome"
	got.Notification = tccd.Notification{State: tccd.NotificationPending, DeliveryID: "d-1", Attempts: 2, LastStatus: 503, LastError: "HTTP 503", LastAttemptAt: now}
	v3, err = encode(got, 8)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := decodeHeader(v3); !h.pending {
		t.Error("a pending notification is not flagged in the header")
	}
	if again, err = decode(v3); err != nil || !reflect.DeepEqual(again, got) {
		t.Fatalf("tagged fields round trip: %+v, %v", again, err)
	}
	// A tag this version does not know is an error, not a silent loss:
	// the empty tail (no tag, no participant field) becomes one tag 99.
	unknown := append(append([]byte(nil), v2...), 1, 99, 1, 'x', 0)
	unknown[17] = formatV3
	if _, err := decode(unknown); err == nil || !strings.Contains(err.Error(), "unknown field tag 99") {
		t.Fatalf("unknown tag: %v", err)
	}
	// A format-1 record with trailing bytes is corrupt: the three strings
	// are read only in format 2.
	bad := append(append([]byte(nil), v...), 0, 0, 0)
	if _, err := decode(bad); err == nil {
		t.Fatal("format 1 with trailing bytes decoded")
	}
}

// FuzzDecode: a stored record that is corrupt must give an error, never a
// panic or a huge allocation; a record that decodes must encode back to
// the same bytes.
func FuzzDecode(f *testing.F) {
	now := time.Unix(1700000000, 123)
	tx := &tccd.Transaction{
		ID: "01ABC", Protocol: tccd.ProtocolNative, Name: "n", Labels: map[string]string{"k": "v"},
		State: tccd.StateConfirming, Reason: tccd.ReasonRequested, Timeout: time.Minute, CreatedAt: now,
		CreatedBy: "billing", ResolvedBy: "ops", ResolutionNote: "note",
		Participants: []tccd.Participant{{URI: "http://h/1", Expires: now.Add(time.Hour), State: tccd.ParticipantPending, Attempts: 2, LastStatus: 503, LastError: "HTTP 503"}},
	}
	v, _ := encode(tx, 3)
	f.Add(v)
	v, _ = encode(&tccd.Transaction{ID: "x", State: tccd.StateActive}, 1)
	f.Add(v)
	msg := tx.Clone()
	msg.Participants = append(msg.Participants, tccd.Participant{URI: tccd.MessageURI(1), Expires: now, Style: tccd.StyleMessage, State: tccd.ParticipantPending,
		Message: &tccd.Message{Subject: "orders.placed", Data: []byte("{}"), Headers: map[string]string{"A": "1", "B": "2"}}, FirstAttemptAt: now})
	v, _ = encode(msg, 4)
	f.Add(v)
	f.Add([]byte{})
	if v1, err := os.ReadFile("testdata/record-v1.bin"); err == nil {
		f.Add(v1)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		tx, err := decode(v)
		if err != nil {
			return
		}
		if len(tx.Labels) > 1 {
			return // map order makes the bytes differ; the round trip is checked by the conformance suite
		}
		again, err := encode(tx, tx.Version)
		if err != nil {
			t.Fatal(err)
		}
		tx2, err := decode(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if tx2.ID != tx.ID || tx2.State != tx.State || len(tx2.Participants) != len(tx.Participants) ||
			tx2.CreatedBy != tx.CreatedBy || tx2.ResolutionNote != tx.ResolutionNote {
			t.Fatalf("round trip changed the record: %+v vs %+v", tx, tx2)
		}
	})
}
