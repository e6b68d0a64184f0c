package http

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"testing"
)

// The fast paths of decodeAtomikosFast, decodeLinkFast and decodeBeginFast
// must read whatever they accept as encoding/json reads it (as the server
// uses it: strict or not); what they give up on, encoding/json decodes.

// fastCase is a body and whether the fast path reads it (else
// encoding/json does).
type fastCase struct {
	body string
	ok   bool
}

// readsAsEncodingJSON checks that encoding/json reads body into a T equal
// to got; strict refuses unknown fields, as DecodeLink and DecodeBegin do.
func readsAsEncodingJSON[T any](t *testing.T, body []byte, got T, strict bool) {
	t.Helper()
	var want T
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(&want); err != nil {
		t.Fatalf("fast path read %q, encoding/json refuses it: %v", body, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("fast path read %q, encoding/json finds more after the value", body)
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("fast path read %q as %+v, encoding/json as %+v", body, got, want)
	}
}

// fastPaths are the three fast paths, each with its cases and its check.
var fastPaths = []struct {
	name  string
	cases []fastCase
	check func(t *testing.T, body []byte) (ok bool)
}{
	{"atomikos", fastDecodeCases, func(t *testing.T, body []byte) bool {
		links, ok := decodeAtomikosFast(body)
		if ok {
			readsAsEncodingJSON(t, body, AtomikosRequest{ParticipantLinks: links}, false)
		}
		return ok
	}},
	{"link", fastLinkCases, func(t *testing.T, body []byte) bool {
		l, ok := decodeLinkFast(body)
		if ok {
			readsAsEncodingJSON(t, body, l, true)
		}
		return ok
	}},
	{"begin", fastBeginCases, func(t *testing.T, body []byte) bool {
		req, ok := decodeBeginFast(body)
		if ok {
			readsAsEncodingJSON(t, body, req, true)
		}
		return ok
	}},
}

func TestFastDecode(t *testing.T) {
	for _, fp := range fastPaths {
		for _, tc := range fp.cases {
			t.Run(fp.name+"/"+tc.body, func(t *testing.T) {
				if ok := fp.check(t, []byte(tc.body)); ok != tc.ok {
					t.Fatalf("fast path ok = %v, want %v", ok, tc.ok)
				}
			})
		}
	}
}

// fuzzFastPath holds fast path i to encoding/json on any input.
func fuzzFastPath(f *testing.F, i int) {
	for _, tc := range fastPaths[i].cases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { fastPaths[i].check(t, body) })
}

func FuzzDecodeAtomikosFast(f *testing.F) { fuzzFastPath(f, 0) }
func FuzzDecodeLinkFast(f *testing.F)     { fuzzFastPath(f, 1) }
func FuzzDecodeBeginFast(f *testing.F)    { fuzzFastPath(f, 2) }

var fastDecodeCases = []fastCase{
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

var fastLinkCases = []fastCase{
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

var fastBeginCases = []fastCase{
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
