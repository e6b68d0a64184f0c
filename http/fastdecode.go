package http

import (
	"bytes"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// decodeAtomikosFast reads the usual Atomikos request body,
// {"participantLinks":[{"uri":"…","expires":"…"},…]}, with a streaming
// tokenizer instead of reflection: encoding/json's decoder was the largest
// single cost of a one-shot confirm request in profiles. It gives up
// (ok=false) at anything the reflective decoder might read differently or
// reject — a syntax error, a null or a value of another type, a name that
// matches a field only case-insensitively, a repeated name — and the caller
// then decodes with encoding/json, which words the errors. On success the
// result is what encoding/json would have produced; a fuzz test holds the
// two to that.
func decodeAtomikosFast(body []byte) (links []Link, ok bool) {
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, false
	}
	seen := false
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil || name.Kind() != '"' {
			return nil, false
		}
		switch n := name.String(); {
		case n == "participantLinks":
			if seen {
				return nil, false
			}
			seen = true
			if links, ok = readLinks(dec); !ok {
				return nil, false
			}
		case foldsToField(n, "participantLinks"):
			return nil, false
		default:
			if dec.SkipValue() != nil {
				return nil, false
			}
		}
	}
	return links, seen && closedAtEnd(dec)
}

// closedAtEnd reads the closing brace of the top-level object and reports
// whether nothing but white space follows it.
func closedAtEnd(dec *jsontext.Decoder) bool {
	if _, err := dec.ReadToken(); err != nil {
		return false
	}
	_, err := dec.ReadToken()
	return err == io.EOF
}

// readLinks reads an array of link objects.
func readLinks(dec *jsontext.Decoder) ([]Link, bool) {
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '[' {
		return nil, false
	}
	links := make([]Link, 0, 4)
	for dec.PeekKind() == '{' {
		l, ok := readLink(dec, false)
		if !ok {
			return nil, false
		}
		links = append(links, l)
	}
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != ']' {
		return nil, false
	}
	return links, true
}

// readLink reads one link object. With strict, a member other than uri,
// expires and rel gives up (encoding/json then names it in its error);
// without, it is skipped.
func readLink(dec *jsontext.Decoder, strict bool) (Link, bool) {
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return Link{}, false
	}
	var l Link
	var uri, expires string
	var hasURI, hasExpires, hasRel bool
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil || name.Kind() != '"' {
			return Link{}, false
		}
		n := name.String()
		var dst *string
		var has *bool
		switch {
		case n == "uri":
			dst, has = &uri, &hasURI
		case n == "expires":
			dst, has = &expires, &hasExpires
		case n == "rel":
			dst, has = &l.Rel, &hasRel
		case strict || foldsToField(n, "uri", "expires", "rel"):
			return Link{}, false
		default:
			if dec.SkipValue() != nil {
				return Link{}, false
			}
			continue
		}
		v, err := dec.ReadToken()
		if err != nil || v.Kind() != '"' || *has {
			return Link{}, false
		}
		*dst, *has = v.String(), true
	}
	if _, err := dec.ReadToken(); err != nil {
		return Link{}, false
	}
	if hasURI {
		l.URI = &uri
	}
	if hasExpires {
		l.Expires = &expires
	}
	return l, true
}

// decodeLinkFast reads the body of an enlist request, one link object
// with no other members, as decodeAtomikosFast reads its body: it gives up
// at anything encoding/json might read differently or reject.
func decodeLinkFast(body []byte) (Link, bool) {
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	if dec.PeekKind() != '{' {
		return Link{}, false
	}
	l, ok := readLink(dec, true)
	if !ok {
		return Link{}, false
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return Link{}, false
	}
	return l, true
}

// decodeBeginFast reads the body of a begin request — an object with any
// of timeout, name (strings), labels (an object of strings) and
// participants (link objects), nothing else — as decodeAtomikosFast reads
// its body: it gives up at anything encoding/json might read differently
// or reject.
func decodeBeginFast(body []byte) (req BeginRequest, ok bool) {
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return req, false
	}
	// Repeated names make the tokenizer fail: each member is read once.
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil || name.Kind() != '"' {
			return req, false
		}
		switch name.String() {
		case "timeout":
			v, err := dec.ReadToken()
			if err != nil || v.Kind() != '"' {
				return req, false
			}
			t := v.String()
			req.Timeout = &t
		case "name":
			v, err := dec.ReadToken()
			if err != nil || v.Kind() != '"' {
				return req, false
			}
			req.Name = v.String()
		case "notify":
			v, err := dec.ReadToken()
			if err != nil || v.Kind() != '"' {
				return req, false
			}
			req.Notify = v.String()
		case "barrier":
			v, err := dec.ReadToken()
			if err != nil || (v.Kind() != 't' && v.Kind() != 'f') {
				return req, false
			}
			req.Barrier = v.Bool()
		case "labels":
			if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
				return req, false
			}
			req.Labels = make(map[string]string)
			for dec.PeekKind() != '}' {
				k, err := dec.ReadToken()
				if err != nil || k.Kind() != '"' {
					return req, false
				}
				key := k.String() // a token is void after the next read
				v, err := dec.ReadToken()
				if err != nil || v.Kind() != '"' {
					return req, false
				}
				req.Labels[key] = v.String()
			}
			if _, err := dec.ReadToken(); err != nil {
				return req, false
			}
		case "participants":
			if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '[' {
				return req, false
			}
			req.Participants = make([]Link, 0, 4)
			for dec.PeekKind() == '{' {
				l, ok := readLink(dec, true)
				if !ok {
					return req, false
				}
				req.Participants = append(req.Participants, l)
			}
			if tok, err := dec.ReadToken(); err != nil || tok.Kind() != ']' {
				return req, false
			}
		default:
			// Unknown, or a field's name in other case: encoding/json
			// refuses the one and reads the other.
			return req, false
		}
	}
	return req, closedAtEnd(dec)
}

// foldsToField reports whether encoding/json could match name to one of
// the fields although it is not spelled exactly so: it matches names
// case-insensitively, with Unicode folding, so any non-ASCII name counts.
func foldsToField(name string, fields ...string) bool {
	if !isASCII(name) {
		return true
	}
	for _, f := range fields {
		if strings.EqualFold(name, f) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
