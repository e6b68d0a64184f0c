package tccd

import (
	"net/netip"
	"net/url"
	"strings"
)

// CanonicalURI validates a participant URI (see ValidateURI) and returns
// its canonical form, the one identity of a reservation: RFC 3986's
// syntax-based and scheme-based normalisation (sections 6.2.2 and 6.2.3).
//
//   - scheme and host in lower case (an IPv6 literal too);
//   - the scheme's default port (80 for http, 443 for https) and an empty
//     port dropped;
//   - percent-encodings with upper-case hex digits, and those of
//     unreserved characters (letters, digits, "-", ".", "_", "~") decoded;
//   - the dot segments "." and ".." of the path removed, and an empty path
//     made "/".
//
// So "HTTP://Host:80/a/./b/%7euser" and "http://host/a/b/~user" are one
// reservation: the same transaction id on the Atomikos API, one entry in
// a link set, one owner. The coordinator stores, calls and shows the
// canonical form. Nothing else changes: the query is kept (with its
// percent-encodings normalised), reserved characters stay encoded, and
// the case of the path is the participant's business.
func CanonicalURI(raw string) (string, error) {
	if err := ValidateURI(raw); err != nil {
		return "", err
	}
	scheme, rest, _ := strings.Cut(raw, "://")
	scheme = strings.ToLower(scheme)
	authority, pathQuery := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, pathQuery = rest[:i], rest[i:]
	}
	host, err := canonicalHost(scheme, authority)
	if err != nil {
		return "", err
	}
	path, query, hasQuery := strings.Cut(pathQuery, "?")
	path, ok := normalizePercent(path)
	if !ok {
		return "", FieldError("uri", "uri has an invalid percent-encoding in its path")
	}
	path = removeDotSegments(path)
	if path == "" {
		path = "/"
	}
	var b strings.Builder
	b.Grow(len(raw))
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	b.WriteString(path)
	if hasQuery {
		query, ok = normalizePercent(query)
		if !ok {
			return "", FieldError("uri", "uri has an invalid percent-encoding in its query")
		}
		b.WriteByte('?')
		b.WriteString(query)
	}
	out := b.String()
	if len(out) > MaxURILength {
		return "", FieldError("uri", "uri is longer than %d bytes", MaxURILength)
	}
	return out, nil
}

// canonicalHost returns host[:port] in canonical form. ValidateURI has
// checked that the authority has a host, no user information and a valid
// port, if any.
func canonicalHost(scheme, authority string) (string, error) {
	u, err := url.Parse(scheme + "://" + authority)
	if err != nil {
		return "", FieldError("uri", "uri is not a valid URL")
	}
	host, port := u.Hostname(), u.Port()
	if strings.Contains(host, "%") {
		return "", FieldError("uri", "uri host must not contain percent-encodings or an IPv6 zone")
	}
	host = strings.ToLower(host)
	if strings.Contains(host, ":") {
		// An IPv6 literal: its canonical text (RFC 5952), in brackets.
		a, err := netip.ParseAddr(host)
		if err != nil {
			return "", FieldError("uri", "uri has an invalid IPv6 address")
		}
		host = "[" + a.String() + "]"
	}
	if port != "" {
		port = strings.TrimLeft(port, "0")
	}
	if port == "" || (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		return host, nil
	}
	return host + ":" + port, nil
}

// unreserved reports whether c is an unreserved character of RFC 3986.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// normalizePercent upper-cases the hex digits of percent-encodings and
// decodes those of unreserved characters; false if an encoding is broken.
func normalizePercent(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		if c := hi<<4 | lo; unreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hexDigits[hi])
			b.WriteByte(hexDigits[lo])
		}
		i += 2
	}
	return b.String(), true
}

// removeDotSegments is the algorithm of RFC 3986 section 5.2.4.
func removeDotSegments(in string) string {
	if !strings.Contains(in, ".") {
		return in
	}
	var out []string // output segments, each with its leading "/"
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = in[3:]
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "/..":
			in = "/"
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "." || in == "..":
			in = ""
		default:
			j := strings.IndexByte(in[1:], '/')
			if j < 0 {
				out = append(out, in)
				in = ""
			} else {
				out = append(out, in[:j+1])
				in = in[j+1:]
			}
		}
	}
	return strings.Join(out, "")
}
