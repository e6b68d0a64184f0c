package http

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// BenchmarkDecodeAtomikos measures decoding a one-shot confirm request
// with 2 and 16 links, the request decode on the confirm path.
func BenchmarkDecodeAtomikos(b *testing.B) {
	exp := time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)
	for _, k := range []int{2, 16} {
		body := []byte(`{"participantLinks":[`)
		for i := 0; i < k; i++ {
			if i > 0 {
				body = append(body, ',')
			}
			body = fmt.Appendf(body, `{"uri":"http://127.0.0.1:9001/reservations/%d","expires":%q}`, i, exp)
		}
		body = append(body, "]}"...)
		b.Run(fmt.Sprintf("links=%d", k), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := DecodeAtomikos(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRenderTransaction compares the hand-written rendering of a
// transaction response with encoding/json's.
func BenchmarkRenderTransaction(b *testing.B) {
	at := time.Now().UTC()
	d := 0.4
	tx := Transaction{ID: "01JD2XG0Q3V7W8Y9Z0A1B2C3D4", Protocol: "native", State: "confirmed", Reason: "requested", Timeout: "1m0s",
		Deadline: &at, CreatedAt: at, UpdatedAt: at, DecidedAt: &at, FinishedAt: &at}
	for i := 0; i < 2; i++ {
		tx.Participants = append(tx.Participants, Participant{URI: fmt.Sprintf("http://127.0.0.1:9001/reservations/%d", i), Expires: at,
			State: "confirmed", Attempts: 1, LastStatus: 204, LastAttemptAt: &at, LastDurationMS: &d})
	}
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = appendTransaction(buf[:0], &tx)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if err := json.NewEncoder(&buf).Encode(tx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeLink measures the enlist body's decode.
func BenchmarkDecodeLink(b *testing.B) {
	body := fmt.Appendf(nil, `{"uri":"http://127.0.0.1:9001/reservations/1","expires":%q}`, time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeLink(body); err != nil {
			b.Fatal(err)
		}
	}
}
