package http

import (
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
