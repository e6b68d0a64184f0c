package tccd

import (
	"net/url"
	"strings"
	"testing"
)

func TestCanonicalURI(t *testing.T) {
	tests := []struct {
		in, want string
		err      string // substring of the error; "" for none
	}{
		{in: "http://host/r/1", want: "http://host/r/1"},
		// Case of scheme and host (RFC 3986 6.2.2.1).
		{in: "HTTP://HOST/r/1", want: "http://host/r/1"},
		{in: "Https://Api.Swiss.Example/Booking/42", want: "https://api.swiss.example/Booking/42"},
		{in: "http://[FD00::A]:8080/x", want: "http://[fd00::a]:8080/x"},
		{in: "http://[fd00:0:0:0:0:0:0:a]/x", want: "http://[fd00::a]/x"},
		// Default and empty ports (6.2.3).
		{in: "http://host:80/r/1", want: "http://host/r/1"},
		{in: "https://host:443/r/1", want: "https://host/r/1"},
		{in: "http://host:443/r/1", want: "http://host:443/r/1"},
		{in: "https://host:80/r/1", want: "https://host:80/r/1"},
		{in: "http://host:/r/1", want: "http://host/r/1"},
		{in: "http://host:0080/r/1", want: "http://host/r/1"},
		{in: "http://host:08080/r/1", want: "http://host:8080/r/1"},
		// Empty path.
		{in: "http://host", want: "http://host/"},
		{in: "http://host?a=1", want: "http://host/?a=1"},
		// Percent-encodings (6.2.2.1, 6.2.2.2).
		{in: "http://host/r/%7euser", want: "http://host/r/~user"},
		{in: "http://host/r/%41%62%2d%2E%5F", want: "http://host/r/Ab-._"},
		{in: "http://host/r/a%2fb", want: "http://host/r/a%2Fb"},
		{in: "http://host/r/a%2Fb", want: "http://host/r/a%2Fb"},
		{in: "http://host/r/%e2%82%ac", want: "http://host/r/%E2%82%AC"},
		{in: "http://host/r?q=%7e%2f", want: "http://host/r?q=~%2F"},
		// Dot segments (6.2.2.3, 5.2.4).
		{in: "http://host/a/./b/../c", want: "http://host/a/c"},
		{in: "http://host/../../r/1", want: "http://host/r/1"},
		{in: "http://host/r/1/.", want: "http://host/r/1/"},
		{in: "http://host/r/1/..", want: "http://host/r/"},
		{in: "http://host/r/.hidden/x", want: "http://host/r/.hidden/x"},
		{in: "http://host/r/..x/1", want: "http://host/r/..x/1"},
		{in: "http://host/r/%2e%2e/1", want: "http://host/1"}, // decoded, then removed
		// The query is kept, and so is the case of the path.
		{in: "http://host/R/1?X=Y&x=y", want: "http://host/R/1?X=Y&x=y"},
		{in: "http://host/r/1?", want: "http://host/r/1?"},
		// Refused, as by ValidateURI, and broken encodings.
		{in: "ftp://host/x", err: "scheme"},
		{in: "http://host/r/%zz", err: "valid URL"},
		{in: "http://host/r/%4", err: "valid URL"},
		{in: "http://user@host/x", err: "credentials"},
		{in: "http://host/x#frag", err: "fragment"},
		{in: "http://[fe80::1%25eth0]/x", err: "zone"},
	}
	for _, tt := range tests {
		got, err := CanonicalURI(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("CanonicalURI(%q) = %q, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CanonicalURI(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// FuzzCanonicalURI: the canonical form is a fixed point, is itself a
// valid participant URI, and names the same scheme, host and port.
func FuzzCanonicalURI(f *testing.F) {
	for _, s := range []string{
		"http://host/r/1", "HTTP://HOST:80/a/./b/../%7e", "https://[::1]:443/x?%41", "http://h:/", "http://h/%2e%2E/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := CanonicalURI(in)
		if err != nil {
			return
		}
		if err := ValidateURI(c); err != nil {
			t.Fatalf("CanonicalURI(%q) = %q, which is not valid: %v", in, c, err)
		}
		c2, err := CanonicalURI(c)
		if err != nil || c2 != c {
			t.Fatalf("not a fixed point: %q → %q → %q (%v)", in, c, c2, err)
		}
		u, _ := url.Parse(in)
		v, _ := url.Parse(c)
		if !strings.EqualFold(u.Hostname(), v.Hostname()) && !strings.Contains(u.Hostname(), ":") {
			t.Fatalf("host changed: %q → %q", in, c)
		}
	})
}
