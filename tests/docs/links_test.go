package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRE = regexp.MustCompile("(?m)^#{1,6} (.+)$")
	fenceRE   = regexp.MustCompile("(?s)```.*?```")
)

// slug is GitHub's anchor of a heading: lower case, punctuation but '-'
// and '_' dropped, spaces made '-'.
func slug(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	var b strings.Builder
	for _, r := range h {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127 && r != '—' && r != '…' && r != '’' && r != '→':
			b.WriteRune(r)
		}
	}
	return b.String()
}

func anchors(t *testing.T, path string) map[string]bool {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := fenceRE.ReplaceAllString(string(data), "")
	as := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(text, -1) {
		as[slug(m[1])] = true
	}
	return as
}

// TestDocLinks: every relative link of README.md and docs/*.md names a
// file that exists, and every #anchor a heading of its document.
func TestDocLinks(t *testing.T) {
	for _, doc := range documents(t) {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := fenceRE.ReplaceAllString(string(data), "")
		for _, m := range linkRE.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := doc
			if file != "" {
				path = filepath.Join(filepath.Dir(doc), file)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s: link to %s: no such file", filepath.Base(doc), target)
					continue
				}
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !anchors(t, path)[anchor] {
				t.Errorf("%s: link to %s: no such heading", filepath.Base(doc), target)
			}
		}
	}
}

func TestSlug(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Five minutes with curl", "five-minutes-with-curl"},
		{"forsrc's TCC server and the all-confirmed barrier", "forsrcs-tcc-server-and-the-all-confirmed-barrier"},
		{"Messages with the participant kit (outbox)", "messages-with-the-participant-kit-outbox"},
		{"Measuring it: `tccd bench`", "measuring-it-tccd-bench"},
		{"Variants: do-compensate participants, undoing confirmed ones, messages", "variants-do-compensate-participants-undoing-confirmed-ones-messages"},
	} {
		if got := slug(c.in); got != c.want {
			t.Errorf("slug(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
