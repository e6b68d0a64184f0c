package checkpart

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/testpart"
)

// The test binary doubles as a try command: with CHECKPART_TRY_URL set it
// makes a reservation there (with TCCD_CHECK_KEY as its Idempotency-Key)
// and prints the answer's body, or "URI EXPIRES" with
// CHECKPART_TRY_FIELDS set.
func TestMain(m *testing.M) {
	if u := os.Getenv("CHECKPART_TRY_URL"); u != "" {
		os.Exit(tryHelper(u))
	}
	os.Exit(m.Run())
}

func tryHelper(u string) int {
	req, _ := http.NewRequest(http.MethodPost, u, nil)
	req.Header.Set(testpart.HeaderIdempotencyKey, os.Getenv("TCCD_CHECK_KEY"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if os.Getenv("CHECKPART_TRY_FIELDS") != "" {
		fmt.Printf("%s %s\n", resp.Header.Get("Location"), resp.Header.Get("Tcc-Expires"))
		return 0
	}
	os.Stdout.Write(body)
	return 0
}

// service is testpart behind a BreachHandler, on loopback.
type service struct {
	svc *testpart.Service
	h   *testpart.BreachHandler
	srv *httptest.Server
}

func newService(t *testing.T) *service {
	t.Helper()
	svc := testpart.NewTest(t, time.Minute)
	h := testpart.NewBreachHandler(svc)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &service{svc: svc, h: h, srv: srv}
}

// breach switches a breach on through the service's fault API.
func (s *service) breach(t *testing.T, b testpart.Breach) {
	t.Helper()
	resp, err := http.Post(s.srv.URL+"/faults", "application/json", strings.NewReader(`{"breach":"`+string(b)+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("switch on %s: %s", b, resp.Status)
	}
}

// fullConfig checks everything quickly: tries carry a key, the expiry
// check asks for a short lifetime.
func (s *service) fullConfig() Config {
	return Config{
		Try: &HTTPTry{
			URL: s.srv.URL + "/reservations", IdempotencyHeader: testpart.HeaderIdempotencyKey, TTLParam: "ttl=300ms",
		},
		ExpiryGrace: 50 * time.Millisecond, MaxWait: 10 * time.Second, Timeout: 5 * time.Second,
	}
}

func run(t *testing.T, cfg Config) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Outcomes) != len(checks) {
		t.Fatalf("%d outcomes for %d checks", len(r.Outcomes), len(checks))
	}
	return r
}

// results returns the checks with each result, for messages.
func results(r *Report) map[Result][]string {
	out := map[Result][]string{}
	for _, o := range r.Outcomes {
		out[o.Result] = append(out[o.Result], o.Check)
	}
	return out
}

func dump(r *Report) string {
	var b strings.Builder
	for _, o := range r.Outcomes {
		fmt.Fprintf(&b, "\n  %s %s: %s (fix: %s) %v", o.Result, o.Check, o.Detail, o.Fix, o.Calls)
	}
	return b.String()
}

// TestCorrectParticipant: testpart keeps the contract: every check passes.
func TestCorrectParticipant(t *testing.T) {
	t.Parallel()
	s := newService(t)
	r := run(t, s.fullConfig())
	if !r.OK() || r.Count(Pass) != len(checks) {
		t.Fatalf("results %v%s", results(r), dump(r))
	}
	for _, o := range r.Outcomes {
		if !o.Required || o.Why == "" || o.Title == "" || len(o.Calls) == 0 {
			t.Errorf("outcome %+v", o)
		}
	}
	// What the checks left tried is cancelled.
	st, err := s.svc.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 || st.CancelAfterConfirm != 1 {
		t.Errorf("left behind: %+v (one cancel after confirm is the check's)", st)
	}
}

// TestBreaches: each broken behaviour makes exactly its check fail, with
// a message that says what was seen and what to fix; the checks a
// redirect keeps from seeing anything are not checked.
func TestBreaches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		breach testpart.Breach
		fails  string
		detail string // in the failed check's detail
		// notChecked are the other checks the breach keeps from running.
		notChecked []string
	}{
		{breach: testpart.BreachConfirmTwice, fails: checkConfirmIdempotent, detail: "second confirm of a confirmed reservation answered 409"},
		{breach: testpart.BreachCancelTwice, fails: checkCancelIdempotent, detail: "second cancel of a cancelled reservation answered 409"},
		{breach: testpart.BreachCancelUnknown, fails: checkCancelUnknown, detail: "answered 500"},
		{breach: testpart.BreachConfirmUnknown, fails: checkAnswers, detail: "confirm of a reservation the service never made"},
		{breach: testpart.BreachConfirmCancelled, fails: checkConfirmAfterCancel, detail: "confirm of a cancelled reservation answered 204"},
		{breach: testpart.BreachCancelConfirmed, fails: checkCancelAfterConfirm, detail: "cancel of a confirmed reservation answered 204"},
		{breach: testpart.BreachNoExpiry, fails: checkExpiry, detail: "after the reservation's expiry answered 204"},
		{breach: testpart.BreachTryTwice, fails: checkTryIdempotent, detail: "made two reservations"},
		{breach: testpart.BreachTryContentType, fails: checkAnswers, detail: `labelled "text/plain; charset=utf-8"`},
		{
			breach: testpart.BreachRedirect, fails: checkNoRedirects, detail: "were redirects: PUT",
			notChecked: []string{checkAnswers, checkConfirmIdempotent, checkCancelIdempotent, checkCancelUnknown,
				checkConfirmAfterCancel, checkCancelAfterConfirm, checkExpiry},
		},
	}
	if len(tests) != len(testpart.Breaches) {
		t.Fatalf("%d breaches tested of %d", len(tests), len(testpart.Breaches))
	}
	for _, tt := range tests {
		t.Run(string(tt.breach), func(t *testing.T) {
			t.Parallel()
			s := newService(t)
			s.breach(t, tt.breach)
			r := run(t, s.fullConfig())
			if r.OK() {
				t.Fatalf("OK with %s%s", tt.breach, dump(r))
			}
			for _, o := range r.Outcomes {
				want := Pass
				switch {
				case o.Check == tt.fails:
					want = Fail
				case slices.Contains(tt.notChecked, o.Check):
					want = NotChecked
				}
				if o.Result != want {
					t.Errorf("%s: %s, want %s%s", o.Check, o.Result, want, dump(r))
				}
			}
			o, _ := r.Outcome(tt.fails)
			if !strings.Contains(o.Detail, tt.detail) || o.Fix == "" || o.Why == "" {
				t.Errorf("%s says %q (fix %q), want %q", o.Check, o.Detail, o.Fix, tt.detail)
			}
		})
	}
}

// TestNotChecked: a check that has no way to run says so. Without a key
// the repeated try is advice; an expiry beyond the wait is a required
// check not done.
func TestNotChecked(t *testing.T) {
	t.Parallel()
	s := newService(t)
	cfg := s.fullConfig()
	cfg.Try.(*HTTPTry).IdempotencyHeader = ""
	r := run(t, cfg)
	o, _ := r.Outcome(checkTryIdempotent)
	if o.Result != NotChecked || o.Required || !strings.Contains(o.Detail, "--idempotency-header") || !r.OK() {
		t.Fatalf("without a key: %+v, OK %v%s", o, r.OK(), dump(r))
	}

	cfg.Try.(*HTTPTry).TTLParam = ""
	cfg.MaxWait = 100 * time.Millisecond
	r = run(t, cfg)
	o, _ = r.Outcome(checkExpiry)
	if o.Result != NotChecked || !o.Required || !strings.Contains(o.Detail, "beyond --max-wait") || r.OK() {
		t.Fatalf("long expiry: %+v, OK %v", o, r.OK())
	}
	if got := results(r)[Fail]; len(got) != 0 {
		t.Fatalf("failed: %v%s", got, dump(r))
	}
}

// TestTryFails: without an answer to the try, answers fails and nothing
// else runs.
func TestTryFails(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	for _, try := range []Trier{
		&HTTPTry{URL: url + "/reservations"},
		&CommandTry{Command: "echo nothing to see >&2; exit 3"},
	} {
		r := run(t, Config{Try: try})
		got := results(r)
		if !slices.Equal(got[Fail], []string{checkAnswers}) || len(got[NotChecked]) != len(checks)-1 || r.OK() {
			t.Errorf("%s: %v%s", try, got, dump(r))
		}
	}
	// A try answered without a link.
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	r := run(t, Config{Try: &HTTPTry{URL: srv.URL}})
	o, _ := r.Outcome(checkAnswers)
	if o.Result != Fail || !strings.Contains(o.Detail, "answered 202 Accepted") || !strings.Contains(o.Detail, "no participant link") {
		t.Fatalf("a try without a link: %+v", o)
	}
}

// TestCommandTry: the try may be a command printing the link ("URI
// EXPIRES" here; both forms are read in TestLinksOfOutput); {key} in it
// makes the repeated try checked, and its key reaches the command.
func TestCommandTry(t *testing.T) {
	t.Parallel()
	s := newService(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := fmt.Sprintf("CHECKPART_TRY_URL=%s/reservations CHECKPART_TRY_FIELDS=1 %s -key={key}", s.srv.URL, self)
	r := run(t, Config{Try: &CommandTry{Command: cmd}, MaxWait: 100 * time.Millisecond})
	got := results(r)
	// The command cannot ask for a short lifetime: expiry is not checked.
	if len(got[Fail]) != 0 || !slices.Equal(got[NotChecked], []string{checkExpiry}) || r.Count(Pass) != len(checks)-1 {
		t.Errorf("%v%s", got, dump(r))
	}
	o, _ := r.Outcome(checkTryIdempotent)
	if !o.Required || len(o.Calls) != 2 || !strings.Contains(o.Calls[0].URI, "-key=tccd-check-") {
		t.Errorf("the repeated try: %+v", o)
	}

	// A command that prints something else.
	r = run(t, Config{Try: &CommandTry{Command: "echo booked"}})
	if o, _ := r.Outcome(checkAnswers); o.Result != Fail || !strings.Contains(o.Detail, `printed "booked"`) {
		t.Errorf("answers: %+v", o)
	}
}

func TestLinksOfOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		out, uri, err string
	}{
		{out: `{"participantLink":{"uri":"http://svc/r/1","expires":"2030-01-01T00:00:00Z"}}` + "\n", uri: "http://svc/r/1"},
		{out: "http://svc/r/2 2030-01-01T00:00:00+01:00\n", uri: "http://svc/r/2"},
		{out: "", err: "printed nothing"},
		{out: "booked!", err: "want"},
		{out: `{"ok":true}`},
		{out: "/r/3 2030-01-01T00:00:00Z", err: "not an absolute"},
		{out: "http://svc/r/4 tomorrow", err: "tomorrow"},
	}
	for _, tt := range tests {
		links, err := linksOfOutput(tt.out)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: %v, %v; want an error with %q", tt.out, links, err, tt.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.out, err)
		case tt.uri == "" && len(links) != 0, tt.uri != "" && (len(links) != 1 || links[0].URI != tt.uri):
			t.Errorf("%q: %v, want %q", tt.out, links, tt.uri)
		}
	}
}

func TestVaryURI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uri     string
		shape   string // the varied segment's characters
		prefix  string
		minLen  int
		wantErr bool
	}{
		{uri: "http://svc/reservations/7dkoxmvstypph52db7szhwomdm", shape: lower + digits, prefix: "http://svc/reservations/", minLen: 26},
		{uri: "http://svc/bookings/42/", shape: digits, prefix: "http://svc/bookings/", minLen: 16},
		{uri: "http://svc/b/3f2a1c9e-8d7b-4e6f-a5c4-1b2d3e4f5a6b?x=1", shape: hexLower + "-", prefix: "http://svc/b/", minLen: 36},
		{uri: "http://svc/b/01JEXAMPLE0000000000000000", shape: upper + digits, prefix: "http://svc/b/", minLen: 26},
		{uri: "http://svc/", wantErr: true},
	}
	for _, tt := range tests {
		got, err := varyURI(tt.uri)
		if tt.wantErr {
			if err == nil {
				t.Errorf("varyURI(%s) = %s, want an error", tt.uri, got)
			}
			continue
		}
		if err != nil || got == tt.uri || !strings.HasPrefix(got, tt.prefix) {
			t.Errorf("varyURI(%s) = %s, %v", tt.uri, got, err)
			continue
		}
		seg := strings.TrimPrefix(got, tt.prefix)
		seg, _, _ = strings.Cut(seg, "?")
		seg = strings.TrimSuffix(seg, "/")
		if len(seg) < tt.minLen || strings.Trim(seg, tt.shape) != "" {
			t.Errorf("varyURI(%s) = %s: segment %q not of the shape", tt.uri, got, seg)
		}
	}
}

// TestHTTPTryRequest: the key and the short lifetime reach the request
// where they were asked for.
func TestHTTPTryRequest(t *testing.T) {
	t.Parallel()
	try := &HTTPTry{
		URL: "http://svc/orders/{key}/seats?x=1", Body: `{"order":"{key}"}`,
		Header: http.Header{"X-Order": {"o-{key}"}}, TTLParam: "lifetime_s=2",
	}
	if !try.Keyed() || !try.CanShorten() || try.Validate() != nil {
		t.Fatalf("Keyed %v CanShorten %v Validate %v", try.Keyed(), try.CanShorten(), try.Validate())
	}
	req, err := try.request(context.Background(), "k1", true)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(req.Body)
	if req.URL.String() != "http://svc/orders/k1/seats?lifetime_s=2&x=1" || string(body) != `{"order":"k1"}` ||
		req.Header.Get("X-Order") != "o-k1" || req.Header.Get("Content-Type") != "application/json" || req.Method != http.MethodPost {
		t.Fatalf("%s %s %s %v", req.Method, req.URL, body, req.Header)
	}
	for _, bad := range []*HTTPTry{{URL: "svc/reservations"}, {URL: "ftp://svc/r"}, {URL: "http://svc/r", TTLParam: "=2"}} {
		if bad.Validate() == nil {
			t.Errorf("%+v is valid", bad)
		}
	}
	if (&HTTPTry{URL: "http://svc/r"}).Keyed() {
		t.Error("a try without a key is keyed")
	}
}
