package testpart_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/testpart"
)

// TestBreachHandler: breaches go on through POST /faults and off with
// DELETE /faults, faults still reach the service, and a try repeated with
// its Idempotency-Key gets the first answer unless BreachTryTwice is on.
func TestBreachHandler(t *testing.T) {
	t.Parallel()
	svc := testpart.NewTest(t, time.Minute)
	srv := httptest.NewServer(testpart.NewBreachHandler(svc))
	defer srv.Close()
	do := func(method, path, key, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if key != "" {
			req.Header.Set(testpart.HeaderIdempotencyKey, key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}

	_, a := do("POST", "/reservations", "k1", "")
	_, b := do("POST", "/reservations", "k1", "")
	_, c := do("POST", "/reservations", "k2", "")
	if a == "" || a != b || a == c {
		t.Fatalf("tries k1 %s, k1 %s, k2 %s", a, b, c)
	}
	id := a[strings.LastIndex(a, "/")+1:]

	if st, _ := do("POST", "/faults", "", `{"breach":"nonsense"}`); st != http.StatusBadRequest {
		t.Fatalf("unknown breach: %d", st)
	}
	for _, b := range []testpart.Breach{testpart.BreachConfirmTwice, testpart.BreachTryTwice} {
		if st, _ := do("POST", "/faults", "", `{"breach":"`+string(b)+`"}`); st != http.StatusNoContent {
			t.Fatalf("breach %s: %d", b, st)
		}
	}
	if st, _ := do("PUT", "/reservations/"+id, "", ""); st != http.StatusNoContent {
		t.Fatalf("first confirm: %d", st)
	}
	if st, _ := do("PUT", "/reservations/"+id, "", ""); st != http.StatusConflict {
		t.Fatalf("second confirm with %s: %d", testpart.BreachConfirmTwice, st)
	}
	if _, again := do("POST", "/reservations", "k1", ""); again == a {
		t.Fatalf("with %s a repeated try answered the first reservation", testpart.BreachTryTwice)
	}
	// DELETE /faults clears the breaches; a fault goes to the service.
	if st, _ := do("DELETE", "/faults", "", ""); st != http.StatusNoContent {
		t.Fatalf("clear: %d", st)
	}
	if st, _ := do("POST", "/faults", "", `{"op":"confirm","count":1,"status":503}`); st != http.StatusNoContent {
		t.Fatalf("fault: %d", st)
	}
	if st, _ := do("PUT", "/reservations/"+id, "", ""); st != http.StatusServiceUnavailable {
		t.Fatalf("confirm under the fault: %d", st)
	}
	if st, _ := do("PUT", "/reservations/"+id, "", ""); st != http.StatusNoContent {
		t.Fatalf("confirm once the fault is used up and the breach cleared: %d", st)
	}
}
