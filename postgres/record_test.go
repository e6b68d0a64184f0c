package postgres

import (
	"bytes"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd"
)

var update = flag.Bool("update", false, "rewrite testdata/record-v1.json")

// full returns a transaction with every field set, its participants' and
// its notification's too (TestFullSetsEveryField keeps it so).
func full() *tccd.Transaction {
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	return &tccd.Transaction{
		ID: "01J9Z3K8Q4V7T2X6M5N0P1R2S3", Protocol: tccd.ProtocolNative, Name: "trip <&>", Labels: map[string]string{"team": "travel", "nul": "a\x00b"},
		State: tccd.StateHeuristic, Reason: tccd.ReasonMixedOutcome, Timeout: 30 * time.Second,
		Deadline: at.Add(30 * time.Second), CreatedAt: at, UpdatedAt: at.Add(3 * time.Second),
		DecidedAt: at.Add(time.Second), FinishedAt: at.Add(3 * time.Second),
		CreatedBy: "billing", ResolvedBy: "ops", ResolutionNote: "refunded by hand",
		Owner: "node-1", LeaseUntil: at.Add(time.Minute), Epoch: 4,
		Notify: "https://shop.example/tcc-outcome",
		Notification: tccd.Notification{
			State: tccd.NotificationPending, DeliveryID: "d-1", Since: at.Add(3 * time.Second), Attempts: 2, LastStatus: 503,
			LastError: "HTTP 503", LastAttemptAt: at.Add(4 * time.Second),
		},
		Version: 7,
		Barrier: true, TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Round: &tccd.Round{N: 3, Committed: true, Keys: map[string]string{"http://127.0.0.1:1/a": "key-a", "https://127.0.0.1:2/b": "key-b"}},
		Participants: []tccd.Participant{
			{URI: "http://127.0.0.1:1/a", Expires: at.Add(time.Hour), State: tccd.ParticipantConfirmed, Attempts: 1, LastStatus: 204, LastError: "none", LastAttemptAt: at.Add(time.Second), LastDuration: time.Millisecond,
				ConfirmURI: "http://127.0.0.1:1/a/confirm", CancelURI: "http://127.0.0.1:1/a/cancel", Style: tccd.StyleTCC, CompensateURI: "http://127.0.0.1:1/a/undo",
				Message: &tccd.Message{Subject: "orders.placed", Data: []byte{0, 1, 2, 0xff}, Headers: map[string]string{"Content-Type": "application/json"}}, FirstAttemptAt: at.Add(time.Second)},
			{URI: "https://127.0.0.1:2/b", Expires: at.Add(2 * time.Hour), State: tccd.ParticipantFailed, Attempts: 3, LastStatus: 422, LastError: "HTTP 422", LastAttemptAt: at.Add(2 * time.Second), LastDuration: 1500 * time.Microsecond,
				ConfirmURI: "https://127.0.0.1:2/b/c", CancelURI: "https://127.0.0.1:2/b/x", Style: tccd.StyleCompensate, CompensateURI: "https://127.0.0.1:2/b/undo",
				Message: &tccd.Message{Subject: "orders.shipped", Data: []byte(`{"a":1}`)}, FirstAttemptAt: at.Add(2 * time.Second)},
		},
	}
}

// TestFullSetsEveryField: a field added to tccd.Transaction (or to a
// participant or a notification) must be set in full, so that the round
// trip below fails until record.go stores it.
func TestFullSetsEveryField(t *testing.T) {
	var check func(path string, v reflect.Value)
	check = func(path string, v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			if v.Type() == reflect.TypeOf(time.Time{}) {
				if v.Interface().(time.Time).IsZero() {
					t.Errorf("%s is not set", path)
				}
				return
			}
			for i := 0; i < v.NumField(); i++ {
				check(path+"."+v.Type().Field(i).Name, v.Field(i))
			}
		case reflect.Slice:
			if v.Len() == 0 {
				t.Errorf("%s is empty", path)
			}
			for i := 0; i < v.Len(); i++ {
				check(path+"[]", v.Index(i))
			}
		default:
			if v.IsZero() {
				t.Errorf("%s is not set", path)
			}
		}
	}
	check("Transaction", reflect.ValueOf(*full()))
}

func TestRecordRoundTrip(t *testing.T) {
	want := full()
	b, err := encode(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decode(b, want.Version)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got  %+v\n want %+v", got, want)
	}
	// Time zones are not kept: every time reads back in UTC, the same instant.
	local := full()
	local.CreatedAt = local.CreatedAt.In(time.FixedZone("X", 3600))
	b, _ = encode(local)
	if got, _ := decode(b, 7); !got.CreatedAt.Equal(local.CreatedAt) || got.CreatedAt.Location() != time.UTC {
		t.Fatalf("created_at %v, want %v in UTC", got.CreatedAt, local.CreatedAt)
	}
}

// TestRecordGolden pins the stored form: renaming a Go field, or
// changing how a value is written, breaks this test rather than the
// records already stored. A record of this format must always decode.
func TestRecordGolden(t *testing.T) {
	const path = "testdata/record-v1.json"
	b, err := encode(full())
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	golden = bytes.TrimSuffix(golden, []byte("\n"))
	if !bytes.Equal(b, golden) {
		t.Errorf("the stored form changed:\n got  %s\n want %s", b, golden)
	}
	got, err := decode(golden, 7)
	if err != nil || !reflect.DeepEqual(got, full()) {
		t.Fatalf("golden record decodes to %+v, %v", got, err)
	}
}

func TestRecordRefused(t *testing.T) {
	good, _ := encode(full())
	tests := []struct {
		name, rec, want string
	}{
		{"unknown key", strings.Replace(string(good), `{"format":1,`, `{"format":1,"color":"red",`, 1), `unknown field "color"`},
		{"newer format", strings.Replace(string(good), `"format":1`, `"format":2`, 1), "format 2 is newer than this tccd knows (1): upgrade tccd"},
		{"no format", strings.Replace(string(good), `"format":1,`, ``, 1), "no format"},
		{"bad time", strings.Replace(string(good), `"deadline":"2026`, `"deadline":"x2026`, 1), "deadline"},
		{"trailing data", string(good) + " {}", "data after the record"},
		{"not JSON", "{", "corrupt record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode([]byte(tt.rec), 1)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("decode = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestRecordTimeOutOfRange(t *testing.T) {
	tx := full()
	tx.Deadline = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := encode(tx); tccd.ErrorCode(err) != tccd.EInvalid {
		t.Fatalf("encode of year 10000 = %v, want invalid", err)
	}
}

// FuzzDecode: a record that is not what encode writes gives an error,
// never a panic; one that decodes encodes to a record that decodes the
// same.
func FuzzDecode(f *testing.F) {
	b, _ := encode(full())
	f.Add(b)
	b, _ = encode(&tccd.Transaction{ID: "x", State: tccd.StateActive})
	f.Add(b)
	f.Add([]byte(`{"format":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, err := decode(b, 1)
		if err != nil {
			return
		}
		again, err := encode(tx)
		if err != nil {
			return // a time out of RFC 3339's range, refused before it is stored
		}
		tx2, err := decode(again, 1)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(tx, tx2) {
			t.Fatalf("round trip changed the record:\n %+v\n %+v", tx, tx2)
		}
	})
}
