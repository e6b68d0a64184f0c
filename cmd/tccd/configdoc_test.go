package main

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	docNameRE  = regexp.MustCompile("`([a-z][a-z0-9-]*)`")
	docSizeRE  = regexp.MustCompile(`^(\d+)\s*(KiB|MiB|GiB)$`)
	docParenRE = regexp.MustCompile(`\s*\([^)]*\)\s*`)
)

// normalDefault puts a default as the docs write it (`24h`, 64 MiB,
// (off)) and as a flag prints it (24h0m0s, 67108864, "") in one form.
func normalDefault(s string) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, "`", ""))
	s = strings.TrimSpace(docParenRE.ReplaceAllString(s, " "))
	if s == "[]" {
		s = ""
	}
	if d, err := time.ParseDuration(s); err == nil && s != "0" {
		return d.String()
	}
	if m := docSizeRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		shift := map[string]uint{"KiB": 10, "MiB": 20, "GiB": 30}[m[2]]
		return strconv.FormatInt(n<<shift, 10)
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return strconv.FormatInt(n, 10)
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return s
}

func TestNormalDefault(t *testing.T) {
	for _, c := range [][2]string{
		{"`24h`", "24h0m0s"}, {"24h0m0s", "24h0m0s"}, {"64 MiB", "67108864"}, {"`64MiB`", "67108864"},
		{"67108864", "67108864"}, {"(off)", ""}, {"0 (off)", "0"}, {"(system roots)", ""}, {"3", "3"}, {"`tccd`", "tccd"},
		{"`0s`", "0s"}, {"[]", ""},
	} {
		if got := normalDefault(c[0]); got != c[1] {
			t.Errorf("normalDefault(%q) = %q, want %q", c[0], got, c[1])
		}
	}
}

// TestConfigurationDocInSync holds docs/CONFIGURATION.md's table to the
// code: it names every option and nothing else, with its environment
// variable and its default.
func TestConfigurationDocInSync(t *testing.T) {
	data, err := os.ReadFile("../../docs/CONFIGURATION.md")
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultConfig()
	values := map[string]string{}
	for _, o := range def.options() {
		values[o.name] = o.value.String()
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		names := docNameRE.FindAllStringSubmatch(cells[1], -1)
		envs := strings.Split(cells[2], "/")
		defaults := strings.Split(cells[3], " / ")
		for i, m := range names {
			name := m[1]
			v, ok := values[name]
			if !ok {
				t.Errorf("the table documents %q, which is no option", name)
				continue
			}
			seen[name] = true
			if len(envs) == len(names) && !strings.Contains(cells[2], "…") {
				if got := strings.Trim(strings.TrimSpace(envs[i]), "`"); got != envName(name) {
					t.Errorf("%s: the table says environment %s, the code reads %s", name, got, envName(name))
				}
			}
			d := defaults[0]
			if len(defaults) == len(names) {
				d = defaults[i]
			}
			if normalDefault(d) != normalDefault(v) {
				t.Errorf("%s: the table says default %q, the code has %q", name, strings.TrimSpace(d), v)
			}
		}
	}
	for name := range values {
		if !seen[name] {
			t.Errorf("option %q is not in docs/CONFIGURATION.md's table", name)
		}
	}
}
