package stomp

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

var testLimits = limits{maxFrameSize: 1024, maxHeaders: 8, maxHeaderLength: 128}

// decodeAll decodes input fed in one piece and returns its frames, or
// the first error.
func decodeAll(lim limits, v version, input []byte) ([]*frame, error) {
	return decodeChunks(lim, v, input, len(input))
}

// decodeChunks decodes input fed chunk bytes at a time.
func decodeChunks(lim limits, v version, input []byte, chunk int) ([]*frame, error) {
	d := newDecoder(lim)
	d.version = v
	var out []*frame
	for len(input) > 0 {
		n := min(chunk, len(input))
		d.feed(input[:n])
		input = input[n:]
		for {
			f, err := d.next()
			if err != nil {
				return out, err
			}
			if f == nil {
				break
			}
			out = append(out, f)
		}
	}
	return out, nil
}

func fr(command string, body string, kv ...string) *frame {
	f := &frame{command: command}
	for i := 0; i < len(kv); i += 2 {
		f.headers = append(f.headers, header{kv[i], kv[i+1]})
	}
	if body != "" {
		f.body = []byte(body)
	}
	return f
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		v     version
		input string
		want  []*frame
	}{
		{"connect", v12, "CONNECT\naccept-version:1.2\nhost:h\n\n\x00",
			[]*frame{fr("CONNECT", "", "accept-version", "1.2", "host", "h")}},
		{"CRLF line ends", v12, "SEND\r\ndestination:/app/x\r\n\r\nhi\x00",
			[]*frame{fr("SEND", "hi", "destination", "/app/x")}},
		{"heart-beats before and after", v12, "\n\r\n\nDISCONNECT\n\n\x00\n\r\n",
			[]*frame{fr("DISCONNECT", "")}},
		{"no headers", v12, "DISCONNECT\n\n\x00", []*frame{fr("DISCONNECT", "")}},
		{"every escape in name and value", v12, `SEND` + "\n" + `a\cb\nc\rd\\e:f\cg\nh\ri\\j` + "\n\n\x00",
			[]*frame{fr("SEND", "", "a:b\nc\rd\\e", "f:g\nh\ri\\j")}},
		{"escapes in 1.1", v11, "SUBSCRIBE\nid:a\\cb\n\n\x00", []*frame{fr("SUBSCRIBE", "", "id", "a:b")}},
		{"no escaping in 1.0", v10, "SEND\nk:a\\cb\\t\n\n\x00", []*frame{fr("SEND", "", "k", `a\cb\t`)}},
		{"no escaping in CONNECT", v12, "CONNECT\npasscode:a\\cb\\\n\n\x00", []*frame{fr("CONNECT", "", "passcode", `a\cb\`)}},
		{"STOMP frames are escaped", v12, "STOMP\nlogin:a\\cb\n\n\x00", []*frame{fr("STOMP", "", "login", "a:b")}},
		{"colon in a value", v12, "CONNECT\nhost:h:61613\n\n\x00", []*frame{fr("CONNECT", "", "host", "h:61613")}},
		{"repeated header kept in order", v12, "SEND\nk:1\nk:2\n\n\x00", []*frame{fr("SEND", "", "k", "1", "k", "2")}},
		{"empty value", v12, "SEND\nk:\n\n\x00", []*frame{fr("SEND", "", "k", "")}},
		{"spaces kept", v12, "SEND\n k : v \n\n\x00", []*frame{fr("SEND", "", " k ", " v ")}},
		{"content-length with NUL in body", v12, "SEND\ncontent-length:5\n\na\x00b\x00c\x00",
			[]*frame{fr("SEND", "a\x00b\x00c", "content-length", "5")}},
		{"content-length 0", v12, "SEND\ncontent-length:0\n\n\x00", []*frame{fr("SEND", "", "content-length", "0")}},
		{"content-length with EOLs in body", v12, "SEND\ncontent-length:4\n\n\n\r\n\n\x00",
			[]*frame{fr("SEND", "\n\r\n\n", "content-length", "4")}},
		{"body up to NUL", v12, "SEND\n\nline1\nline2\x00", []*frame{fr("SEND", "line1\nline2")}},
		{"two frames", v12, "SEND\n\na\x00\nSEND\n\nb\x00",
			[]*frame{fr("SEND", "a"), fr("SEND", "b")}},
		{"only heart-beats", v12, "\n\n\r\n", nil},
		{"incomplete frame", v12, "SEND\ndestination:/x\n\nabc", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunk := range []int{len(tt.input), 1, 2, 3} {
				got, err := decodeChunks(testLimits, tt.v, []byte(tt.input), max(chunk, 1))
				if err != nil {
					t.Fatalf("chunk %d: %v", chunk, err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("chunk %d:\n got %s\nwant %s", chunk, dump(got), dump(tt.want))
				}
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	long := strings.Repeat("x", 200)
	tests := []struct {
		name  string
		v     version
		input string
		want  string // in the error's text
	}{
		{"undefined escape", v12, "SEND\nk:a\\tb\n\n\x00", "undefined escape"},
		{"trailing backslash", v12, "SEND\nk:a\\\n\n\x00", "undefined escape"},
		{"escape in name", v12, "SEND\nk\\x:a\n\n\x00", "undefined escape"},
		{"no colon", v12, "SEND\nkv\n\n\x00", "without a colon"},
		{"empty name", v12, "SEND\n:v\n\n\x00", "empty name"},
		{"CR inside a line", v12, "SEND\nk:a\rb\n\n\x00", "CR inside"},
		{"CR before CRLF", v12, "SEND\nk:a\r\r\n\n\x00", "CR inside"},
		{"lower-case command", v12, "send\n\n\x00", "not upper-case"},
		{"command with space", v12, "SEND \n\n\x00", "not upper-case"},
		{"command too long", v12, "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n\n\x00", "command line longer"},
		{"endless command line", v12, long, "command line longer"},
		{"CR alone between frames", v12, "\rSEND\n\n\x00", "CR not followed by LF"},
		{"content-length not a number", v12, "SEND\ncontent-length:x\n\n\x00", "content-length"},
		{"content-length negative", v12, "SEND\ncontent-length:-1\n\n\x00", "content-length"},
		{"content-length signed", v12, "SEND\ncontent-length:+1\n\na\x00", "content-length"},
		{"content-length empty", v12, "SEND\ncontent-length:\n\n\x00", "content-length"},
		{"content-length huge", v12, "SEND\ncontent-length:99999999999\n\n\x00", "content-length"},
		{"content-length too short", v12, "SEND\ncontent-length:1\n\nab\x00", "no NUL after"},
		{"content-length over the limit", v12, "SEND\ncontent-length:2000\n\n", "frame larger than 1024"},
		{"too many headers", v12, "SEND\n" + strings.Repeat("k:v\n", 9) + "\n\x00", "more than 8 headers"},
		{"header line too long", v12, "SEND\nk:" + long + "\n\n\x00", "header line longer than 128"},
		{"endless header line", v12, "SEND\nk:" + long, "header line longer than 128"},
		{"body over the limit", v12, "SEND\n\n" + strings.Repeat("b", 1100) + "\x00", "frame larger than 1024"},
		{"endless body", v12, "SEND\n\n" + strings.Repeat("b", 1100), "frame larger than 1024"},
		{"endless headers", v12, "SEND\n" + strings.Repeat("k:"+strings.Repeat("v", 125)+"\n", 8), "frame larger than 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunk := range []int{len(tt.input), 1, 7} {
				_, err := decodeChunks(testLimits, tt.v, []byte(tt.input), chunk)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("chunk %d: error %v, want one containing %q", chunk, err, tt.want)
				}
				if _, ok := err.(*decodeError); !ok {
					t.Fatalf("chunk %d: error %T, want *decodeError", chunk, err)
				}
			}
		})
	}
}

// TestDecodeFrameSizeBoundary: a frame of exactly the limit passes, one
// byte more does not, counted from the command to the NUL.
func TestDecodeFrameSizeBoundary(t *testing.T) {
	head := "SEND\n\n"
	exact := head + strings.Repeat("b", testLimits.maxFrameSize-len(head)-1) + "\x00"
	if len(exact) != testLimits.maxFrameSize {
		t.Fatalf("test frame is %d bytes", len(exact))
	}
	if _, err := decodeAll(testLimits, v12, []byte("\n\n"+exact)); err != nil {
		t.Fatalf("frame of exactly the limit: %v", err)
	}
	over := head + strings.Repeat("b", testLimits.maxFrameSize-len(head)) + "\x00"
	if _, err := decodeAll(testLimits, v12, []byte(over)); err == nil {
		t.Fatal("frame one byte over the limit accepted")
	}
	// With content-length too: the limit counts the same bytes.
	withLen := func(n int) string {
		return fmt.Sprintf("SEND\ncontent-length:%d\n\n%s\x00", n, strings.Repeat("b", n))
	}
	n := 0
	for len(withLen(n)) < testLimits.maxFrameSize {
		n++
	}
	if len(withLen(n)) != testLimits.maxFrameSize {
		t.Fatalf("no frame of exactly %d bytes", testLimits.maxFrameSize)
	}
	if _, err := decodeAll(testLimits, v12, []byte(withLen(n))); err != nil {
		t.Fatalf("frame with content-length of exactly the limit: %v", err)
	}
	if _, err := decodeAll(testLimits, v12, []byte(withLen(n+1))); err == nil {
		t.Fatal("frame with content-length over the limit accepted")
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		name string
		v    version
		f    *frame
		want string
	}{
		{"escapes every special octet", v12, fr("MESSAGE", "", "a:b\nc\rd\\e", "f:g\nh\ri\\j"),
			"MESSAGE\n" + `a\cb\nc\rd\\e:f\cg\nh\ri\\j` + "\n\n\x00"},
		{"1.1 escapes too", v11, fr("RECEIPT", "", "receipt-id", "a:b"), "RECEIPT\nreceipt-id:a\\cb\n\n\x00"},
		{"CONNECTED is not escaped", v12, fr("CONNECTED", "", "server", "tccd\\x:1"), "CONNECTED\nserver:tccd\\x:1\n\n\x00"},
		{"1.0 is not escaped", v10, fr("MESSAGE", "", "k", `a\b:c`), "MESSAGE\nk:a\\b:c\n\n\x00"},
		{"1.0 leaves out what it cannot say", v10, fr("MESSAGE", "", "k", "a\nb", "x:y", "z", "ok", "1"),
			"MESSAGE\nok:1\n\n\x00"},
		{"body", v12, fr("MESSAGE", "a\x00b", "content-length", "3"), "MESSAGE\ncontent-length:3\n\na\x00b\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(appendFrame(nil, tt.f, tt.v)); got != tt.want {
				t.Fatalf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestRoundTrip: what the encoder writes, the decoder reads back.
func TestRoundTrip(t *testing.T) {
	frames := []*frame{
		fr("MESSAGE", "", "destination", "/topic/a:b", "k\\\n", "\r\n:\\"),
		fr("SEND", "x\x00y", "content-length", "3", "content-type", "application/octet-stream"),
		fr("CONNECT", "", "passcode", `p\a:ss`, "accept-version", "1.2"),
		fr("ERROR", "text", "message", "bad\\frame"),
	}
	for _, v := range []version{v10, v11, v12} {
		for _, f := range frames {
			if v == v10 && f.command == "MESSAGE" {
				continue // not representable in 1.0; TestEncode covers that
			}
			enc := appendFrame(nil, f, v)
			got, err := decodeAll(testLimits, v, enc)
			if err != nil {
				t.Fatalf("%s %s: %v", v, f.command, err)
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], f) {
				t.Fatalf("%s: %q decoded as %s", v, enc, dump(got))
			}
		}
	}
}

// TestUnescape covers the escape table both ways.
func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		``: "", `abc`: "abc", `\r`: "\r", `\n`: "\n", `\c`: ":", `\\`: `\`, `\\n`: `\n`, `a\cb\\c`: `a:b\c`,
	} {
		got, ok := unescape([]byte(in))
		if !ok || got != want {
			t.Errorf("unescape(%q) = %q, %v; want %q", in, got, ok, want)
		}
		if in != "" && string(appendEscaped(nil, want)) != in && in != "abc" {
			t.Errorf("appendEscaped(%q) = %q, want %q", want, appendEscaped(nil, want), in)
		}
	}
	for _, in := range []string{`\`, `a\`, `\t`, `\C`, `\:`, `\0`} {
		if got, ok := unescape([]byte(in)); ok {
			t.Errorf("unescape(%q) = %q, want an error", in, got)
		}
	}
}

func TestHeartBeatHeader(t *testing.T) {
	for _, tt := range []struct {
		in     string
		x, y   int
		wantOK bool
	}{
		{"0,0", 0, 0, true}, {"10000,10000", 10000, 10000, true}, {"5, 7", 5, 7, true},
		{"", 0, 0, false}, {"1", 0, 0, false}, {"a,1", 0, 0, false}, {"-1,0", 0, 0, false},
		{"1,2,3", 0, 0, false}, {"9999999999,0", 0, 0, false},
	} {
		x, y, err := parseHeartBeat(tt.in)
		if (err == nil) != tt.wantOK || (tt.wantOK && (x != tt.x || y != tt.y)) {
			t.Errorf("parseHeartBeat(%q) = %d, %d, %v", tt.in, x, y, err)
		}
	}
	for _, tt := range []struct{ send, want, ms int }{
		{0, 100, 0}, {100, 0, 0}, {100, 50, 100}, {50, 100, 100},
	} {
		if got := negotiateInterval(tt.send, tt.want); got.Milliseconds() != int64(tt.ms) {
			t.Errorf("negotiateInterval(%d, %d) = %v, want %dms", tt.send, tt.want, got, tt.ms)
		}
	}
	for in, want := range map[string]version{
		"1.0": v10, "1.1": v11, "1.2": v12, "1.0,1.1,1.2": v12, "1.2, 1.0": v12, "1.1,2.0": v11, "2.0": 0, "": 0,
	} {
		if got := negotiateVersion(in); got != want {
			t.Errorf("negotiateVersion(%q) = %v, want %v", in, got, want)
		}
	}
}

func dump(fs []*frame) string {
	var b bytes.Buffer
	for _, f := range fs {
		fmt.Fprintf(&b, "{%s %q %q} ", f.command, f.headers, f.body)
	}
	if len(fs) == 0 {
		return "none"
	}
	return b.String()
}
