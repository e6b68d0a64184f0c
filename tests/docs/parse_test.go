package docs_test

import (
	"reflect"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	for _, c := range []struct {
		name string
		body string
		want []command
	}{
		{"script lines", "a &\nb \\\n  c\n\nd # x", []command{{text: "a &", line: 1}, {text: "b \\\n  c", line: 2}, {text: "d # x", line: 5}}},
		{"session with output", "$ curl -s x\n{\"state\":\"confirmed\"}\n$ y", []command{{text: "curl -s x", output: "{\"state\":\"confirmed\"}\n", line: 1}, {text: "y", line: 3}}},
		{"open quote continues", "$ curl -d '{\"a\":[\n  1]}'\n204", []command{{text: "curl -d '{\"a\":[\n  1]}'", output: "204\n", line: 1}}},
		{"open substitution continues", "$ A=$(curl x \\\n  | jq .id)\nok", []command{{text: "A=$(curl x \\\n  | jq .id)", output: "ok\n", line: 1}}},
		{"a quote in a comment does not", "$ a   # it's fine\nout", []command{{text: "a   # it's fine", output: "out\n", line: 1}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := commands(strings.Split(c.body, "\n"), 1)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestClaims(t *testing.T) {
	for _, c := range []struct {
		shown, printed string
		ok             bool
	}{
		{"HTTP/1.1 204 No Content\n…", "HTTP/1.1 204 No Content\r\nDate: x", true},
		{"HTTP/1.1 204 No Content", "HTTP/1.1 409 Conflict", false},
		{"409\n", "409\n", true},
		{"409\n", "200\n", false},
		{`{"state": "confirmed", "code": "x_y"}`, `{"code":"x_y","state":"confirmed"}`, true},
		{`{"state":"confirmed"}`, `{"state":"cancelled"}`, false},
		{"Tccstatus: CONFIRM", "Tccstatus: CANCEL", false},
		{"01JE…\nanything else", "", true},
	} {
		ok := true
		for _, re := range claims(c.shown) {
			ok = ok && re.MatchString(c.printed)
		}
		if ok != c.ok {
			t.Errorf("shown %q, printed %q: matched %v, want %v", c.shown, c.printed, ok, c.ok)
		}
	}
}

func TestSplit(t *testing.T) {
	out, last := split("\n@@step 1@@\nA\n\n@@step 2@@\nB\n\n@@step 0@@\n")
	if last != 0 || out[1] != "A\n" || out[2] != "B\n" {
		t.Errorf("split: %v, last %d", out, last)
	}
	if _, last := split("\n@@step 1@@\nA\n\n@@step 2@@\nfailed"); last != 2 {
		t.Errorf("a script that stops at step 2: last %d", last)
	}
}
