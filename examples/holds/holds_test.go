package holds

import (
	"fmt"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		in   []Line
		want string // fmt of the result, or "error"
	}{
		{"sorted by key", []Line{{"pear", 1}, {"apple", 2}}, "[{apple 2} {pear 1}]"},
		{"merged", []Line{{"apple", 1}, {"pear", 1}, {"apple", 2}}, "[{apple 3} {pear 1}]"},
		{"empty", nil, "[]"},
		{"no key", []Line{{"", 1}}, "error"},
		{"zero", []Line{{"apple", 0}}, "error"},
		{"negative", []Line{{"apple", 2}, {"apple", -1}}, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Normalize(tt.in)
			s := fmt.Sprint(got)
			if err != nil {
				s = "error"
			}
			if s != tt.want {
				t.Errorf("Normalize(%v) = %s (%v), want %s", tt.in, s, err, tt.want)
			}
		})
	}
}

func TestFunds(t *testing.T) {
	f := funds{}
	for _, ok := range []string{"alice=100", "bob=0"} {
		if err := f.Set(ok); err != nil {
			t.Errorf("Set(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"alice", "=5", "alice=x", "alice=1.5"} {
		if err := f.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	if fmt.Sprint(map[string]int64(f)) != "map[alice:100 bob:0]" {
		t.Errorf("funds = %v", f)
	}
}
