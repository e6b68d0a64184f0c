package tccd

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseAllowlist(t *testing.T) {
	tests := []struct {
		rule string
		want allowRule // raw is filled in from rule
		err  string    // substring of the error; "" for none
	}{
		{rule: "https://*.internal:443", want: allowRule{scheme: "https", suffix: ".internal", port: 443}},
		{rule: "HTTPS://*.Internal.:443", want: allowRule{scheme: "https", suffix: ".internal", port: 443}},
		{rule: "10.0.0.0/8", want: allowRule{prefix: netip.MustParsePrefix("10.0.0.0/8")}},
		{rule: "10.1.2.3/8:8080", want: allowRule{prefix: netip.MustParsePrefix("10.0.0.0/8"), port: 8080}},
		{rule: "http://127.0.0.1:*", want: allowRule{scheme: "http", prefix: netip.MustParsePrefix("127.0.0.1/32")}},
		{rule: "127.0.0.2", want: allowRule{prefix: netip.MustParsePrefix("127.0.0.2/32")}},
		{rule: "pay.example.com", want: allowRule{name: "pay.example.com"}},
		{rule: "http://svc_a.local:9001", want: allowRule{scheme: "http", name: "svc_a.local", port: 9001}},
		{rule: "*", want: allowRule{any: true}},
		{rule: "*:8443", want: allowRule{any: true, port: 8443}},
		{rule: "https://*", want: allowRule{scheme: "https", any: true}},
		{rule: "fd00::/8", want: allowRule{prefix: netip.MustParsePrefix("fd00::/8")}},
		{rule: "::1", want: allowRule{prefix: netip.MustParsePrefix("::1/128")}},
		{rule: "[fd00::/8]:443", want: allowRule{prefix: netip.MustParsePrefix("fd00::/8"), port: 443}},
		{rule: "https://[::1]:*", want: allowRule{scheme: "https", prefix: netip.MustParsePrefix("::1/128")}},
		{rule: "::ffff:10.0.0.1", want: allowRule{prefix: netip.MustParsePrefix("10.0.0.1/32")}},

		{rule: "ftp://x", err: "scheme must be http or https"},
		{rule: "https://", err: "no host"},
		{rule: "https://a.example/path", err: "without path"},
		{rule: "a.example?x", err: "without path"},
		{rule: "user@a.example", err: "without path"},
		{rule: "a.example:0", err: "port must be"},
		{rule: "a.example:70000", err: "port must be"},
		{rule: "a.example:http", err: "port must be"},
		{rule: "a.example:", err: "empty port"},
		{rule: "a.*.example", err: "* may only"},
		{rule: "*example.com", err: "* may only"},
		{rule: "*.", err: "not a domain"},
		{rule: "exa mple.com", err: "not a host name"},
		{rule: "10.0.0.0/33", err: "without path"},
		{rule: "[fd00::", err: "missing ]"},
		{rule: "[a.example]:1", err: "not an IP address"},
		{rule: "[::1]x", err: "unexpected"},
		{rule: "[::1]:", err: "unexpected"},
		{rule: "[fe80::1%eth0]", err: "not an IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			a, err := ParseAllowlist([]string{tt.rule})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseAllowlist(%q) = %v, want an error with %q", tt.rule, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAllowlist(%q): %v", tt.rule, err)
			}
			tt.want.raw = tt.rule
			if len(a.rules) != 1 || a.rules[0] != tt.want {
				t.Fatalf("ParseAllowlist(%q) = %+v, want %+v", tt.rule, a.rules, tt.want)
			}
		})
	}
}

func TestParseAllowlistLists(t *testing.T) {
	a, err := ParseAllowlist([]string{"10.0.0.0/8, https://*.internal:443", "", " ,pay.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(a.Rules(), " "); got != "10.0.0.0/8 https://*.internal:443 pay.example.com" {
		t.Fatalf("rules %q", got)
	}
	empty, err := ParseAllowlist(nil)
	if err != nil || len(empty.Rules()) != 0 {
		t.Fatalf("no rules: %v, %v", empty.Rules(), err)
	}
	if _, err := ParseAllowlist([]string{"ok.example", "bad/rule"}); err == nil || !strings.Contains(err.Error(), `"bad/rule"`) {
		t.Fatalf("the error names the bad rule: %v", err)
	}
}

// TestCheckLink: the link-time check, with no rules (the built-in
// refusals only), with name rules only, and with address rules too.
func TestCheckLink(t *testing.T) {
	names, err := ParseAllowlist([]string{"https://*.internal:443", "pay.example.com:8443"})
	if err != nil {
		t.Fatal(err)
	}
	mixed, err := ParseAllowlist(append(names.Rules(), "10.0.0.0/8:8080", "http://127.0.0.1:*"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		uri       string
		byDefault bool // allowed with no rules
		byNames   bool // allowed with the name rules
		byMixed   bool // allowed with name and address rules
	}{
		// Loopback and ordinary hosts are allowed by default.
		{"http://127.0.0.1:9001/r/1", true, false, true},
		{"http://[::1]:9001/r/1", true, false, false},
		{"https://api.example.com/r/1", true, false, false},
		// Always refused: link-local, metadata, unspecified.
		{"http://169.254.169.254/latest/meta-data/", false, false, false},
		{"http://169.254.10.1:8080/x", false, false, false},
		{"http://[fe80::1]/x", false, false, false},
		{"http://[fd00:ec2::254]/x", false, false, false},
		{"http://100.100.100.200/x", false, false, false},
		{"http://168.63.129.16/x", false, false, false},
		{"http://metadata.google.internal/computeMetadata/v1/", false, false, false},
		{"https://METADATA.google.internal.:443/x", false, false, false},
		{"http://metadata.goog/x", false, false, false},
		{"http://0.0.0.0:9001/x", false, false, false},
		{"http://0.1.2.3:8080/x", false, false, false},
		{"http://[::]:9001/x", false, false, false},
		{"http://[::ffff:169.254.169.254]:8080/x", false, false, false},
		// IPv6 addresses that embed a refused IPv4 address are judged by it.
		{"http://[64:ff9b::a9fe:a9fe]/", false, false, false},                   // NAT64
		{"http://[64:ff9b::169.254.169.254]:8080/x", false, false, false},       // NAT64, dotted
		{"http://[64:ff9b:1::a9fe:a9fe]/", false, false, false},                 // local-use NAT64, /96
		{"http://[64:ff9b:1:a9fe:00:a9fe:a9fe:0]/", false, false, false},        // local-use NAT64, /48
		{"http://[2002:a9fe:a9fe::1]/", false, false, false},                    // 6to4
		{"http://[2001:0:a9fe:a9fe::1]/", false, false, false},                  // Teredo server
		{"http://[2001:0:4136:e378:8000:63bf:5601:5601]/", false, false, false}, // Teredo client 169.254.169.254 (inverted)
		{"http://[::169.254.169.254]/", false, false, false},                    // IPv4-compatible
		{"http://[::a64:6464]/", true, false, false},                            // IPv4-compatible 10.100.100.100 is fine...
		{"http://[64:ff9b::a00:1]:8080/x", true, false, false},                  // ...and NAT64 to an ordinary address passes by default
		// Scheme, host and port must fit one rule.
		{"https://a.internal/x", true, true, true},
		{"https://a.b.internal:443/x", true, true, true},
		{"https://internal/x", true, false, false},
		{"http://a.internal/x", true, false, true}, // http://127.0.0.1:* may match, once resolved
		{"https://a.internal:8443/x", true, false, false},
		{"https://pay.example.com:8443/x", true, true, true},
		{"http://PAY.example.com.:8443/x", true, true, true},
		{"https://pay.example.com/x", true, false, false},
		{"http://10.1.2.3:8080/x", true, false, true},
		{"https://10.255.0.1:8080/x", true, false, true},
		{"http://10.1.2.3:8081/x", true, false, false},
		{"http://11.0.0.1:8080/x", true, false, false},
		{"http://127.0.0.1:1/x", true, false, true},
		{"https://127.0.0.1:1/x", true, false, false},
		// A name can be judged by an address rule only once resolved: it
		// passes for now if an address rule's scheme and port fit, and
		// the dial-time check decides.
		{"http://svc.other:8080/x", true, false, true},
		{"http://localhost:9001/r/1", true, false, true},
		{"https://svc.other:9000/x", true, false, false},
	}
	for _, tt := range tests {
		for _, c := range []struct {
			name string
			a    *Allowlist
			want bool
		}{{"no rules", nil, tt.byDefault}, {"name rules", names, tt.byNames}, {"mixed rules", mixed, tt.byMixed}} {
			err := c.a.CheckLink(tt.uri)
			if (err == nil) != c.want {
				t.Errorf("CheckLink(%s) with %s = %v, want allowed %v", tt.uri, c.name, err, c.want)
			}
			if err != nil && (ErrorCode(err) != EInvalid || !strings.Contains(ErrorMessage(err), "is not an allowed destination")) {
				t.Errorf("CheckLink(%s): error %v, want a clear EInvalid", tt.uri, err)
			}
		}
	}
}

// TestCheckDial: the dial-time check sees the name dialled and the
// address it resolved to.
func TestCheckDial(t *testing.T) {
	rules, err := ParseAllowlist([]string{"*.internal:443", "10.0.0.0/8", "127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	tests := []struct {
		name      string
		ip        string
		port      int
		byDefault bool
		withRules bool
	}{
		{"localhost", "127.0.0.1", 9001, true, false},
		{"", "127.0.0.1", 9001, true, false},
		{"", "127.0.0.2", 9001, true, true},
		{"127.0.0.2", "127.0.0.2", 9001, true, true},
		{"localhost", "127.0.0.2", 9001, true, true},
		// A name rule admits the name, wherever it resolves...
		{"a.internal", "192.0.2.7", 443, true, true},
		{"a.internal", "192.0.2.7", 80, true, false},
		// ...but never to a refused address (DNS rebinding).
		{"a.internal", "169.254.169.254", 443, false, false},
		{"a.internal", "::ffff:169.254.169.254", 443, false, false},
		{"evil.example", "169.254.169.254", 80, false, false},
		{"evil.example", "0.0.0.0", 80, false, false},
		{"evil.example", "::", 80, false, false},
		{"evil.example", "fe80::1", 80, false, false},
		{"evil.example", "64:ff9b::a9fe:a9fe", 80, false, false}, // NAT64 to the metadata address
		{"evil.example", "2002:a9fe:a9fe::1", 80, false, false},  // 6to4 likewise
		{"metadata.google.internal", "192.0.2.1", 443, false, false},
		// An address rule admits the resolved address, whatever the name.
		{"svc.other", "10.2.3.4", 8080, true, true},
		{"svc.other", "192.0.2.4", 8080, true, false},
	}
	for _, tt := range tests {
		for _, c := range []struct {
			a    *Allowlist
			want bool
		}{{nil, tt.byDefault}, {rules, tt.withRules}} {
			err := c.a.CheckDial(tt.name, ip(tt.ip), tt.port)
			if (err == nil) != c.want {
				t.Errorf("CheckDial(%q, %s, %d) with %d rules = %v, want allowed %v", tt.name, tt.ip, tt.port, len(c.a.Rules()), err, c.want)
			}
			if err != nil && ErrorCode(err) != EForbidden {
				t.Errorf("CheckDial: error %v, want EForbidden", err)
			}
		}
	}
}

// FuzzAllowlist: rules parse or fail without panicking, parse again from
// their text to the same rules, and never let a link through that the
// built-in refusals refuse.
func FuzzAllowlist(f *testing.F) {
	for _, s := range []string{"https://*.internal:443", "10.0.0.0/8", "http://127.0.0.1:*", "[fd00::/8]:443", "*", "a.example:0", "[::1", "*.", "x:y:z"} {
		f.Add(s, "http://169.254.169.254/x")
		f.Add(s, "https://a.internal/x")
		f.Add(s, "http://[::ffff:a9fe:a9fe]:80/x")
	}
	f.Fuzz(func(t *testing.T, rule, uri string) {
		a, err := ParseAllowlist([]string{rule})
		if err != nil {
			return
		}
		again, err := ParseAllowlist(a.Rules())
		if err != nil || len(again.rules) != len(a.rules) {
			t.Fatalf("rules %q do not parse again: %v", a.Rules(), err)
		}
		for i := range a.rules {
			if again.rules[i] != a.rules[i] {
				t.Fatalf("rule %q parses to %+v, then %+v", a.rules[i].raw, a.rules[i], again.rules[i])
			}
		}
		if ValidateURI(uri) != nil || a.CheckLink(uri) != nil {
			return
		}
		if (*Allowlist)(nil).CheckLink(uri) != nil {
			t.Fatalf("rule %q lets %q through, which the built-in refusals refuse", rule, uri)
		}
	})
}
