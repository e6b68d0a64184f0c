package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/internal/testproc"
)

// installChromium is how to get the browser the test drives.
const installChromium = "apt-get install -y chromium (Debian's package; see README, Set-up)"

// findChromium returns the path of Debian's chromium. Without it the
// browser test is skipped — except under CI=true, where it fails.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("chromium is not installed, and CI=true requires the browser test: %s", installChromium)
	}
	t.Skipf("chromium is not installed: the browser test is skipped; to run it: %s", installChromium)
	return ""
}

// artifactsDir is where the test's screenshots go: $TCCD_TEST_ARTIFACTS,
// or a temporary directory removed after the test.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TCCD_TEST_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browserEnv is a real tccd process with authentication on, two real
// participant processes, and headless Chromium, all on 127.0.0.1.
type browserEnv struct {
	base      string // the coordinator's URL
	parts     [2]*testproc.Proc
	admin     string // tokens
	client    string
	http      *http.Client
	artifacts string
}

func newBrowserEnv(t *testing.T) *browserEnv {
	t.Helper()
	bindir := t.TempDir()
	var bins [2]string
	for i, pkg := range []string{"github.com/tccd/tccd/cmd/tccd", "github.com/tccd/tccd/internal/testpart/cmd/testpart"} {
		bin, err := testproc.Build(bindir, pkg)
		if err != nil {
			t.Fatal(err)
		}
		bins[i] = bin
	}
	e := &browserEnv{http: &http.Client{Timeout: 30 * time.Second}, artifacts: artifactsDir(t)}
	var lines []string
	for _, p := range []struct {
		name, role string
		tok        *string
	}{{"ops", "admin", &e.admin}, {"billing", "client", &e.client}} {
		tok, err := tccdhttp.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		*p.tok = tok
		lines = append(lines, p.name+" "+p.role+" "+tccdhttp.HashToken(tok))
	}
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range e.parts {
		e.parts[i] = testproc.StartParticipant(t, bins[1])
	}
	co := testproc.StartTccd(t, bins[0], "--data", filepath.Join(t.TempDir(), "data"), "--auth-tokens-file", tokens,
		"--retry-min", "20ms", "--retry-max", "200ms", "--confirm-wait", "10s", "--max-streams", "2")
	e.base = co.URL()
	return e
}

// call makes an API request with a token and decodes a JSON answer.
func (e *browserEnv) call(t *testing.T, method, url, token string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

type link struct {
	URI     string `json:"uri"`
	Expires string `json:"expires"`
}

// try makes a reservation at participant i.
func (e *browserEnv) try(t *testing.T, i int) link {
	t.Helper()
	var out struct {
		ParticipantLink link `json:"participantLink"`
	}
	if code := e.call(t, "POST", e.parts[i].URL()+"/reservations?ttl=5m", "", nil, &out); code != http.StatusCreated {
		t.Fatalf("try at participant %d: %d", i, code)
	}
	return out.ParticipantLink
}

// begin starts a transaction as the client, with the given links.
func (e *browserEnv) begin(t *testing.T, name string, links ...link) string {
	t.Helper()
	var tx struct{ ID string }
	if code := e.call(t, "POST", e.base+"/api/v1/transactions", e.client, map[string]any{"timeout": "5m", "name": name, "participants": links}, &tx); code != http.StatusCreated {
		t.Fatalf("begin: %d", code)
	}
	return tx.ID
}

func (e *browserEnv) fault(t *testing.T, i int, f testpart.Fault) {
	t.Helper()
	if code := e.call(t, "POST", e.parts[i].URL()+"/faults", "", f, nil); code != http.StatusNoContent {
		t.Fatalf("fault at participant %d: %d", i, code)
	}
}

// js quotes a string for a JavaScript expression.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestBrowser drives the activity monitor in headless Chromium against a
// real coordinator with authentication on: sign in with the admin token,
// see a transaction appear and change live, open it (participants and
// attempts), see a heuristic and an in-doubt transaction in the queue,
// resolve the heuristic one, and keep screenshots of each step.
func TestBrowser(t *testing.T) {
	chromium := findChromium(t)
	e := newBrowserEnv(t)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("metrics-recording-only", true),
		// No name resolves: the browser can reach 127.0.0.1 and nothing else.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	// Every request the page makes, and every problem it reports, from
	// the tab's first event on.
	var mu sync.Mutex
	var requests, problems []string
	listen := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			requests = append(requests, ev.Request.URL)
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			problems = append(problems, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
		case *log.EventEntryAdded:
			// Expected: 401 before the sign-in, 429 for the second tab's stream.
			expected := strings.Contains(ev.Entry.Text, "status of 401") || strings.Contains(ev.Entry.Text, "status of 429")
			if ev.Entry.Level == log.EntryLevelError && !expected {
				problems = append(problems, "console: "+ev.Entry.Text)
			}
		}
	}
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithListener(listen), chromedp.WithLogf(t.Logf))
	defer cancelBrowser()

	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	// shotOf saves a screenshot of a tab.
	shotOf := func(tab context.Context, name string) {
		t.Helper()
		png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(e.artifacts, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	shot := func(name string) { t.Helper(); shotOf(bctx, name) }
	// untilIn waits for a JavaScript condition to hold in a tab.
	untilIn := func(tab context.Context, what, cond string) {
		t.Helper()
		if _, err := chromedp.Run(tab, chromedp.Poll[bool]("!!("+cond+")", chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			page, _ := chromedp.Run(tab, chromedp.Text(chromedp.CSS("body")))
			t.Fatalf("%s: %v\nthe page says:\n%s", what, err, page)
		}
	}
	until := func(what, cond string) { t.Helper(); untilIn(bctx, what, cond) }
	signIn := func(tab context.Context) {
		t.Helper()
		if err := chromedp.Do(tab, chromedp.Navigate(e.base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#view-login")),
			chromedp.SendKeys(chromedp.CSS("#token"), e.admin), chromedp.Click(chromedp.CSS(`#login button[type="submit"]`))); err != nil {
			t.Fatalf("sign in: %v", err)
		}
	}

	// Sign in: the page asks for a token, and keeps it in sessionStorage.
	signIn(bctx)
	until("the event stream is followed", `document.querySelector('#conn').dataset.mode === 'live'`)
	until("the token is in sessionStorage only", `sessionStorage.getItem('tccd.token') === `+js(e.admin)+
		` && localStorage.length === 0 && document.cookie === ''`)
	if got := text("#who"); got != "admin token" {
		t.Errorf("who: %q", got)
	}

	// A transaction appears live, then turns heuristic: participant 1
	// confirms, participant 2 refuses its confirm (after a moment, so
	// that the first has confirmed by then).
	l0, l1 := e.try(t, 0), e.try(t, 1)
	id := e.begin(t, "trip-ui", l0, l1)
	row := `document.querySelector('tr[data-tx=` + js(id) + `]')`
	until("the new transaction appears", row+` && `+row+`.dataset.state === 'active'`)
	until("with its participants", row+`.querySelector('[data-pstate="pending"]')`)
	shot("ui-1-list.png")
	// The filters: by participant host, by state, by age.
	filter := func(sel, value, event string) {
		t.Helper()
		expr := `(() => { const el = document.querySelector(` + js(sel) + `); el.value = ` + js(value) + `; el.dispatchEvent(new Event(` + js(event) + `)); return true; })()`
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](expr)); err != nil {
			t.Fatalf("set %s: %v", sel, err)
		}
	}
	host := strings.TrimPrefix(e.parts[1].URL(), "http://")
	for _, f := range []struct {
		sel, value, event string
		shown             bool
	}{
		{"#f-search", host, "input", true},
		{"#f-search", "no-such-host", "input", false},
		{"#f-search", strings.ToLower(id[:10]), "input", true},
		{"#f-search", "", "input", true},
		{"#f-state", "confirmed", "change", false},
		{"#f-state", "active", "change", true},
		{"#f-state", "", "change", true},
		{"#f-age", "300", "change", true},
		{"#f-age", "", "change", true},
	} {
		filter(f.sel, f.value, f.event)
		until(fmt.Sprintf("%s %q shows the row: %v", f.sel, f.value, f.shown), `(!!`+row+`) === `+fmt.Sprint(f.shown))
	}
	e.fault(t, 1, testpart.Fault{Op: "confirm", Count: 1, Status: http.StatusConflict, Delay: "300ms"})
	var problem struct{ Code string }
	if code := e.call(t, "PUT", e.base+"/api/v1/transactions/"+id+"/confirm", e.client, nil, &problem); code != http.StatusConflict || problem.Code != "heuristic" {
		t.Fatalf("confirm: %d %+v", code, problem)
	}
	until("the row turns heuristic", row+`.dataset.state === 'heuristic'`)

	// Its page: the participants as the coordinator records them, and
	// every attempt and state change on the timeline.
	run("open it", chromedp.Click(chromedp.CSS(`tr[data-tx="`+id+`"] a`)), chromedp.WaitVisible(chromedp.CSS("#view-tx")))
	part := func(uri, state string) string {
		return `document.querySelector('#view-tx tr[data-participant=` + js(uri) + `][data-pstate=` + js(state) + `]')`
	}
	until("the participants", part(l0.URI, "confirmed")+` && `+part(l1.URI, "failed"))
	until("the attempts and states on the timeline",
		`document.querySelectorAll('#view-tx li.ev-attempt[data-phase="confirm"]').length === 2 && `+
			`document.querySelectorAll('#view-tx li.ev-state').length === 3`)
	timeline := text("#view-tx ol.timeline")
	for _, want := range []string{"active", "confirming", "heuristic", "mixed_outcome", "→ 204", "→ 409", l0.URI, l1.URI} {
		if !strings.Contains(timeline, want) {
			t.Errorf("the timeline lacks %q:\n%s", want, timeline)
		}
	}
	shot("ui-2-transaction.png")

	// A participant in doubt: its confirm gets no definite answer (503),
	// so the coordinator keeps asking; the page says so and claims nothing.
	doubtful := e.begin(t, "doubt-ui", e.try(t, 0))
	e.fault(t, 0, testpart.Fault{Op: "confirm", Count: -1, Status: http.StatusServiceUnavailable})
	if code := e.call(t, "PUT", e.base+"/api/v1/transactions/"+doubtful+"/confirm", e.client, nil, nil); code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("confirm of the doubtful one: %d", code)
	}

	// The queue: the heuristic one with the resolve action, the doubtful
	// one in doubt.
	run("open the queue", chromedp.Click(chromedp.CSS("#nav-queue")), chromedp.WaitVisible(chromedp.CSS("#view-queue")))
	item := `#queue-heuristic [data-queue-tx="` + id + `"]`
	until("the heuristic transaction is queued", `!!document.querySelector(`+js(item+` button.resolve-open`)+`)`)
	until("the doubtful one is queued in doubt", `!!document.querySelector(`+js(`#queue-doubt [data-queue-tx="`+doubtful+`"] [data-pstate="in_doubt"]`)+`)`)
	if got := text(`#queue-doubt [data-queue-tx="` + doubtful + `"] [data-pstate="in_doubt"]`); got != "in doubt" {
		t.Errorf("in-doubt participant shown as %q", got)
	}
	if got := text(`#queue-doubt [data-queue-tx="` + doubtful + `"] [data-state]`); got != "confirming" {
		t.Errorf("doubtful transaction shown as %q, the coordinator says confirming", got)
	}
	if got := text("#queue-count"); got != "2" {
		t.Errorf("queue count %q", got)
	}
	shot("ui-3-queue.png")

	// Resolve it as admin: the operator cancelled participant 1 by hand.
	const note = "released the first reservation by hand"
	run("resolve",
		chromedp.Click(chromedp.CSS(item+` button.resolve-open`)),
		chromedp.Click(chromedp.CSS(item+` input[value="cancelled"]`)),
		chromedp.SendKeys(chromedp.CSS(item+` input.resolve-note`), note),
		chromedp.Click(chromedp.CSS(item+` button.resolve-submit`)))
	until("the resolution is recorded", `document.querySelector('#queue-note').textContent.includes(`+js("Recorded: "+id+" is now cancelled (resolved, by ops).")+`)`)
	until("it leaves the queue", `!document.querySelector(`+js(item)+`)`)
	var tx struct {
		State          string `json:"state"`
		Reason         string `json:"reason"`
		ResolvedBy     string `json:"resolved_by"`
		ResolutionNote string `json:"resolution_note"`
	}
	if code := e.call(t, "GET", e.base+"/api/v1/transactions/"+id, e.admin, nil, &tx); code != http.StatusOK {
		t.Fatalf("GET: %d", code)
	}
	if tx.State != "cancelled" || tx.Reason != "resolved" || tx.ResolvedBy != "ops" || tx.ResolutionNote != note {
		t.Fatalf("after the resolution the coordinator says %+v", tx)
	}

	// Its page shows the resolution, as the coordinator records it.
	run("open it again", chromedp.Navigate(e.base+"/ui/#/tx/"+url.PathEscape(id)), chromedp.WaitVisible(chromedp.CSS("#view-tx")))
	until("resolved on its page", `(document.querySelector('#view-tx dl.facts') || {textContent: ''}).textContent.includes(`+js("by ops: "+note)+`)`)
	if got := text("#view-tx .head [data-state]"); got != "cancelled" {
		t.Errorf("state on the page %q", got)
	}
	shot("ui-4-resolved.png")

	// A second tab finds no event stream left for this token (max-streams
	// 2: the first tab's list and transaction page hold both). It signs in
	// again — the token stays in the tab that was given it — then polls
	// the list, and still sees a new transaction appear.
	tab, cancelTab := chromedp.NewContext(bctx, chromedp.WithListener(listen))
	defer cancelTab()
	signIn(tab)
	untilIn(tab, "the second tab polls", `document.querySelector('#conn').dataset.mode === 'poll' && `+
		`document.querySelector('#conn').textContent.includes('too many event streams')`)
	polled := e.begin(t, "polled-ui", e.try(t, 1))
	untilIn(tab, "a new transaction appears by polling", `document.querySelector('tr[data-tx=`+js(polled)+`] [data-pstate="pending"]')`)
	shotOf(tab, "ui-5-polling.png")

	e.call(t, "DELETE", e.parts[0].URL()+"/faults", "", nil, nil)

	mu.Lock()
	defer mu.Unlock()
	for _, u := range requests {
		if !strings.HasPrefix(u, e.base+"/") {
			t.Errorf("the page requested %s: only the coordinator at %s may be asked", u, e.base)
		}
	}
	if len(requests) < 5 {
		t.Errorf("only %d requests seen: %v", len(requests), requests)
	}
	for _, p := range problems {
		t.Errorf("the page reported: %s", p)
	}
}
