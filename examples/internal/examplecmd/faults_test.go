package examplecmd

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFaults(t *testing.T) {
	var f Faults
	mux := http.NewServeMux()
	f.register(mux)
	for _, tt := range []struct {
		body string
		want int
	}{
		{`{"op":"confirm","count":2}`, 204},
		{`{"op":"cancel","count":1}`, 204},
		{`{"op":"try","count":1}`, 400},
		{`{"op":"confirm","count":0}`, 400},
		{`{"op":"confirm"`, 400},
	} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("POST", "/admin/faults", strings.NewReader(tt.body)))
		if w.Code != tt.want {
			t.Errorf("POST %s: %d, want %d", tt.body, w.Code, tt.want)
		}
	}
	ran := 0
	confirm := f.Wrap("confirm", func(context.Context, *sql.Tx, string) error { ran++; return nil })
	var errs []bool
	for range 3 {
		errs = append(errs, errors.Is(confirm(context.Background(), nil, "r1"), errInjected))
	}
	if want := []bool{true, true, false}; ran != 1 || errs[0] != want[0] || errs[1] != want[1] || errs[2] != want[2] {
		t.Errorf("confirm failed %v and ran %d times; want %v and 1", errs, ran, want)
	}
	st := f.state()
	if st.Fired["confirm"] != 2 || st.Armed["confirm"] != 0 || st.Armed["cancel"] != 1 {
		t.Errorf("state %+v", st)
	}
}
