package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"testing"
)

// TestUIOption: tccd serve serves the activity monitor at /ui/ unless
// --ui=false.
func TestUIOption(t *testing.T) {
	for _, tt := range []struct {
		flags []string
		want  int
	}{
		{nil, http.StatusOK},
		{[]string{"--ui=false"}, http.StatusNotFound},
	} {
		m := NewMain(io.Discard, io.Discard, fakeEnv(nil))
		args := append([]string{"--listen", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "data")}, tt.flags...)
		if err := m.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		if err := m.Run(context.Background()); err != nil {
			m.Close()
			t.Fatal(err)
		}
		code := 0
		resp, err := http.Get("http://" + m.Addr() + "/ui/")
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
		}
		if cerr := m.Close(); cerr != nil {
			t.Error(cerr)
		}
		if code != tt.want {
			t.Errorf("%v: GET /ui/: %d %v, want %d", tt.flags, code, err, tt.want)
		}
	}
}
