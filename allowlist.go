package tccd

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// LinkChecker decides whether the coordinator may ever call a participant
// URI. The coordinator asks it for every link it is given (begin, enlist,
// confirm, and the Atomikos endpoints), after ValidateURI; an error is
// answered as 400 and nothing is stored. *Allowlist is the implementation
// (a nil *Allowlist applies the built-in refusals only).
type LinkChecker interface {
	CheckLink(uri string) error
}

// Allowlist is the set of destinations the coordinator may call: the
// server-side request forgery guard. The coordinator calls URLs its
// clients give it, so a client could otherwise make it reach the cloud
// metadata service or any internal address.
//
// Whatever the rules, some destinations are always refused: unspecified
// addresses (0.0.0.0/8, ::), link-local ones (169.254.0.0/16, fe80::/10,
// which hold the AWS, GCP and Azure metadata service 169.254.169.254), the
// other metadata addresses (fd00:ec2::254, 100.100.100.200, Azure's
// 168.63.129.16) and names (metadata.google.internal, metadata.goog).
// Loopback is not refused. With no rules, everything else is allowed;
// with rules, a destination must match one.
//
// A rule is [scheme://]host[:port]. Each part left out matches anything:
//
//	https://*.internal:443   https to any subdomain of internal, port 443
//	pay.example.com          that name, any scheme and port
//	10.0.0.0/8               any address in 10/8 (IPv6: fd00::/8 or [fd00::/8]:443)
//	http://127.0.0.1:*       http to 127.0.0.1, any port
//	*:8443                   any host, port 8443
//
// host is a name, *.domain (its subdomains, not the domain itself), an IP
// address, a CIDR prefix or *. port is a number or *.
//
// Rules are checked twice. When a link is accepted (CheckLink), against
// the URI as written: a name rule matches the URI's host name, an address
// rule the URI's IP literal; a URI naming a host can only be judged by an
// address rule once the name is resolved, so it passes for now if an
// address rule could match it. When a connection is made (CheckDial),
// against the address actually dialled: the built-in refusals apply to
// the resolved IP, name rules to the name dialled, address rules to the
// resolved IP. So a name that resolves (or is rebound) to a refused or
// unlisted address is refused at dial time. A name rule trusts DNS for
// that name, except for the built-in refusals.
type Allowlist struct {
	rules []allowRule
}

type allowRule struct {
	raw    string
	scheme string       // "" for any
	port   int          // 0 for any
	any    bool         // host *
	name   string       // an exact host name, lower case
	suffix string       // *.domain: ".domain"
	prefix netip.Prefix // an address or CIDR rule, when valid
}

// ParseAllowlist parses rules; each element may hold several rules
// separated by commas. Empty elements are ignored; no rules gives an
// Allowlist that applies the built-in refusals only.
func ParseAllowlist(rules []string) (*Allowlist, error) {
	a := &Allowlist{}
	for _, elem := range rules {
		for _, raw := range strings.Split(elem, ",") {
			raw = strings.TrimSpace(raw)
			if raw == "" {
				continue
			}
			r, err := parseRule(raw)
			if err != nil {
				return nil, fmt.Errorf("participant-allow rule %q: %w", raw, err)
			}
			a.rules = append(a.rules, r)
		}
	}
	return a, nil
}

// Empty reports whether there are no rules: only the built-in refusals apply.
func (a *Allowlist) Empty() bool { return a == nil || len(a.rules) == 0 }

// Rules returns the rules as written.
func (a *Allowlist) Rules() []string {
	if a == nil {
		return nil
	}
	out := make([]string, len(a.rules))
	for i, r := range a.rules {
		out[i] = r.raw
	}
	return out
}

func parseRule(raw string) (allowRule, error) {
	r := allowRule{raw: raw}
	rest := raw
	if scheme, after, ok := strings.Cut(rest, "://"); ok {
		scheme = strings.ToLower(scheme)
		if scheme != "http" && scheme != "https" {
			return r, fmt.Errorf("scheme must be http or https, not %q", scheme)
		}
		r.scheme, rest = scheme, after
	}
	if strings.ContainsAny(rest, "/?#@") && !isPrefixLike(rest) {
		return r, fmt.Errorf("a rule is [scheme://]host[:port], without path, query or user")
	}
	host, port := rest, ""
	switch {
	case rest == "":
		return r, fmt.Errorf("no host")
	case strings.HasPrefix(rest, "["):
		end := strings.Index(rest, "]")
		if end < 0 {
			return r, fmt.Errorf("missing ]")
		}
		host, port = rest[1:end], rest[end+1:]
		if port != "" {
			if port[0] != ':' || len(port) == 1 {
				return r, fmt.Errorf("unexpected %q after ]", port)
			}
			port = port[1:]
		}
		if _, err := parsePrefix(host); err != nil {
			return r, fmt.Errorf("[%s] is not an IP address or prefix", host)
		}
	case strings.Count(rest, ":") > 1:
		// A bare IPv6 address or prefix: no port.
	default:
		if h, p, ok := strings.Cut(rest, ":"); ok {
			if p == "" {
				return r, fmt.Errorf("empty port")
			}
			host, port = h, p
		}
	}
	if port != "" && port != "*" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return r, fmt.Errorf("port must be 1 to 65535 or *, not %q", port)
		}
		r.port = n
	}
	switch {
	case host == "*":
		r.any = true
	case strings.HasPrefix(host, "*."):
		d := normName(host[2:])
		if !validName(d) {
			return r, fmt.Errorf("%q is not a domain", host[2:])
		}
		r.suffix = "." + d
	case strings.Contains(host, "*"):
		return r, fmt.Errorf("* may only stand alone or as the first label (*.domain)")
	default:
		if p, err := parsePrefix(host); err == nil {
			r.prefix = p
			break
		}
		n := normName(host)
		if !validName(n) {
			return r, fmt.Errorf("%q is not a host name, IP address or CIDR prefix", host)
		}
		r.name = n
	}
	return r, nil
}

// isPrefixLike reports whether s, a rule without its scheme, contains a
// slash only as part of a CIDR prefix.
func isPrefixLike(s string) bool {
	if strings.ContainsAny(s, "?#@") {
		return false
	}
	if strings.HasPrefix(s, "[") {
		if end := strings.Index(s, "]"); end > 0 {
			_, err := parsePrefix(s[1:end])
			return err == nil && !strings.Contains(s[end:], "/")
		}
		return false
	}
	host := s
	if strings.Count(s, ":") == 1 {
		host, _, _ = strings.Cut(s, ":")
	}
	_, err := netip.ParsePrefix(host)
	return err == nil
}

// parsePrefix parses an IP address (a one-address prefix) or a CIDR prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		if p.Addr().Is4In6() {
			return p, fmt.Errorf("IPv4-mapped prefixes are not supported; write the IPv4 prefix")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("zones are not supported")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func normName(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }

func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// deniedPrefixes are refused whatever the rules say.
var deniedPrefixes = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "an unspecified address"},
	{netip.MustParsePrefix("::/128"), "an unspecified address"},
	{netip.MustParsePrefix("169.254.169.254/32"), "a cloud metadata address"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "a cloud metadata address"},
	{netip.MustParsePrefix("100.100.100.200/32"), "a cloud metadata address"},
	{netip.MustParsePrefix("168.63.129.16/32"), "a cloud platform address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address"},
	{netip.MustParsePrefix("fe80::/10"), "a link-local address"},
}

// deniedNames are metadata service names, refused whatever the rules say.
var deniedNames = []string{"metadata.google.internal", "metadata.goog"}

// denied returns why ip (if valid) or name (if not empty) is always
// refused, or "".
func denied(name string, ip netip.Addr) string {
	if name != "" {
		n := normName(name)
		for _, d := range deniedNames {
			if n == d {
				return "a cloud metadata name"
			}
		}
	}
	if ip.IsValid() {
		ip = ip.Unmap().WithZone("")
		for _, a := range append([]netip.Addr{ip}, embeddedIPv4(ip)...) {
			for _, d := range deniedPrefixes {
				if d.prefix.Contains(a) {
					if a != ip {
						return d.why + " (" + a.String() + ", embedded in the IPv6 address)"
					}
					return d.why
				}
			}
		}
	}
	return ""
}

// IPv6 prefixes whose addresses carry an IPv4 address that a packet to
// them may end up at, through a translator or a tunnel.
var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")   // RFC 6052
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48") // RFC 8215
	sixToFour      = netip.MustParsePrefix("2002::/16")      // RFC 3056
	teredo         = netip.MustParsePrefix("2001::/32")      // RFC 4380
	ipv4Compatible = netip.MustParsePrefix("::/96")          // RFC 4291, deprecated
)

// embeddedIPv4 returns the IPv4 addresses an IPv6 address embeds, so that
// the built-in refusals judge them too: http://[64:ff9b::a9fe:a9fe]/ is
// the metadata address 169.254.169.254 behind a NAT64 gateway. (IPv4-mapped
// addresses are unmapped before.) Allow rules still match the address
// itself only.
func embeddedIPv4(ip netip.Addr) []netip.Addr {
	if !ip.Is6() {
		return nil
	}
	b := ip.As16()
	v4 := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{b[i], b[i+1], b[i+2], b[i+3]}) }
	var out []netip.Addr
	switch {
	case nat64WellKnown.Contains(ip):
		out = append(out, v4(12))
	case nat64Local.Contains(ip):
		// The IPv4 address sits after the prefix, whose length the
		// network chooses (RFC 6052 section 2.2): /48 puts it around the
		// reserved octet 8, /96 at the end. Judge both.
		out = append(out, netip.AddrFrom4([4]byte{b[6], b[7], b[9], b[10]}), v4(12))
	case sixToFour.Contains(ip):
		out = append(out, v4(2))
	case teredo.Contains(ip):
		// The server's address, and the client's, stored inverted.
		out = append(out, v4(4), netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}))
	case ipv4Compatible.Contains(ip) && b[12] != 0:
		// ::a.b.c.d; not :: nor ::1, which are IPv6's own.
		out = append(out, v4(12))
	}
	return out
}

// match reports whether r admits a destination. scheme "" is not checked
// (at dial time it was checked when the link was accepted and called).
// With ip invalid (a URI naming a host, not yet resolved), an address
// rule whose scheme and port fit reports maybe.
func (r allowRule) match(scheme, name string, ip netip.Addr, port int) (ok, maybe bool) {
	if r.scheme != "" && scheme != "" && r.scheme != scheme {
		return false, false
	}
	if r.port != 0 && r.port != port {
		return false, false
	}
	switch {
	case r.any:
		return true, false
	case r.prefix.IsValid():
		if ip.IsValid() {
			return r.prefix.Contains(ip.Unmap().WithZone("")), false
		}
		return false, name != ""
	case name == "":
		return false, false
	case r.suffix != "":
		return strings.HasSuffix(normName(name), r.suffix), false
	default:
		return normName(name) == r.name, false
	}
}

// allows reports whether some rule admits the destination (or may, once
// resolved); with no rules, everything is admitted.
func (a *Allowlist) allows(scheme, name string, ip netip.Addr, port int) bool {
	if a.Empty() {
		return true
	}
	for _, r := range a.rules {
		if ok, maybe := r.match(scheme, name, ip, port); ok || maybe {
			return true
		}
	}
	return false
}

// CheckLink checks a participant URI (already valid per ValidateURI)
// before it is accepted; see Allowlist. It returns an EInvalid error
// about the field "uri".
func (a *Allowlist) CheckLink(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return FieldError("uri", "uri is not a valid URL")
	}
	host := u.Hostname()
	port := defaultPort(u.Scheme)
	if p := u.Port(); p != "" {
		port, _ = strconv.Atoi(p)
	}
	name, ip := host, netip.Addr{}
	if addr, err := netip.ParseAddr(host); err == nil {
		name, ip = "", addr
	}
	if why := denied(name, ip); why != "" {
		return FieldError("uri", "participant link %s is not an allowed destination: %s is %s", raw, host, why)
	}
	if !a.allows(strings.ToLower(u.Scheme), name, ip, port) {
		return FieldError("uri", "participant link %s is not an allowed destination: it matches no participant-allow rule", raw)
	}
	return nil
}

// CheckDial checks a connection about to be made to ip:port for the host
// name (or address) name, as dialled; see Allowlist. It returns an
// EForbidden error: a refused destination is a configuration matter that
// retrying does not cure.
func (a *Allowlist) CheckDial(name string, ip netip.Addr, port int) error {
	if addr, err := netip.ParseAddr(name); err == nil && addr.Unmap() == ip.Unmap() {
		name = ""
	}
	dest := netip.AddrPortFrom(ip.Unmap(), uint16(port)).String()
	if name != "" {
		dest = name + " (" + dest + ")"
	}
	if why := denied(name, ip); why != "" {
		return Errorf(EForbidden, "destination %s is not allowed: it is %s", dest, why)
	}
	if a.Empty() {
		return nil
	}
	for _, r := range a.rules {
		if ok, _ := r.match("", name, ip, port); ok {
			return nil
		}
	}
	return Errorf(EForbidden, "destination %s is not allowed: it matches no participant-allow rule", dest)
}

func defaultPort(scheme string) int {
	if strings.EqualFold(scheme, "https") {
		return 443
	}
	return 80
}
