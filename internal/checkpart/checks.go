package checkpart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
)

// The checks' names.
const (
	checkAnswers            = "answers"
	checkConfirmIdempotent  = "confirm-idempotent"
	checkCancelIdempotent   = "cancel-idempotent"
	checkCancelUnknown      = "cancel-unknown"
	checkConfirmAfterCancel = "confirm-after-cancel"
	checkCancelAfterConfirm = "cancel-after-confirm"
	checkTryIdempotent      = "try-idempotent"
	checkExpiry             = "expiry"
	checkNoRedirects        = "no-redirects"
)

// check is one rule of the contract.
type check struct {
	name, title, why string
	required         bool
	// requiredIf, when set, makes the check required for some tries only.
	requiredIf func(Trier) bool
	run        func(ctx context.Context, c *checkRun) verdict
}

// checks in the order they run and are reported: answers first (without
// a usable link nothing else can run), no-redirects last (it reads what
// the others saw).
var checks = []check{
	{
		name: checkAnswers, required: true, run: runAnswers,
		title: "a try answers 201 (or 200) with a participant link tccd reads; a confirm answers 2xx once confirmed; a confirm of an unknown reservation answers 404",
		why: "tccd learns a reservation from the try's answer: a Link header (rel=\"tcc\" with expires), a JSON body {\"participantLink\":{uri,expires}} " +
			"served as application/json, or 201 with Location and Tcc-Expires. It takes every 2xx to a confirm as \"confirmed\", and 404 or 410 as \"this reservation is gone\".",
	},
	{
		name: checkConfirmIdempotent, required: true, run: runConfirmIdempotent,
		title: "confirm is idempotent: a second PUT of a confirmed reservation answers 2xx again",
		why:   "tccd repeats a confirm whose answer it did not get (a timeout, a reset connection, a 5xx, a restart of tccd); a refusal of the repeat leaves the participant failed and the transaction heuristic.",
	},
	{
		name: checkCancelIdempotent, required: true, run: runCancelIdempotent,
		title: "cancel is idempotent: a DELETE of a live reservation answers 2xx, and a second one 2xx (or 404/410)",
		why:   "tccd repeats a cancel whose answer it did not get; anything else makes it retry until the link expires and then report the transaction heuristic.",
	},
	{
		name: checkCancelUnknown, required: true, run: runCancelUnknown,
		title: "a cancel of a reservation the service does not know answers 404 (or 2xx)",
		why:   "tccd may cancel a reservation the service never committed (a try that failed after its answer was sent) or no longer keeps; 404 tells it there is nothing to undo.",
	},
	{
		name: checkConfirmAfterCancel, required: true, run: runConfirmAfterCancel,
		title: "a confirm of a cancelled reservation answers 404 (or 410)",
		why:   "tccd takes 404/410 to a confirm as \"this participant cancelled\" and cancels the others; a 2xx would have it report the transaction confirmed while this resource was released.",
	},
	{
		name: checkCancelAfterConfirm, required: true, run: runCancelAfterConfirm,
		title: "a cancel of a confirmed reservation is refused with a 4xx such as 409, never 2xx (nor 404/410)",
		why: "tccd cancels participants whose confirm may have landed (in doubt after a timeout); it must learn that one confirmed, " +
			"which a 409 says, to report the outcome truly. A 2xx or 404/410 tells it the reservation was cancelled.",
	},
	{
		name: checkTryIdempotent, run: runTryIdempotent,
		// Required when the try carries a key; without one it cannot run.
		requiredIf: Trier.Keyed,
		title:      "a repeated try with the same key does not reserve twice",
		why:        "an initiator repeats a try whose answer it did not get; a second reservation would hold the resource, unknown to anyone, until it expires.",
	},
	{
		name: checkExpiry, required: true, run: runExpiry,
		title: "a reservation cancels itself at its expiry: a later confirm answers 404 (or 410)",
		why: "tccd confirms a link only while it has time before its expiry, and after the expiry takes 404/410 to mean the participant cancelled on its own; " +
			"a participant in doubt is asked again past its expiry and must answer truly.",
	},
	{
		name: checkNoRedirects, required: true, run: runNoRedirects,
		title: "try, confirm and cancel answer at their own URIs: no redirects",
		why:   "tccd does not follow redirects: it takes a 3xx to a confirm or a cancel as a refusal for good.",
	},
}

// checkRun is one check being run: it records its calls.
type checkRun struct {
	r     *runner
	name  string
	calls []Call
}

// Errors that stop a check from observing what it wants.
var (
	errRedirect = errors.New("answered with a redirect")
	errNoLink   = errors.New("no usable participant link")
	// errNoReservation: the answers check found that no reservation can
	// be made; it says why.
	errNoReservation = errors.New("no reservation could be made")
)

// try makes a reservation and returns the answer, whatever it holds.
func (c *checkRun) try(ctx context.Context, key string, short bool) (*TryAnswer, error) {
	ans, err := c.r.cfg.Try.Try(ctx, c.r.hc, key, short)
	if ans != nil {
		c.record(ans.Call)
	}
	if err != nil {
		return nil, err
	}
	if ans.HTTP && isRedirect(ans.Status) {
		return ans, fmt.Errorf("the try %w (%d)", errRedirect, ans.Status)
	}
	for _, l := range ans.Links {
		c.r.mu.Lock()
		if _, ok := c.r.made[l.URI]; !ok {
			c.r.made[l.URI] = false
		}
		if c.r.firstURI == "" {
			c.r.firstURI = l.URI
		}
		c.r.mu.Unlock()
	}
	return ans, nil
}

// reserve makes a reservation and returns its link.
func (c *checkRun) reserve(ctx context.Context, key string, short bool) (client.Link, error) {
	c.r.mu.Lock()
	why := c.r.noReservation
	c.r.mu.Unlock()
	if why != "" {
		return client.Link{}, errNoReservation
	}
	ans, err := c.try(ctx, key, short)
	switch {
	case err != nil:
		return client.Link{}, err
	case ans.LinkErr != nil:
		return client.Link{}, fmt.Errorf("%w: %v", errNoLink, ans.LinkErr)
	case len(ans.Links) == 0:
		return client.Link{}, fmt.Errorf("%w in the try's answer", errNoLink)
	}
	return ans.Links[0], nil
}

// call sends a confirm (PUT) or cancel (DELETE) as tccd does, and returns
// the status. A redirect is errRedirect; no answer is another error.
func (c *checkRun) call(ctx context.Context, method, uri string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, uri, nil)
	if err != nil {
		return 0, err
	}
	req.Header = http.Header{"Accept": {api.MediaTCC}, "Content-Type": {api.MediaTCC}, "User-Agent": {userAgent}}
	call := Call{Method: method, URI: uri}
	resp, err := c.r.hc.Do(req)
	if err != nil {
		call.Error = "no answer: " + errorText(err)
		c.record(call)
		return 0, fmt.Errorf("%s %s got no answer: %s", method, uri, errorText(err))
	}
	resp.Body.Close()
	call.Status = resp.StatusCode
	c.record(call)
	if isRedirect(resp.StatusCode) {
		return resp.StatusCode, fmt.Errorf("%s %w (%d)", method, errRedirect, resp.StatusCode)
	}
	if is2xx(resp.StatusCode) {
		c.r.mu.Lock()
		if _, ok := c.r.made[uri]; ok {
			c.r.made[uri] = true
		}
		c.r.mu.Unlock()
	}
	return resp.StatusCode, nil
}

func (c *checkRun) record(call Call) {
	c.calls = append(c.calls, call)
	if isRedirect(call.Status) {
		c.r.mu.Lock()
		c.r.redirects = append(c.r.redirects, call)
		c.r.mu.Unlock()
	}
}

// blocked is the verdict of a check stopped by err before it could see
// what it checks.
func (c *checkRun) blocked(err error) verdict {
	switch {
	case errors.Is(err, errRedirect):
		return notChecked("%v: see %s", err, checkNoRedirects)
	case errors.Is(err, errNoReservation):
		return notChecked("%v: see %s", err, checkAnswers)
	case errors.Is(err, errNoLink):
		return notChecked("%v: see %s", err, checkAnswers)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return notChecked("interrupted")
	}
	return fail("answer every call within the timeout; tccd retries a call that got no answer, and a confirm without an answer leaves the participant in doubt",
		"%v", err)
}

// unknownURI returns a URI of a reservation the service never made.
func (c *checkRun) unknownURI() (string, error) {
	if c.r.cfg.UnknownURI != "" {
		return c.r.cfg.UnknownURI, nil
	}
	c.r.mu.Lock()
	first := c.r.firstURI
	c.r.mu.Unlock()
	if first == "" {
		return "", errNoReservation
	}
	return varyURI(first)
}

func is2xx(s int) bool      { return s >= 200 && s < 300 }
func isRedirect(s int) bool { return s >= 300 && s < 400 }
func goneStatus(s int) bool { return s == http.StatusNotFound || s == http.StatusGone }
func cancelDone(s int) bool { return is2xx(s) || goneStatus(s) || s == http.StatusMethodNotAllowed }
func status(s int) string   { return fmt.Sprintf("%d %s", s, http.StatusText(s)) }
func errorText(e error) string {
	var ue *url.Error
	if errors.As(e, &ue) {
		e = ue.Err
	}
	return e.Error()
}

// runAnswers checks the try's answer, a confirm of the fresh reservation,
// and a confirm of an unknown one.
func runAnswers(ctx context.Context, c *checkRun) verdict {
	ans, err := c.try(ctx, newKey(), false)
	if err != nil {
		c.r.mu.Lock()
		c.r.noReservation = err.Error()
		c.r.mu.Unlock()
		if errors.Is(err, errRedirect) {
			return c.blocked(err)
		}
		return fail("make the try answer: tccd's initiators cannot begin without it", "%v", err)
	}
	var seen, fixes []string
	problem := func(fix, format string, args ...any) {
		seen = append(seen, fmt.Sprintf(format, args...))
		fixes = append(fixes, fix)
	}
	if ans.HTTP {
		if ans.Status != http.StatusCreated && ans.Status != http.StatusOK {
			problem("answer a try with 201 Created (or 200) once the reservation is made",
				"the try answered %s", status(ans.Status))
		}
		mt, _, _ := mime.ParseMediaType(ans.Header.Get("Content-Type"))
		if bytes.Contains(ans.Body, []byte(`"participantLink"`)) && mt != api.MediaJSON {
			problem("serve the try's JSON body as Content-Type: application/json",
				"the try's body holds a participantLink but is labelled %q: tccd's client reads such a body only from an application/json answer", ans.Header.Get("Content-Type"))
		}
	}
	var link client.Link
	switch {
	case ans.LinkErr != nil:
		problem("give the link's URI as an absolute http(s) URL and its expiry as an RFC 3339 date-time",
			"tccd cannot read the participant link: %v", ans.LinkErr)
	case len(ans.Links) == 0:
		problem("answer the try with the reservation's link: Link: <uri>; rel=\"tcc\"; expires=\"<RFC 3339>\", or a body {\"participantLink\":{\"uri\":…,\"expires\":…}}",
			"the try's answer has no participant link")
	default:
		link = ans.Links[0]
		if !link.Expires.After(time.Now()) {
			problem("give the expiry the reservation really has, in the future",
				"the link's expiry %s is not in the future", link.Expires.Format(time.RFC3339))
			link = client.Link{}
		}
	}
	if link.URI == "" {
		c.r.mu.Lock()
		c.r.noReservation = "the try's answer has no usable participant link"
		c.r.mu.Unlock()
		return verdict{result: Fail, detail: strings.Join(seen, "; "), fix: strings.Join(fixes, "; ")}
	}
	confirmed, err := c.call(ctx, http.MethodPut, link.URI)
	switch st := confirmed; {
	case err != nil:
		return c.blocked(err)
	case st == http.StatusAccepted:
		problem("answer a confirm only once the reservation is confirmed, with 200 or 204",
			"a confirm answered 202 Accepted, but tccd takes every 2xx as confirmed")
	case !is2xx(st):
		problem("confirm a tried reservation and answer 2xx",
			"a confirm of a fresh reservation answered %s", status(st))
	}
	unknown, err := c.unknownURI()
	if err != nil {
		return c.blocked(err)
	}
	st, err := c.call(ctx, http.MethodPut, unknown)
	switch {
	case err != nil:
		return c.blocked(err)
	case is2xx(st):
		problem("answer 404 Not Found to a confirm of a reservation the service does not have",
			"a confirm of a reservation the service never made (%s) answered %s", unknown, status(st))
	case !goneStatus(st):
		problem("answer 404 Not Found to a confirm of a reservation the service does not have",
			"a confirm of a reservation the service never made (%s) answered %s, not 404", unknown, status(st))
	}
	if len(seen) > 0 {
		return verdict{result: Fail, detail: strings.Join(seen, "; "), fix: strings.Join(fixes, "; ")}
	}
	answered := "the try command printed"
	if ans.HTTP {
		answered = "the try answered " + status(ans.Status) + " with"
	}
	return pass("%s the link %s; a confirm of it answered %d, a confirm of a reservation never made %d", answered, link.URI, confirmed, st)
}

func runConfirmIdempotent(ctx context.Context, c *checkRun) verdict {
	link, err := c.reserve(ctx, newKey(), false)
	if err != nil {
		return c.blocked(err)
	}
	first, err := c.call(ctx, http.MethodPut, link.URI)
	if err != nil {
		return c.blocked(err)
	}
	if !is2xx(first) {
		return fail("confirm a tried reservation and answer 2xx", "a confirm of a fresh reservation answered %s", status(first))
	}
	second, err := c.call(ctx, http.MethodPut, link.URI)
	if err != nil {
		return c.blocked(err)
	}
	if !is2xx(second) {
		return fail("answer 2xx (200 or 204) to every confirm of a confirmed reservation, doing nothing more",
			"a second confirm of a confirmed reservation answered %s", status(second))
	}
	return pass("two confirms answered %d and %d", first, second)
}

func runCancelIdempotent(ctx context.Context, c *checkRun) verdict {
	link, err := c.reserve(ctx, newKey(), false)
	if err != nil {
		return c.blocked(err)
	}
	first, err := c.call(ctx, http.MethodDelete, link.URI)
	if err != nil {
		return c.blocked(err)
	}
	if !is2xx(first) {
		return fail("cancel a tried reservation and answer 2xx", "a cancel of a fresh reservation answered %s", status(first))
	}
	second, err := c.call(ctx, http.MethodDelete, link.URI)
	if err != nil {
		return c.blocked(err)
	}
	if !cancelDone(second) {
		return fail("answer 2xx (or 404 or 410) to every cancel of a cancelled reservation",
			"a second cancel of a cancelled reservation answered %s", status(second))
	}
	return pass("two cancels answered %d and %d", first, second)
}

func runCancelUnknown(ctx context.Context, c *checkRun) verdict {
	uri, err := c.unknownURI()
	if err != nil {
		return c.blocked(err)
	}
	st, err := c.call(ctx, http.MethodDelete, uri)
	if err != nil {
		return c.blocked(err)
	}
	if !cancelDone(st) {
		return fail("answer 404 Not Found (or 2xx) to a cancel of a reservation the service does not have",
			"a cancel of a reservation the service never made (%s) answered %s", uri, status(st))
	}
	return pass("a cancel of a reservation the service never made answered %d", st)
}

func runConfirmAfterCancel(ctx context.Context, c *checkRun) verdict {
	link, err := c.reserve(ctx, newKey(), false)
	if err != nil {
		return c.blocked(err)
	}
	st, err := c.call(ctx, http.MethodDelete, link.URI)
	if err != nil {
		return c.blocked(err)
	}
	if !is2xx(st) {
		return notChecked("the cancel answered %s: see %s", status(st), checkCancelIdempotent)
	}
	st, err = c.call(ctx, http.MethodPut, link.URI)
	switch {
	case err != nil:
		return c.blocked(err)
	case is2xx(st):
		return fail("answer 404 Not Found (or 410 Gone) to a confirm of a cancelled reservation, and keep it cancelled",
			"a confirm of a cancelled reservation answered %s: the service claims to confirm what it released", status(st))
	case !goneStatus(st):
		return fail("answer 404 Not Found (or 410 Gone) to a confirm of a cancelled reservation",
			"a confirm of a cancelled reservation answered %s, which tccd takes as a refusal for good, not as \"cancelled\"", status(st))
	}
	return pass("a confirm of a cancelled reservation answered %d", st)
}

func runCancelAfterConfirm(ctx context.Context, c *checkRun) verdict {
	link, err := c.reserve(ctx, newKey(), false)
	if err != nil {
		return c.blocked(err)
	}
	st, err := c.call(ctx, http.MethodPut, link.URI)
	if err != nil {
		return c.blocked(err)
	}
	if !is2xx(st) {
		return notChecked("the confirm answered %s: see %s", status(st), checkConfirmIdempotent)
	}
	st, err = c.call(ctx, http.MethodDelete, link.URI)
	const fix = "refuse a cancel of a confirmed reservation with 409 Conflict, and keep it confirmed"
	switch {
	case err != nil:
		return c.blocked(err)
	case cancelDone(st):
		return fail(fix, "a cancel of a confirmed reservation answered %s, which tells tccd it was cancelled", status(st))
	case st >= 500 || st == 408 || st == 425 || st == 429:
		return fail(fix, "a cancel of a confirmed reservation answered %s, which tccd retries as a passing failure", status(st))
	case st < 400:
		return fail(fix, "a cancel of a confirmed reservation answered %s", status(st))
	}
	return pass("a cancel of a confirmed reservation was refused with %d", st)
}

func runTryIdempotent(ctx context.Context, c *checkRun) verdict {
	if !c.r.cfg.Try.Keyed() {
		return notChecked("no way to repeat a try was given: name the header of the try's key (--idempotency-header), or put %s in the try's URL, body or headers", KeyPlaceholder)
	}
	key := newKey()
	first, err := c.reserve(ctx, key, false)
	if err != nil {
		return c.blocked(err)
	}
	second, err := c.reserve(ctx, key, false)
	if err != nil {
		return c.blocked(err)
	}
	if first.URI != second.URI {
		return fail("recognise a repeated try by its key and answer the first reservation's link again",
			"two tries with the key %s made two reservations: %s and %s", key, first.URI, second.URI)
	}
	return pass("two tries with the same key answered the same reservation")
}

func runExpiry(ctx context.Context, c *checkRun) verdict {
	short := c.r.cfg.Try.CanShorten()
	link, err := c.reserve(ctx, newKey(), short)
	if err != nil {
		return c.blocked(err)
	}
	wait := time.Until(link.Expires) + c.r.cfg.ExpiryGrace
	if wait > c.r.cfg.MaxWait {
		hint := "give --ttl-param if the service's try takes a lifetime"
		if short {
			hint = "the service did not grant the short lifetime asked for with --ttl-param"
		}
		return notChecked("the reservation expires in %v, beyond --max-wait %v: %s, or a longer --max-wait",
			time.Until(link.Expires).Round(time.Second), c.r.cfg.MaxWait, hint)
	}
	if wait > 2*time.Second {
		c.r.progress("waiting %v for a reservation to pass its expiry", wait.Round(time.Second))
	}
	t := time.NewTimer(wait)
	select {
	case <-ctx.Done():
		t.Stop()
		return notChecked("interrupted")
	case <-t.C:
	}
	st, err := c.call(ctx, http.MethodPut, link.URI)
	switch {
	case err != nil:
		return c.blocked(err)
	case is2xx(st):
		return fail("cancel a reservation on your own at its expiry, and answer 404 (or 410) to a confirm that comes later",
			"a confirm %v after the reservation's expiry answered %s", c.r.cfg.ExpiryGrace, status(st))
	case !goneStatus(st):
		return fail("answer 404 Not Found (or 410 Gone) to a confirm of an expired reservation",
			"a confirm after the reservation's expiry answered %s", status(st))
	}
	return pass("a confirm after the reservation's expiry answered %d", st)
}

// runNoRedirects makes its own try, confirm and cancel, and reports every
// redirect any check saw.
func runNoRedirects(ctx context.Context, c *checkRun) verdict {
	if link, err := c.reserve(ctx, newKey(), false); err == nil {
		_, _ = c.call(ctx, http.MethodPut, link.URI)
	}
	if link, err := c.reserve(ctx, newKey(), false); err == nil {
		_, _ = c.call(ctx, http.MethodDelete, link.URI)
	}
	c.r.mu.Lock()
	seen := append([]Call(nil), c.r.redirects...)
	why := c.r.noReservation
	c.r.mu.Unlock()
	switch {
	case len(seen) == 0 && why != "":
		return c.blocked(errNoReservation)
	case len(seen) == 0:
		return pass("no answer was a redirect")
	}
	var list []string
	for i, call := range seen {
		if i == 3 {
			list = append(list, fmt.Sprintf("and %d more", len(seen)-3))
			break
		}
		list = append(list, call.String())
	}
	return fail("serve the try, confirm and cancel at the URIs themselves (the link's URI for confirm and cancel), with no redirect",
		"%d %s were redirects: %s", len(seen), plural(len(seen), "answer", "answers"), strings.Join(list, "; "))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// varyURI returns uri with its last path segment changed to a random one
// of the same shape (the same length and kinds of characters), so that
// it names a reservation the service never made but would accept as an
// id. A short segment is lengthened: a random short id might exist.
func varyURI(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", err
	}
	segs := strings.Split(u.Path, "/")
	i := len(segs) - 1
	for i >= 0 && segs[i] == "" {
		i--
	}
	if i < 0 {
		return "", fmt.Errorf("%w: the reservation URI %s has no path segment to vary (give --unknown-uri)", errNoLink, uri)
	}
	for range 10 {
		if v := varySegment(segs[i]); v != segs[i] {
			segs[i] = v
			u.Path, u.RawPath = strings.Join(segs, "/"), ""
			return u.String(), nil
		}
	}
	return "", fmt.Errorf("%w: cannot vary the last path segment of %s (give --unknown-uri)", errNoLink, uri)
}

const (
	digits   = "0123456789"
	lower    = "abcdefghijklmnopqrstuvwxyz"
	upper    = "ABCDEFGHJKMNPQRSTVWXYZ" // no I, L, O, U: ULIDs' alphabet
	hexLower = "0123456789abcdef"
	hexUpper = "0123456789ABCDEF"
)

// minVaried is the length a varied segment is brought to.
const minVaried = 16

func varySegment(s string) string {
	// The alphabet of each character: the segment's own when it is all
	// digits or hex (so that a UUID stays one), else per character.
	whole := ""
	switch {
	case only(s, digits):
		whole = digits
	case only(s, hexLower+"-"):
		whole = hexLower
	case only(s, hexUpper+"-"):
		whole = hexUpper
	}
	var b strings.Builder
	alnum := 0
	var last string
	for _, r := range s {
		alpha := whole
		switch {
		case alpha != "" && r != '-':
		case strings.ContainsRune(digits, r):
			alpha = digits
		case r >= 'a' && r <= 'z':
			alpha = lower
		case r >= 'A' && r <= 'Z':
			alpha = upper
		default:
			b.WriteRune(r)
			continue
		}
		last = alpha
		alnum++
		b.WriteByte(alpha[rand.IntN(len(alpha))])
	}
	for ; last != "" && alnum < minVaried; alnum++ {
		b.WriteByte(last[rand.IntN(len(last))])
	}
	return b.String()
}

func only(s, set string) bool {
	for _, r := range s {
		if !strings.ContainsRune(set, r) {
			return false
		}
	}
	return s != ""
}
