// Package docs_test holds the documentation to what it says: every shell
// snippet in README.md and docs/*.md is run (or, for the commands that run
// the test suite or a benchmark, checked), every relative link and anchor
// resolves, and the configuration table matches the code (that one lives
// in cmd/tccd, next to the options).
//
// How a document's snippets run (TestDocSnippets). The ```sh blocks of one
// document run in order in one bash, in a fresh directory, in a network
// namespace of their own (unshare --net, with only loopback): the ports the
// document names (8420, 9001, …) are used as written without clashing with
// anything on the machine, and nothing can reach beyond it. The commands
// run as written, except that:
//
//   - `go run ./pkg …`, `go build -o bin/ ./pkg…` and `go install ./pkg`
//     use binaries the test builds once from this tree (on PATH, and linked
//     into bin/), so that a snippet does not compile;
//   - `go test …` and `go get …` are checked, not run: the packages exist,
//     and the -run, -bench and -fuzz patterns match tests that exist;
//   - a command ending in `&` is followed by a wait until the process
//     listens (a person types slower than a script), and its output goes
//     to a log printed when the test fails;
//   - `timeout N …` may end with status 124, and `curl --max-time` with 28;
//   - a foreground `tccd serve` runs until the end of its block, then gets
//     SIGINT, as Ctrl-C would.
//
// In a block written as a terminal session (lines starting "$ "), the
// lines after a command are its output as the document shows it; the test
// checks what an example output asserts: status lines (HTTP/1.1 204, or a
// bare 409), "state" and "code" values, and Tccstatus headers. A block
// preceded by <!-- docs-test: not run: REASON --> is only checked (tccd's
// subcommands and flags exist, packages exist); the reason is printed.
// <!-- docs-test: nats-stream NAME SUBJECTS --> runs a NATS server with
// JetStream in the namespace, with that stream, for the next block.
package docs_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// root is the repository's root, relative to this package.
const root = "../.."

// documents are the documents whose snippets run, in this order.
func documents(t *testing.T) []string {
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(docs)
	return append([]string{filepath.Join(root, "README.md")}, docs...)
}

// block is one ```sh block of a document.
type block struct {
	doc, directive string
	line           int
	cmds           []command
}

// command is one command of a block, with the output the document shows.
type command struct {
	text, output string
	line         int
}

var directiveRE = regexp.MustCompile(`<!--\s*docs-test:\s*(.*?)\s*-->`)

// parse returns the ```sh blocks of a document.
func parse(t *testing.T, path string) []block {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var blocks []block
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```sh" {
			continue
		}
		b := block{doc: filepath.Base(path), line: i + 1}
		for j := i - 1; j >= 0 && j >= i-2; j-- {
			if m := directiveRE.FindStringSubmatch(lines[j]); m != nil {
				b.directive = m[1]
				break
			}
		}
		var body []string
		start := i + 2
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, lines[i])
		}
		b.cmds = commands(body, start)
		blocks = append(blocks, b)
	}
	return blocks
}

// commands splits a block into commands. In a terminal session a command
// starts with "$ " and the other lines are output; otherwise every line
// is a command. A command goes on while its line ends in a backslash or a
// quote is open.
func commands(body []string, first int) []command {
	session := false
	for _, l := range body {
		if strings.HasPrefix(l, "$ ") {
			session = true
		}
	}
	var cmds []command
	for i := 0; i < len(body); i++ {
		l := body[i]
		if session && !strings.HasPrefix(l, "$ ") {
			if len(cmds) > 0 {
				cmds[len(cmds)-1].output += l + "\n"
			}
			continue
		}
		if strings.TrimSpace(l) == "" {
			continue
		}
		c := command{text: strings.TrimPrefix(l, "$ "), line: first + i}
		for (strings.HasSuffix(c.text, "\\") || openQuote(c.text)) && i+1 < len(body) {
			i++
			c.text += "\n" + body[i]
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// openQuote reports whether s ends inside a quoted string or a $(…)
// substitution. A comment ends the scan: nothing continues a comment.
func openQuote(s string) bool {
	return scan(s, func(i int) bool { return !isComment(s, i) })
}

// isComment reports whether an unquoted '#' at i starts a comment.
func isComment(s string, i int) bool {
	return s[i] == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\n')
}

// scan walks s as the shell reads its quotes, calling visit with the
// index of every byte outside quotes until it returns false; it reports
// whether the walk ended inside a quote or a $(…).
func scan(s string, visit func(i int) bool) (open bool) {
	var single, double bool
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case single:
			single = c != '\''
		case c == '\\':
			i++
		case c == '"':
			double = !double
		case double:
		case c == '\'':
			single = true
		case !visit(i):
			return single || double || depth > 0
		case c == '$' && i+1 < len(s) && s[i+1] == '(':
			depth++
			i++
		case c == ')' && depth > 0:
			depth--
		}
	}
	return single || double || depth > 0
}

var (
	goRunRE     = regexp.MustCompile(`(^|[;&|(]\s*|^\s*)go run (\./[\w./-]+)`)
	goBuildRE   = regexp.MustCompile(`^go build -o bin/ ((?:\./[\w./-]+\s*)+)`)
	goInstallRE = regexp.MustCompile(`^go install (\./[\w./-]+)$`)
	goTestRE    = regexp.MustCompile(`^(?:\w+=\S+\s+)*go test\s`)
	goGetRE     = regexp.MustCompile(`^go get (\S+)`)
	tccdServeRE = regexp.MustCompile(`^(?:bin/)?tccd serve\b`)
)

// packages returns the packages the run blocks build binaries of.
func packages(blocks []block) []string {
	seen := map[string]bool{"./cmd/tccd": true, "./internal/natstest/cmd/natsstream": true}
	for _, b := range blocks {
		for _, c := range b.cmds {
			for _, m := range goRunRE.FindAllStringSubmatch(c.text, -1) {
				seen[m[2]] = true
			}
			if m := goBuildRE.FindStringSubmatch(c.text); m != nil {
				for _, p := range strings.Fields(m[1]) {
					seen[p] = true
				}
			}
		}
	}
	var pkgs []string
	for p := range seen {
		if p != "./internal/mutation" {
			pkgs = append(pkgs, p)
		}
	}
	sort.Strings(pkgs)
	return pkgs
}

// TestDocSnippets runs every shell snippet of the documentation (see the
// package comment).
func TestDocSnippets(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq", "unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed: under CI=true the docs' snippets must run (apt-get install curl jq iproute2 util-linux)", tool)
			}
			t.Skipf("%s is not installed: the docs' snippets cannot run (apt-get install curl jq iproute2 util-linux)", tool)
		}
	}
	if err := exec.Command("unshare", "--user", "--map-root-user", "--net", "true").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot make a network namespace (unshare --user --map-root-user --net): %v", err)
		}
		t.Skipf("cannot make a network namespace (unshare --user --map-root-user --net): %v", err)
	}
	var all []block
	byDoc := map[string][]block{}
	docs := documents(t)
	for _, d := range docs {
		bs := parse(t, d)
		byDoc[d] = bs
		all = append(all, bs...)
	}
	bin := t.TempDir()
	build := exec.Command("go", append([]string{"build", "-o", bin + "/"}, packages(all)...)...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, d := range docs {
		if len(byDoc[d]) == 0 {
			continue
		}
		t.Run(filepath.Base(d), func(t *testing.T) {
			runDocument(t, bin, byDoc[d])
		})
	}
}

// runDocument runs the blocks of one document in one bash.
func runDocument(t *testing.T, bin string, blocks []block) {
	dir := t.TempDir()
	var script strings.Builder
	fmt.Fprintf(&script, "set -eo pipefail\nip link set lo up\ncd %q\nexport PATH=%q:$PATH\nunset TCCD_SERVER TCCD_TOKEN\n", dir, bin)
	script.WriteString(helpers)
	type step struct {
		b *block
		c *command
	}
	var steps []step
	for bi := range blocks {
		b := &blocks[bi]
		if strings.HasPrefix(b.directive, "not run:") {
			reason := strings.TrimSpace(strings.TrimPrefix(b.directive, "not run:"))
			if reason == "" {
				t.Errorf("%s:%d: a block not run must say why", b.doc, b.line)
			}
			t.Logf("%s:%d: not run (%s); checked only", b.doc, b.line, reason)
			for _, c := range b.cmds {
				check(t, bin, b, c)
			}
			continue
		}
		if strings.HasPrefix(b.directive, "nats-stream ") {
			f := strings.Fields(strings.TrimPrefix(b.directive, "nats-stream "))
			if len(f) != 2 {
				t.Fatalf("%s:%d: nats-stream NAME SUBJECTS, not %q", b.doc, b.line, b.directive)
			}
			if _, err := exec.LookPath("nats-server"); err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s:%d: nats-server is not installed: under CI=true every snippet must run", b.doc, b.line)
				}
				t.Logf("%s:%d: nats-server is not installed: this block is checked only", b.doc, b.line)
				for _, c := range b.cmds {
					check(t, bin, b, c)
				}
				continue
			}
			fmt.Fprintf(&script, "__nats %q %q\n", f[0], f[1])
		}
		fg := false
		for ci := range b.cmds {
			c := &b.cmds[ci]
			steps = append(steps, step{b, c})
			fmt.Fprintf(&script, "__step %d\n", len(steps))
			text := c.text
			switch {
			case goTestRE.MatchString(text), goGetRE.MatchString(text):
				check(t, bin, b, *c)
				continue
			case goInstallRE.MatchString(text):
				continue // the binaries are on PATH
			}
			if m := goBuildRE.FindStringSubmatch(text); m != nil {
				script.WriteString("mkdir -p bin\n")
				for _, p := range strings.Fields(m[1]) {
					fmt.Fprintf(&script, "ln -sf %q bin/\n", filepath.Join(bin, filepath.Base(p)))
				}
				if rest := strings.TrimSpace(strings.TrimPrefix(text, m[0])); rest != "" && !strings.HasPrefix(rest, "#") {
					t.Errorf("%s:%d: go build -o bin/ must stand alone: %q", b.doc, c.line, text)
				}
				continue
			}
			text = goRunRE.ReplaceAllStringFunc(text, func(s string) string {
				m := goRunRE.FindStringSubmatch(s)
				return m[1] + filepath.Base(m[2])
			})
			check(t, bin, b, *c)
			bg := strings.HasSuffix(strings.TrimSpace(stripComment(text)), "&")
			switch {
			case bg:
				body := strings.TrimSuffix(strings.TrimSpace(stripComment(text)), "&")
				if !strings.Contains(body, ">") {
					body += fmt.Sprintf(" >bg-%d.log 2>&1", len(steps))
				} else {
					body += fmt.Sprintf(" 2>bg-%d.log", len(steps))
				}
				fmt.Fprintf(&script, "%s &\n", body)
				if !strings.HasPrefix(strings.TrimSpace(body), "curl ") {
					fmt.Fprintf(&script, "__listening $! || { echo 'the process of %s:%d did not start listening'; exit 97; }\n", b.doc, c.line)
				}
			case tccdServeRE.MatchString(strings.TrimSpace(text)):
				fg = true
				fmt.Fprintf(&script, "%s >bg-%d.log 2>&1 &\n__fg=$!\n__listening $__fg || { echo 'tccd serve did not start listening'; exit 97; }\n", stripComment(text), len(steps))
			case strings.HasPrefix(strings.TrimSpace(text), "timeout "):
				fmt.Fprintf(&script, "{ %s\n} || [ $? -eq 124 ]\n", text)
			case strings.HasPrefix(strings.TrimSpace(text), "curl ") && strings.Contains(text, "--max-time"):
				fmt.Fprintf(&script, "{ %s\n} || [ $? -eq 28 ]\n", text)
			default:
				script.WriteString(text + "\n")
			}
		}
		if fg {
			script.WriteString("kill -INT $__fg; wait $__fg || true\n")
		}
	}
	script.WriteString("__step 0\n")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--user", "--map-root-user", "--net", "bash", "-c", script.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what a session left running
	}
	outputs, last := split(out.String())
	if err != nil || last != 0 {
		s := steps[max(last-1, 0)]
		if last == 0 {
			s = steps[len(steps)-1]
		}
		logs, _ := filepath.Glob(filepath.Join(dir, "bg-*.log"))
		var bgl strings.Builder
		for _, l := range logs {
			data, _ := os.ReadFile(l)
			fmt.Fprintf(&bgl, "--- %s ---\n%s\n", filepath.Base(l), tail(string(data), 3000))
		}
		t.Fatalf("%s:%d: %v\ncommand:\n%s\noutput:\n%s\nbackground processes:\n%s", s.b.doc, s.c.line, err, s.c.text, tail(outputs[last], 4000), bgl.String())
	}
	for i, s := range steps {
		for _, want := range claims(s.c.output) {
			if !want.MatchString(outputs[i+1]) {
				t.Errorf("%s:%d: the document shows %s, the command printed:\n%s", s.b.doc, s.c.line, want, tail(outputs[i+1], 2000))
			}
		}
	}
}

// helpers are the script's functions: __step marks where a command's
// output starts; __listening waits until a process listens on a TCP port
// (or has ended); __nats starts a NATS server with JetStream and a stream.
const helpers = `
__step() { printf '\n@@step %s@@\n' "$1"; }
__listening() {
  local pid=$1 i ino
  for i in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || return 1
    for ino in $(ls -l /proc/"$pid"/fd 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\].*/\1/p'); do
      if awk -v ino="$ino" '$4 == "0A" && $10 == ino { found = 1 } END { exit !found }' /proc/net/tcp /proc/net/tcp6; then return 0; fi
    done
    # A process may listen through a child (go run, a wrapper script).
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do __listening "$c" && return 0; done
    sleep 0.1
  done
  return 1
}
__nats() {
  nats-server -a 127.0.0.1 -p 4222 -js -sd "$PWD/nats-data" >nats.log 2>&1 &
  __listening $! || { echo 'nats-server did not start'; exit 97; }
  natsstream --server nats://127.0.0.1:4222 --name "$1" --subjects "$2" || exit 97
}
`

var stepRE = regexp.MustCompile(`\n@@step (\d+)@@\n`)

// split cuts a session's output at the step marks: outputs[i] is what
// step i printed; last is the last step begun (0: the script ended).
func split(s string) (outputs map[int]string, last int) {
	outputs = map[int]string{}
	idx := stepRE.FindAllStringSubmatchIndex(s, -1)
	for k, m := range idx {
		var n int
		fmt.Sscan(s[m[2]:m[3]], &n)
		end := len(s)
		if k+1 < len(idx) {
			end = idx[k+1][0]
		}
		outputs[n] += s[m[1]:end]
		last = n
	}
	return outputs, last
}

var (
	statusLineRE = regexp.MustCompile(`(?m)^HTTP/1\.1 (\d{3})\b`)
	bareStatusRE = regexp.MustCompile(`(?m)^(\d{3})$`)
	jsonClaimRE  = regexp.MustCompile(`"(state|code)"\s*:\s*"([a-z_]+)"`)
	tccStatusRE  = regexp.MustCompile(`(?mi)^Tccstatus: (\w+)`)
)

// claims returns what an example output asserts, as patterns the real
// output must match.
func claims(output string) []*regexp.Regexp {
	var res []*regexp.Regexp
	for _, m := range statusLineRE.FindAllStringSubmatch(output, -1) {
		res = append(res, regexp.MustCompile(`(?m)^HTTP/1\.1 `+m[1]+`\b`))
	}
	for _, m := range bareStatusRE.FindAllStringSubmatch(output, -1) {
		res = append(res, regexp.MustCompile(`(?m)^`+m[1]+`$`))
	}
	for _, m := range jsonClaimRE.FindAllStringSubmatch(output, -1) {
		res = append(res, regexp.MustCompile(`"`+m[1]+`"\s*:\s*"`+m[2]+`"`))
	}
	for _, m := range tccStatusRE.FindAllStringSubmatch(output, -1) {
		res = append(res, regexp.MustCompile(`(?mi)^Tccstatus: `+m[1]+`\b`))
	}
	return res
}

func stripComment(s string) string {
	lines := strings.Split(s, "\n")
	last := lines[len(lines)-1]
	if i := commentStart(last); i >= 0 {
		lines[len(lines)-1] = strings.TrimRight(last[:i], " ")
	}
	return strings.Join(lines, "\n")
}

// commentStart is the index of a trailing "# comment" outside quotes, -1
// if none.
func commentStart(l string) int {
	at := -1
	scan(l, func(i int) bool {
		if isComment(l, i) {
			at = i
			return false
		}
		return true
	})
	return at
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// check checks what can be checked of a command without running it: the
// packages of go test, go get and go run exist, test patterns match tests,
// and tccd's subcommands and flags exist.
func check(t *testing.T, bin string, b *block, c command) {
	t.Helper()
	text := stripComment(c.text)
	if goTestRE.MatchString(text) {
		checkGoTest(t, b, c, text)
		return
	}
	if m := goGetRE.FindStringSubmatch(text); m != nil {
		const module = "github.com/tccd/tccd"
		if !strings.HasPrefix(m[1], module+"/") {
			t.Errorf("%s:%d: go get of %s: not a package of %s", b.doc, c.line, m[1], module)
			return
		}
		if fi, err := os.Stat(filepath.Join(root, strings.TrimPrefix(m[1], module+"/"))); err != nil || !fi.IsDir() {
			t.Errorf("%s:%d: go get of %s: no such package", b.doc, c.line, m[1])
		}
		return
	}
	for _, m := range goRunRE.FindAllStringSubmatch(text, -1) {
		if _, err := os.Stat(filepath.Join(root, m[2])); err != nil {
			t.Errorf("%s:%d: go run %s: no such package", b.doc, c.line, m[2])
		}
	}
	checkTccd(t, bin, b, c, text)
}

// checkTccd checks that a tccd command line names a subcommand and flags
// that exist, by asking the binary for its usage.
func checkTccd(t *testing.T, bin string, b *block, c command, text string) {
	t.Helper()
	for _, line := range strings.Split(strings.ReplaceAll(text, "\\\n", " "), "\n") {
		words := strings.Fields(line)
		for i, w := range words {
			if w != "tccd" && w != "bin/tccd" && w != "./tccd" {
				continue
			}
			if i > 0 && !strings.ContainsAny(words[i-1], ";&|(") && words[i-1] != "timeout" && !regexp.MustCompile(`^\d+$`).MatchString(words[i-1]) && !strings.HasPrefix(words[i-1], "$(") {
				continue // an argument, not the command
			}
			var sub []string
			j := i + 1
			for ; j < len(words) && regexp.MustCompile(`^[a-z][a-z-]*$`).MatchString(words[j]) && len(sub) < 2; j++ {
				sub = append(sub, words[j])
			}
			usage, err := exec.Command(filepath.Join(bin, "tccd"), append(sub, "-h")...).CombinedOutput()
			if err != nil && !bytes.Contains(usage, []byte("Usage")) {
				t.Errorf("%s:%d: tccd %s -h: %v\n%s", b.doc, c.line, strings.Join(sub, " "), err, usage)
				continue
			}
			for ; j < len(words); j++ {
				w := words[j]
				if strings.ContainsAny(w, ";|)") || w == "&" || strings.HasPrefix(w, "#") {
					break
				}
				if !strings.HasPrefix(w, "-") || w == "-" {
					continue
				}
				name := strings.TrimLeft(strings.SplitN(w, "=", 2)[0], "-")
				if name == "h" || name == "help" || name == "version" {
					continue
				}
				if !regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(name) + `\b`).Match(usage) {
					t.Errorf("%s:%d: tccd %s has no flag --%s", b.doc, c.line, strings.Join(sub, " "), name)
				}
			}
		}
	}
}

var (
	pkgArgRE  = regexp.MustCompile(`^(\.|\./[\w./-]*)$`)
	testFunRE = regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Fuzz)\w*)\(`)
)

// checkGoTest checks a go test command line: its packages exist and each
// -run, -bench and -fuzz pattern matches a test of them.
func checkGoTest(t *testing.T, b *block, c command, text string) {
	t.Helper()
	args := shellWords(text[strings.Index(text, "go test")+len("go test"):])
	var pkgs []string
	patterns := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case pkgArgRE.MatchString(a):
			pkgs = append(pkgs, a)
		case a == "-run" || a == "-bench" || a == "-fuzz":
			if i+1 < len(args) {
				patterns[a] = args[i+1]
				i++
			}
		}
	}
	if len(pkgs) == 0 {
		t.Errorf("%s:%d: go test names no package: %q", b.doc, c.line, text)
		return
	}
	var funcs []string
	for _, p := range pkgs {
		dir := filepath.Join(root, strings.TrimSuffix(p, "..."))
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("%s:%d: go test %s: no such package", b.doc, c.line, p)
			continue
		}
		walk := strings.HasSuffix(p, "...")
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && path != dir && !walk {
				return filepath.SkipDir
			}
			if strings.HasSuffix(path, "_test.go") {
				data, _ := os.ReadFile(path)
				for _, m := range testFunRE.FindAllStringSubmatch(string(data), -1) {
					funcs = append(funcs, m[1])
				}
			}
			return nil
		})
	}
	for flag, pat := range patterns {
		if pat == "^$" || pat == "." {
			continue
		}
		re, err := regexp.Compile(strings.SplitN(pat, "/", 2)[0])
		if err != nil {
			t.Errorf("%s:%d: go test %s %q: %v", b.doc, c.line, flag, pat, err)
			continue
		}
		prefix := map[string]string{"-run": "Test", "-bench": "Benchmark", "-fuzz": "Fuzz"}[flag]
		found := false
		for _, f := range funcs {
			if strings.HasPrefix(f, prefix) && re.MatchString(f) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s:%d: go test %s %q matches no %s function in %v", b.doc, c.line, flag, pat, prefix, pkgs)
		}
	}
}

// shellWords splits a command line into words, honouring quotes (enough
// for the go test lines of the docs).
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	in := false
	var quote byte
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Split(bufio.ScanRunes)
	for sc.Scan() {
		c := sc.Text()[0]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == '#' && !in:
			return words
		case c == ' ' || c == '\t' || c == '\n' || c == '\\':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}
