package http_test

import (
	"testing"

	tccdhttp "github.com/tccd/tccd/http"
)

// FuzzDecodeOutcome: a participant's question either names a URI or is
// refused with an invalid-request error.
func FuzzDecodeOutcome(f *testing.F) {
	addDecodeSeeds(f)
	for _, s := range []string{
		`{"uri":"http://pay.example/captures/1"}`,
		`{"uri":"HTTP://pay.example:80/a/../captures/%7e1?x=1&y=%2f"}`,
		`{"uri":""}`,
		`{"uri":7}`,
		`{"uri":"http://x/1","state":"confirmed"}`,
		`{"uri":"http://x/1"} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		uri, err := tccdhttp.DecodeOutcome(body)
		if err != nil {
			checkDecodeError(t, body, err)
			return
		}
		if uri == "" {
			t.Fatalf("%q: an empty uri accepted", body)
		}
	})
}
