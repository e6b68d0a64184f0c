package tccd

import (
	"strings"
	"testing"
	"time"
)

func TestValidateURI(t *testing.T) {
	tests := []struct {
		uri string
		ok  bool
	}{
		{"http://127.0.0.1:8080/booking/42", true},
		{"https://api.swiss.example/booking/42?x=1", true},
		{"http://[::1]:9000/r/1", true},
		{"", false},
		{"/booking/42", false},
		{"booking/42", false},
		{"ftp://host/x", false},
		{"file:///etc/passwd", false},
		{"javascript:alert(1)", false},
		{"mailto:a@b.c", false},
		{"http:opaque", false},
		{"http://", false},
		{"http://user:pw@host/x", false},
		{"http://host/x#frag", false},
		{"http://host/a b", false},
		{"http://host/a\nb", false},
		{"http://host:0/x", false},
		{"http://host:99999/x", false},
		{"http://host:abc/x", false},
		{"http://host/" + strings.Repeat("a", MaxURILength), false},
	}
	for _, tt := range tests {
		err := ValidateURI(tt.uri)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateURI(%q) = %v, want ok=%v", tt.uri, err, tt.ok)
		}
		if err != nil && ErrorCode(err) != EInvalid {
			t.Errorf("ValidateURI(%q) code = %s, want invalid", tt.uri, ErrorCode(err))
		}
	}
}

func TestMarginAndTooSoon(t *testing.T) {
	c := NewCoordinator(Config{MarginFloor: 200 * time.Millisecond, MarginRTTs: 4}, nil, nil, nil, nil)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := c.Margin("slow:1"); got != 200*time.Millisecond {
		t.Fatalf("margin without samples = %v, want the floor", got)
	}
	c.rtt.observe("slow:1", 100*time.Millisecond)
	if got := c.Margin("slow:1"); got != 400*time.Millisecond {
		t.Fatalf("margin after a 100ms round trip = %v, want 400ms", got)
	}
	tests := []struct {
		name    string
		parts   []Participant
		tooSoon bool
	}{
		{"far", []Participant{{URI: "http://fast:1/a", Expires: now.Add(time.Minute), State: ParticipantPending}}, false},
		{"within floor", []Participant{{URI: "http://fast:1/a", Expires: now.Add(150 * time.Millisecond), State: ParticipantPending}}, true},
		{"past", []Participant{{URI: "http://fast:1/a", Expires: now.Add(-time.Second), State: ParticipantPending}}, true},
		{"within rtt margin", []Participant{{URI: "http://slow:1/a", Expires: now.Add(300 * time.Millisecond), State: ParticipantPending}}, true},
		{"settled ignored", []Participant{{URI: "http://slow:1/a", Expires: now.Add(time.Millisecond), State: ParticipantConfirmed}}, false},
		{"one of many", []Participant{
			{URI: "http://fast:1/a", Expires: now.Add(time.Minute), State: ParticipantPending},
			{URI: "http://fast:1/b", Expires: now.Add(10 * time.Millisecond), State: ParticipantPending},
		}, true},
	}
	for _, tt := range tests {
		if got := c.tooSoon(&Transaction{Participants: tt.parts}, now); got != tt.tooSoon {
			t.Errorf("%s: tooSoon = %v, want %v", tt.name, got, tt.tooSoon)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{}.WithDefaults()
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"negative call timeout", func(c *Config) { c.CallTimeout = -1 }},
		{"retry max below min", func(c *Config) { c.RetryMax = c.RetryMin / 2 }},
		{"default over max timeout", func(c *Config) { c.DefaultTimeout = c.MaxTimeout + 1 }},
		{"zero parallel", func(c *Config) { c.MaxParallel = -1 }},
		{"negative margin", func(c *Config) { c.MarginFloor = -time.Second }},
		{"zero links", func(c *Config) { c.MaxLinks = -3 }},
	}
	for _, tt := range tests {
		c := good
		tt.mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", tt.name)
		}
	}
}

func TestHostOf(t *testing.T) {
	tests := map[string]string{
		"http://127.0.0.1:8080/booking/42": "127.0.0.1:8080",
		"https://api.example/x?y=1":        "api.example",
		"http://[::1]:9/r":                 "[::1]:9",
		"http://host":                      "host",
		"http://host?q":                    "host",
		"no-scheme":                        "",
	}
	for uri, want := range tests {
		if got := HostOf(uri); got != want {
			t.Errorf("HostOf(%q) = %q, want %q", uri, got, want)
		}
	}
}
