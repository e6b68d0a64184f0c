// Package testproc builds tccd's binaries and runs them as real processes
// on loopback for integration, crash and benchmark tests.
package testproc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles the package pkg (an import path) into dir and returns the
// binary's path.
func Build(dir, pkg string) (string, error) {
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w", pkg, err)
	}
	return out, nil
}

// Main builds the binaries of pkgs (import paths) into a temporary
// directory, records each path in bins under its base name ("tccd",
// "testpart"), runs the tests and exits. Call it from TestMain.
func Main(m *testing.M, bins map[string]string, pkgs ...string) {
	dir, err := os.MkdirTemp("", "tccd-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, pkg := range pkgs {
		bin, err := Build(dir, pkg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		bins[filepath.Base(pkg)] = bin
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Proc is a running child process.
type Proc struct {
	Name string
	Addr string // host:port it listens on
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error
}

// URL returns the base URL of the process's HTTP server.
func (p *Proc) URL() string { return "http://" + p.Addr }

// Log returns what the process wrote to stderr (and stdout) so far.
func (p *Proc) Log() string { return p.log.String() }

// Kill sends SIGKILL and waits for the process to die.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Pause stops the process with SIGSTOP: it keeps its sockets and
// memory but runs no code, as a process paused by a long GC, a debugger
// or an overloaded host.
func (p *Proc) Pause() {
	_ = p.cmd.Process.Signal(syscall.SIGSTOP)
}

// Resume lets a paused process run again (SIGCONT).
func (p *Proc) Resume() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM and waits for a clean exit; it returns the exit error.
func (p *Proc) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	return p.err
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// start runs bin with args; addrOf extracts the listening address from
// one output line ("" if the line does not tell it).
func start(t testing.TB, name, bin string, args []string, addrOf func(string) string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	// Children die with the test binary, even when it is killed by a
	// test timeout before its cleanups run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &Proc{Name: name, cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	addrc := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			line := sc.Text()
			p.log.WriteString(line + "\n")
			if !found {
				if a := addrOf(line); a != "" {
					found = true
					addrc <- a
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		// Done only once every line the process wrote is in the log.
		<-scanned
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			p.Kill()
		}
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, p.Log())
		}
	})
	select {
	case p.Addr = <-addrc:
	case <-p.done:
		t.Fatalf("%s exited before listening: %v\n%s", name, p.err, p.Log())
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not start listening\n%s", name, p.Log())
	}
	return p
}

// StartTccd runs `tccd serve` on a random loopback port with JSON logs and
// waits until /readyz answers 200.
func StartTccd(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	all := append([]string{"serve", "--listen", "127.0.0.1:0", "--log-format", "json"}, args...)
	p := start(t, "tccd", bin, all, func(line string) string {
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
			return rec.Addr
		}
		return ""
	})
	WaitReady(t, p.URL())
	return p
}

// StartParticipant runs the test participant service (cmd/testpart), with
// its database in t's temporary directory unless args name one (--db).
func StartParticipant(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	if !slices.ContainsFunc(args, func(a string) bool { return a == "--db" || strings.HasPrefix(a, "--db=") }) {
		args = append([]string{"--db", filepath.Join(t.TempDir(), "testpart.db")}, args...)
	}
	return StartService(t, "testpart", bin, args...)
}

// StartService runs a service that prints "listening <host:port>" on a
// line of its own once it accepts connections (testpart, the examples'
// services); name labels its output in failure logs.
func StartService(t testing.TB, name, bin string, args ...string) *Proc {
	t.Helper()
	return start(t, name, bin, args, func(line string) string {
		if a, ok := strings.CutPrefix(line, "listening "); ok {
			return a
		}
		return ""
	})
}

// WaitReady polls base+"/readyz" until it answers 200.
func WaitReady(t testing.TB, base string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready: %v", base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) WriteString(s string) {
	b.mu.Lock()
	b.buf.WriteString(s)
	b.mu.Unlock()
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
