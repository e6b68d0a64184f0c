package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tccd/tccd/api"
)

// webLink is one link of a Link header (RFC 8288).
type webLink struct {
	Target string
	// Params holds the parameters by lower-case name; the first
	// occurrence of a name wins, as RFC 8288 says for rel.
	Params map[string]string
}

// hasRel reports whether the link's rel parameter lists rel (relation
// types are compared case-insensitively).
func (l webLink) hasRel(rel string) bool {
	for _, r := range strings.Fields(l.Params["rel"]) {
		if strings.EqualFold(r, rel) {
			return true
		}
	}
	return false
}

// parseLinkHeader parses the values of Link headers: several links per
// value separated by commas, parameters with token or quoted-string values
// (in which commas, semicolons and escaped quotes are plain text). A
// malformed link is skipped up to the next comma outside quotes; the
// others are kept.
func parseLinkHeader(values []string) []webLink {
	var out []webLink
	for _, v := range values {
		p := linkParser{s: v}
		for {
			l, ok, more := p.next()
			if ok {
				out = append(out, l)
			}
			if !more {
				break
			}
		}
	}
	return out
}

type linkParser struct {
	s string
	i int
}

func (p *linkParser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// skipToComma moves past the next comma that is not inside quotes or
// angle brackets.
func (p *linkParser) skipToComma() {
	quoted, angle := false, false
	for ; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		switch {
		case quoted && c == '\\':
			p.i++
		case c == '"' && !angle:
			quoted = !quoted
		case c == '<' && !quoted:
			angle = true
		case c == '>' && !quoted:
			angle = false
		case c == ',' && !quoted && !angle:
			p.i++
			return
		}
	}
}

// next parses one link. ok reports a well-formed link; more that the
// value may hold further links.
func (p *linkParser) next() (l webLink, ok, more bool) {
	for {
		p.skipSpace()
		if p.i < len(p.s) && p.s[p.i] == ',' {
			p.i++
			continue
		}
		break
	}
	if p.i >= len(p.s) {
		return webLink{}, false, false
	}
	if p.s[p.i] != '<' {
		p.skipToComma()
		return webLink{}, false, true
	}
	end := strings.IndexByte(p.s[p.i+1:], '>')
	if end < 0 {
		return webLink{}, false, false
	}
	l = webLink{Target: strings.TrimSpace(p.s[p.i+1 : p.i+1+end]), Params: map[string]string{}}
	p.i += end + 2
	for {
		p.skipSpace()
		if p.i >= len(p.s) {
			return l, true, false
		}
		if p.s[p.i] == ',' {
			p.i++
			return l, true, true
		}
		if p.s[p.i] != ';' {
			p.skipToComma()
			return webLink{}, false, true
		}
		p.i++
		p.skipSpace()
		start := p.i
		for p.i < len(p.s) && !strings.ContainsRune("=;, \t\"", rune(p.s[p.i])) {
			p.i++
		}
		name := strings.ToLower(p.s[start:p.i])
		p.skipSpace()
		value := ""
		if p.i < len(p.s) && p.s[p.i] == '=' {
			p.i++
			p.skipSpace()
			var good bool
			if value, good = p.value(); !good {
				return webLink{}, false, false
			}
		}
		if name == "" {
			continue // a stray ";"
		}
		if _, dup := l.Params[name]; !dup {
			l.Params[name] = value
		}
	}
}

// value reads a token or a quoted string; ok is false for an unterminated
// quoted string.
func (p *linkParser) value() (string, bool) {
	if p.i < len(p.s) && p.s[p.i] == '"' {
		var b strings.Builder
		for p.i++; p.i < len(p.s); p.i++ {
			c := p.s[p.i]
			switch {
			case c == '\\' && p.i+1 < len(p.s):
				p.i++
				b.WriteByte(p.s[p.i])
			case c == '"':
				p.i++
				return b.String(), true
			default:
				b.WriteByte(c)
			}
		}
		return "", false
	}
	start := p.i
	for p.i < len(p.s) && !strings.ContainsRune(";, \t", rune(p.s[p.i])) {
		p.i++
	}
	return p.s[start:p.i], true
}

// formatLink renders a participant link as a Link header value:
// <uri>; rel="tcc"; expires="…".
func formatLink(l Link) string {
	return fmt.Sprintf(`<%s>; rel="%s"; %s="%s"`, l.URI, api.RelParticipant, api.ParamExpires, formatTime(l.Expires))
}

// formatTxLink renders the transaction's Link header value.
func formatTxLink(txURL string) string {
	return fmt.Sprintf(`<%s>; rel="%s"`, txURL, api.RelTransaction)
}

// parseTime reads a date-time: RFC 3339 with any offset (Z, +01:00 or
// +0100) and optional fractional seconds.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02T15:04:05.999999999Z0700", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("not an RFC 3339 date-time: %q", s)
}

// parseTimeLimit reads MicroTx's timeLimit: an RFC 3339 date-time, or a
// time from now as a number of seconds ("30", "2.5") or a Go duration
// ("30s", "1m30s"). A time from now must be positive.
func parseTimeLimit(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := parseTime(s); err == nil {
		return t, nil
	}
	var d time.Duration
	if f, err := strconv.ParseFloat(s, 64); err == nil && !strings.ContainsAny(s, "eEnNxXpP") {
		if f > float64(100*365*24*time.Hour/time.Second) {
			return time.Time{}, fmt.Errorf("timeLimit is too far away: %q", s)
		}
		d = time.Duration(f * float64(time.Second))
	} else if d, err = time.ParseDuration(s); err != nil {
		return time.Time{}, fmt.Errorf("timeLimit must be an RFC 3339 date-time, a number of seconds or a duration, not %q", s)
	}
	if d <= 0 {
		return time.Time{}, fmt.Errorf("timeLimit must be in the future, not %q", s)
	}
	return now.Add(d), nil
}

// ReadLinks returns the participant links an answer reports, read as
// Transport reads them (see the package documentation for the forms
// understood), each URI once; a relative link is resolved against the
// URL of resp.Request. A JSON body read for a link is put back for the
// caller. An error means the answer reports a reservation that cannot be
// read: no expiry, a bad date, a URI that is not http or https.
func ReadLinks(resp *http.Response) ([]Link, error) {
	var base *url.URL
	if resp.Request != nil {
		base = resp.Request.URL
	}
	return collectLinks(resp, base, time.Now())
}

// maxLinkBody bounds how much of a JSON answer is read to look for a
// {"participantLink":…}.
const maxLinkBody = 1 << 20

// collectLinks returns the participant links an answer to a request for
// reqURL reports, in the order found, each URI once: Link headers with
// rel="tcc" (expires) or MicroTx's participant rel (timeLimit); for a 2xx
// application/json answer, a {"participantLink":{uri,expires}} body (the
// body is restored for the caller); for 201, Location with Tcc-Expires.
// An error means the answer reports a reservation that cannot be read.
func collectLinks(resp *http.Response, reqURL *url.URL, now time.Time) ([]Link, error) {
	var out []Link
	seen := map[string]bool{}
	add := func(target string, exp time.Time) error {
		uri, err := resolve(reqURL, target)
		if err != nil {
			return err
		}
		if !seen[uri] {
			seen[uri] = true
			out = append(out, Link{URI: uri, Expires: exp})
		}
		return nil
	}

	for _, wl := range parseLinkHeader(resp.Header.Values("Link")) {
		var exp time.Time
		var err error
		switch {
		case wl.hasRel(api.RelParticipant):
			v, ok := wl.Params[api.ParamExpires]
			if !ok {
				return nil, fmt.Errorf("participant link %s has no %s parameter", wl.Target, api.ParamExpires)
			}
			if exp, err = parseTime(v); err != nil {
				return nil, fmt.Errorf("participant link %s: %w", wl.Target, err)
			}
		case wl.hasRel(api.MicroTxRelParticipant):
			if v, ok := wl.Params[strings.ToLower(api.MicroTxParamTimeLimit)]; ok {
				exp, err = parseTimeLimit(v, now)
			} else if v, ok := wl.Params[api.ParamExpires]; ok {
				exp, err = parseTime(v)
			} else {
				err = fmt.Errorf("no %s parameter", api.MicroTxParamTimeLimit)
			}
			if err != nil {
				return nil, fmt.Errorf("participant link %s: %w", wl.Target, err)
			}
		default:
			continue
		}
		if err := add(wl.Target, exp); err != nil {
			return nil, err
		}
	}

	if l, found, err := bodyLink(resp); err != nil {
		return nil, err
	} else if found {
		if err := add(l.URI, l.Expires); err != nil {
			return nil, err
		}
	}

	if resp.StatusCode == http.StatusCreated {
		if v := resp.Header.Get(api.HeaderExpires); v != "" {
			loc := resp.Header.Get("Location")
			if loc == "" {
				return nil, fmt.Errorf("201 Created with %s but no Location", api.HeaderExpires)
			}
			exp, err := parseTime(v)
			if err != nil {
				return nil, fmt.Errorf("%s of %s: %w", api.HeaderExpires, loc, err)
			}
			if err := add(loc, exp); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// bodyLink looks for {"participantLink":{uri,expires}} in a 2xx
// application/json answer. It reads at most maxLinkBody bytes and puts
// them back in front of the rest of the body.
func bodyLink(resp *http.Response) (Link, bool, error) {
	if resp.StatusCode < 200 || resp.StatusCode > 299 || resp.Body == nil || resp.Body == http.NoBody {
		return Link{}, false, nil
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != api.MediaJSON {
		return Link{}, false, nil
	}
	buf, rerr := io.ReadAll(io.LimitReader(resp.Body, maxLinkBody+1))
	rest := io.Reader(resp.Body)
	if rerr != nil {
		rest = errReader{rerr}
	}
	resp.Body = &restoredBody{Reader: io.MultiReader(bytes.NewReader(buf), rest), closer: resp.Body}
	if rerr != nil || len(buf) > maxLinkBody {
		return Link{}, false, nil
	}
	var doc struct {
		ParticipantLink *api.Link `json:"participantLink"`
	}
	if json.Unmarshal(buf, &doc) != nil || doc.ParticipantLink == nil {
		return Link{}, false, nil
	}
	pl := doc.ParticipantLink
	if pl.URI == nil || *pl.URI == "" {
		return Link{}, false, errors.New("participantLink in the answer has no uri")
	}
	if pl.Expires == nil {
		return Link{}, false, fmt.Errorf("participantLink %s in the answer has no expires", *pl.URI)
	}
	exp, err := parseTime(*pl.Expires)
	if err != nil {
		return Link{}, false, fmt.Errorf("participantLink %s: %w", *pl.URI, err)
	}
	return Link{URI: *pl.URI, Expires: exp}, true, nil
}

// resolve makes a link target absolute, relative to the request URL.
func resolve(base *url.URL, target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", fmt.Errorf("participant link %q is not a URL: %w", target, err)
	}
	if base != nil {
		u = base.ResolveReference(u)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("participant link %q is not an absolute http or https URL", target)
	}
	s := u.String()
	// Characters that would break the Link header a participant passes
	// the link on in (url.Parse already refuses control characters).
	if strings.ContainsAny(s, "<> \t") {
		return "", fmt.Errorf("participant link %q has characters not allowed in a URI", target)
	}
	return s, nil
}

// restoredBody is a response body whose start was read and put back.
type restoredBody struct {
	io.Reader
	closer io.Closer
}

func (b *restoredBody) Close() error { return b.closer.Close() }

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
