package trip_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/examples/internal/e2e"
	"github.com/tccd/tccd/examples/trip"
	"github.com/tccd/tccd/participant"
)

// TestAirline drives one airline in-process, on each backend: what a try
// may ask for with ?ttl=, a repeated try of one transaction (answered with
// the same seat), and bookings named under a flight they were not made on.
func TestAirline(t *testing.T) {
	for _, backend := range e2e.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			testAirline(t, e2e.New(t, backend))
		})
	}
}

// booking is a try's answer decoded.
type booking struct {
	status  int
	uri     string
	expires time.Time
	hold    trip.Hold
	detail  string
}

func testAirline(t *testing.T, env *e2e.Env) {
	ctx := context.Background()
	db, d := env.Open(env.DSN("swiss"))
	a := trip.Airline{Name: "swiss", DB: db, Dialect: d, MaxTTL: time.Hour}
	if err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"LX318", "LX320"} {
		if err := a.AddFlight(ctx, f, 12); err != nil {
			t.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	cfg := a.Config()
	cfg.BaseURL = "http://" + srv.Listener.Addr().String()
	p, err := participant.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Register(mux)
	srv.Start()
	t.Cleanup(srv.Close)

	call := func(method, path, txID string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if txID != "" {
			req.Header.Set(api.HeaderTransactionID, txID)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	try := func(path, txID string) booking {
		t.Helper()
		status, body := call(http.MethodPost, path, txID)
		var v struct {
			ParticipantLink struct{ URI, Expires string } `json:"participantLink"`
			Data            trip.Hold                     `json:"data"`
			Detail          string                        `json:"detail"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("POST %s: %d %s", path, status, body)
		}
		b := booking{status: status, uri: v.ParticipantLink.URI, hold: v.Data, detail: v.Detail}
		b.expires, _ = time.Parse(time.RFC3339Nano, v.ParticipantLink.Expires)
		return b
	}
	seatState := func(flight, seat string) string {
		t.Helper()
		var st string
		if err := db.QueryRow(d.Rebind(`SELECT state FROM seats WHERE id = ?`), flight+"/"+seat).Scan(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}

	// What a try may ask for: up to MaxTTL, and nothing that is not a
	// positive duration; never silently less than it asked.
	for _, c := range []struct {
		query  string
		status int
		ttl    time.Duration // of the booking made
		detail string        // of the refusal
	}{
		{query: "", status: http.StatusCreated, ttl: participant.DefaultTTL},
		{query: "?ttl=90s", status: http.StatusCreated, ttl: 90 * time.Second},
		{query: "?ttl=1h", status: http.StatusCreated, ttl: time.Hour},
		{query: "?ttl=2h", status: http.StatusBadRequest, detail: "at most 1h0m0s"},
		{query: "?ttl=-1s", status: http.StatusBadRequest, detail: "positive duration"},
		{query: "?ttl=soon", status: http.StatusBadRequest, detail: "positive duration"},
	} {
		before := time.Now().Truncate(time.Millisecond)
		b := try("/flights/LX318/bookings"+c.query, "")
		after := time.Now()
		if b.status != c.status || !strings.Contains(b.detail, c.detail) {
			t.Errorf("try%s: %d %q, want %d %q", c.query, b.status, b.detail, c.status, c.detail)
			continue
		}
		if c.status == http.StatusCreated && (b.expires.Before(before.Add(c.ttl)) || b.expires.After(after.Add(c.ttl))) {
			t.Errorf("try%s: expires %v, want %v after the try", c.query, b.expires, c.ttl)
		}
		if !strings.HasPrefix(b.uri, cfg.BaseURL+"/flights/LX318/bookings/") && c.status == http.StatusCreated {
			t.Errorf("try%s: link %q", c.query, b.uri)
		}
	}

	// A repeated try of one transaction is answered with the same seat.
	first := try("/flights/LX318/bookings", "tx-1")
	again := try("/flights/LX318/bookings", "tx-1")
	if first.status != http.StatusCreated || first.hold.Seat == "" {
		t.Fatalf("try: %+v", first)
	}
	if again.status != http.StatusOK || again.uri != first.uri || again.hold != first.hold {
		t.Errorf("repeated try: %+v, first %+v", again, first)
	}

	// A booking is found under its own flight only.
	path := strings.TrimPrefix(first.uri, cfg.BaseURL)
	id := path[strings.LastIndexByte(path, '/')+1:]
	for _, flight := range []string{"NOPE", "LX320"} {
		for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodGet} {
			if status, body := call(m, "/flights/"+flight+"/bookings/"+id, ""); status != http.StatusNotFound {
				t.Errorf("%s of an LX318 booking under %s: %d %s", m, flight, status, body)
			}
		}
	}
	if st := seatState("LX318", first.hold.Seat); st != trip.Reserved {
		t.Fatalf("seat %s after calls under other flights: %s", first.hold.Seat, st)
	}
	if status, body := call(http.MethodPut, path, ""); status != http.StatusNoContent {
		t.Fatalf("confirm: %d %s", status, body)
	}
	if st := seatState("LX318", first.hold.Seat); st != trip.Sold {
		t.Errorf("seat %s after the confirm: %s", first.hold.Seat, st)
	}
}
