package http

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"testing"
)

var fastDecodeCases = []struct {
	body string
	ok   bool // the fast path reads it (else encoding/json does)
}{
	{`{"participantLinks":[{"uri":"http://a/r/1","expires":"2030-01-01T00:00:00Z"}]}`, true},
	{` {"participantLinks" : [ {"uri":"http://a/r/1","expires":"x","rel":"tcc"} , {"expires":"y"} ] } `, true},
	{`{"participantLinks":[],"other":{"deep":[1,2,{"x":null}]}}`, true},
	{`{"participantLinks":[{"uri":"http://a/r/\u00e9\"","extra":[true]}]}`, true},
	{`{"participantLinks":[{"uri":"http://a/r/1","expires":"2030-01-01T00:00:00Z"}]} {}`, false},
	{`{"participantlinks":[]}`, false},
	{`{"participantLinks":[{"URI":"http://a"}]}`, false},
	{`{"participantLinks":[{"ur\u0130":"http://a"}]}`, false},
	{`{"participantLinks":[{"uri":null}]}`, false},
	{`{"participantLinks":[{"uri":1}]}`, false},
	{`{"participantLinks":[{"uri":"a","uri":"b"}]}`, false},
	{`{"participantLinks":null}`, false},
	{`{"participantLinks":[1]}`, false},
	{`{"participantLinks":[{"uri":"a"}],"participantLinks":[]}`, false},
	{`{}`, false},
	{`[]`, false},
	{`null`, false},
	{"{\"participantLinks\":[{\"uri\":\"\xff\"}]}", false},
	{`{"participantLinks":[{"uri":"a"}]`, false},
}

func TestDecodeAtomikosFast(t *testing.T) {
	for _, tc := range fastDecodeCases {
		t.Run(tc.body, func(t *testing.T) {
			links, ok := decodeAtomikosFast([]byte(tc.body))
			if ok != tc.ok {
				t.Fatalf("fast path ok = %v, want %v", ok, tc.ok)
			}
			if ok {
				sameAsReflective(t, []byte(tc.body), links)
			}
		})
	}
}

// sameAsReflective checks that encoding/json reads body, as the fast path
// did, to links.
func sameAsReflective(t *testing.T, body []byte, links []Link) {
	t.Helper()
	var req AtomikosRequest
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatalf("fast path read %q, encoding/json refuses it: %v", body, err)
	}
	if !reflect.DeepEqual(req.ParticipantLinks, links) {
		t.Fatalf("fast path read %q as %+v, encoding/json as %+v", body, links, req.ParticipantLinks)
	}
}

// FuzzDecodeAtomikosFast holds the fast path to encoding/json: whatever it
// reads, encoding/json reads the same.
func FuzzDecodeAtomikosFast(f *testing.F) {
	for _, tc := range fastDecodeCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if links, ok := decodeAtomikosFast(body); ok {
			sameAsReflective(t, body, links)
		}
	})
}

var fastLinkCases = []struct {
	body string
	ok   bool
}{
	{`{"uri":"http://a/r/1","expires":"2030-01-01T00:00:00Z"}`, true},
	{` { "uri" : "http://a/r/\u00e9" , "rel" : "tcc" } `, true},
	{`{}`, true},
	{`{"uri":"a","other":1}`, false},
	{`{"URI":"a"}`, false},
	{`{"uri":null}`, false},
	{`{"uri":"a","uri":"b"}`, false},
	{`{"uri":"a"} {}`, false},
	{`[]`, false},
	{`null`, false},
	{`{"uri":"a"`, false},
}

func TestDecodeLinkFast(t *testing.T) {
	for _, tc := range fastLinkCases {
		t.Run(tc.body, func(t *testing.T) {
			l, ok := decodeLinkFast([]byte(tc.body))
			if ok != tc.ok {
				t.Fatalf("fast path ok = %v, want %v", ok, tc.ok)
			}
			if ok {
				sameLinkAsReflective(t, []byte(tc.body), l)
			}
		})
	}
}

// sameLinkAsReflective checks that encoding/json, strict as DecodeLink
// is, reads body as the fast path did.
func sameLinkAsReflective(t *testing.T, body []byte, l Link) {
	t.Helper()
	var want Link
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&want); err != nil {
		t.Fatalf("fast path read %q, encoding/json refuses it: %v", body, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("fast path read %q, encoding/json finds more after the value", body)
	}
	if !reflect.DeepEqual(want, l) {
		t.Fatalf("fast path read %q as %+v, encoding/json as %+v", body, l, want)
	}
}

// FuzzDecodeLinkFast holds the enlist fast path to encoding/json.
func FuzzDecodeLinkFast(f *testing.F) {
	for _, tc := range fastLinkCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if l, ok := decodeLinkFast(body); ok {
			sameLinkAsReflective(t, body, l)
		}
	})
}

var fastBeginCases = []struct {
	body string
	ok   bool
}{
	{`{"timeout":"1m"}`, true},
	{`{}`, true},
	{` {"name":"trip","labels":{"b":"2","a":"1"},"participants":[{"uri":"http://a/r/1","expires":"x"}],"timeout":"30s"} `, true},
	{`{"labels":{},"participants":[]}`, true},
	{`{"labels":{"a":"1","a":"2"}}`, false},
	{`{"labels":{"a":null}}`, false},
	{`{"labels":null}`, false},
	{`{"name":null}`, false},
	{`{"timeout":30}`, false},
	{`{"Name":"x"}`, false},
	{`{"other":1}`, false},
	{`{"participants":[{"uri":"a","x":1}]}`, false},
	{`{"timeout":"1m"} {}`, false},
	{`[]`, false},
}

func TestDecodeBeginFast(t *testing.T) {
	for _, tc := range fastBeginCases {
		t.Run(tc.body, func(t *testing.T) {
			req, ok := decodeBeginFast([]byte(tc.body))
			if ok != tc.ok {
				t.Fatalf("fast path ok = %v, want %v", ok, tc.ok)
			}
			if ok {
				sameBeginAsReflective(t, []byte(tc.body), req)
			}
		})
	}
}

// sameBeginAsReflective checks that encoding/json, strict as DecodeBegin
// is, reads body as the fast path did.
func sameBeginAsReflective(t *testing.T, body []byte, req BeginRequest) {
	t.Helper()
	var want BeginRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&want); err != nil {
		t.Fatalf("fast path read %q, encoding/json refuses it: %v", body, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("fast path read %q, encoding/json finds more after the value", body)
	}
	if !reflect.DeepEqual(want, req) {
		t.Fatalf("fast path read %q as %+v, encoding/json as %+v", body, req, want)
	}
}

// FuzzDecodeBeginFast holds the begin fast path to encoding/json.
func FuzzDecodeBeginFast(f *testing.F) {
	for _, tc := range fastBeginCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if req, ok := decodeBeginFast(body); ok {
			sameBeginAsReflective(t, body, req)
		}
	})
}
