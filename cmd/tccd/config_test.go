package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/pebble"
	"github.com/tccd/tccd/postgres"
)

// fakeEnv is a getenv over a map: the tests never touch the process
// environment.
func fakeEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeFile writes a config file into a temp dir and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tccd.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// parse runs ParseFlags as `tccd serve` does.
func parse(t *testing.T, args []string, env map[string]string) (*Main, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	m := NewMain(&stdout, &stderr, fakeEnv(env))
	err := m.ParseFlags(args)
	return m, err
}

func TestConfigDefaults(t *testing.T) {
	m, err := parse(t, nil, nil)
	if err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	want := Config{
		Listen: "127.0.0.1:8420", Data: "./tccd-data", LogLevel: "info", LogFormat: "text", UI: true, EventRing: tccd.DefaultEventRing,
		LeaseTTL:  postgres.DefaultLeaseTTL,
		CacheSize: pebble.DefaultCacheSize, MinFreeSpace: DefaultMinFreeSpace,
		Coordinator: tccd.Config{
			NodeID: "tccd", CallTimeout: tccd.DefaultCallTimeout,
			RetryMin: tccd.DefaultRetryMin, RetryMax: tccd.DefaultRetryMax,
			MaxParallel: tccd.DefaultMaxParallel, ConfirmWait: tccd.DefaultConfirmWait,
			DefaultTimeout: tccd.DefaultTimeout, MaxTimeout: tccd.DefaultMaxTimeout,
			MarginFloor: tccd.DefaultMarginFloor, MarginRTTs: tccd.DefaultMarginRTTs,
			MaxLinks: tccd.DefaultMaxLinks, Retention: tccd.DefaultRetention,
			PurgeInterval: tccd.DefaultPurgeInterval, ShutdownGrace: tccd.DefaultShutdownGrace,
			RecoveryDrives: tccd.DefaultRecoveryDrives, RedriveInterval: tccd.DefaultRedriveInterval,
			InDoubtWindow: tccd.DefaultInDoubtWindow, WebhookMaxAge: tccd.DefaultWebhookMaxAge, BarrierWait: tccd.DefaultBarrierWait,
		},
		Server: tccdhttp.ServerConfig{
			MaxBody: tccdhttp.DefaultMaxBody, ReadHeaderTimeout: tccdhttp.DefaultReadHeaderTimeout,
			ReadTimeout: tccdhttp.DefaultReadTimeout, WriteTimeout: tccdhttp.DefaultWriteTimeout,
			IdleTimeout: tccdhttp.DefaultIdleTimeout, MaxHeaderBytes: tccdhttp.DefaultMaxHeaderBytes,
			MaxStreams: tccdhttp.DefaultMaxStreams, StreamKeepAlive: tccdhttp.DefaultStreamKeepAlive,
		},
	}
	if !reflect.DeepEqual(m.Config, want) {
		t.Errorf("defaults:\n got  %+v\n want %+v", m.Config, want)
	}
	if !reflect.DeepEqual(DefaultConfig(), want) {
		t.Errorf("DefaultConfig:\n got  %+v\n want %+v", DefaultConfig(), want)
	}
	if m.ConfigPath != "" || m.CheckConfig {
		t.Errorf("config path %q, check-config %v; want none", m.ConfigPath, m.CheckConfig)
	}
	if err := want.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
}

// Every option has a flag, a file key and an environment variable of the
// same name.
func TestConfigEveryOptionInEverySource(t *testing.T) {
	def := DefaultConfig()
	for _, o := range def.options() {
		t.Run(o.name, func(t *testing.T) {
			// A value that differs from the default, of the option's type.
			var v string
			switch o.value.(type) {
			case *durationValue:
				v = "1234ms"
			case *intValue, *int64Value:
				v = "3000000"
			case *floatValue:
				v = "4.5"
			case *stringValue, *listValue:
				v = "debug"
			case *byteSizeValue:
				v = "3MiB"
			case *boolValue:
				v = "true" // the opposite of the default
				if o.value.String() == "true" {
					v = "false"
				}
			default:
				t.Fatalf("option %s has an unexpected type %T", o.name, o.value)
			}
			fileVal := `"` + v + `"`
			if _, ok := o.value.(*stringValue); !ok && !isList(o.value) && !strings.HasSuffix(v, "ms") && !strings.HasSuffix(v, "iB") {
				fileVal = v // TOML number
			}
			fromFile, err := parse(t, []string{"--config", writeFile(t, o.name+" = "+fileVal+"\n")}, nil)
			if err != nil && !isValidateError(err) {
				t.Fatalf("file: %v", err)
			}
			fromEnv, err := parse(t, nil, map[string]string{envName(o.name): v})
			if err != nil && !isValidateError(err) {
				t.Fatalf("env: %v", err)
			}
			flagArgs := []string{"--" + o.name, v}
			if _, ok := o.value.(*boolValue); ok {
				flagArgs = []string{"--" + o.name + "=" + v} // --ui false would be --ui and an argument
			}
			fromFlag, err := parse(t, flagArgs, nil)
			if err != nil && !isValidateError(err) {
				t.Fatalf("flag: %v", err)
			}
			got := func(m *Main) string {
				for _, p := range m.Config.options() {
					if p.name == o.name {
						return p.value.String()
					}
				}
				return "?"
			}
			def := o.value.String()
			for src, m := range map[string]*Main{"file": fromFile, "env": fromEnv, "flag": fromFlag} {
				if g := got(m); g == def {
					t.Errorf("%s: %s still has its default %s after setting %s", src, o.name, def, v)
				}
			}
			if got(fromFile) != got(fromEnv) || got(fromEnv) != got(fromFlag) {
				t.Errorf("sources disagree: file %s, env %s, flag %s", got(fromFile), got(fromEnv), got(fromFlag))
			}
		})
	}
}

func isList(v flag.Value) bool { _, ok := v.(*listValue); return ok }

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"1048576", 1 << 20, true}, {"512KiB", 512 << 10, true}, {"64MiB", 64 << 20, true},
		{"2GiB", 2 << 30, true}, {"-1", 0, false}, {"1.5MiB", 0, false}, {"64MB", 0, false}, {"", 0, false},
		{"99999999999GiB", 0, false},
	}
	for _, tt := range tests {
		var v byteSizeValue
		err := v.Set(tt.in)
		if (err == nil) != tt.ok || (tt.ok && int64(v) != tt.want) {
			t.Errorf("Set(%q) = %d, %v; want %d ok=%v", tt.in, v, err, tt.want, tt.ok)
		}
		if tt.ok {
			var again byteSizeValue
			if err := again.Set(v.String()); err != nil || again != v {
				t.Errorf("String %q does not read back: %v", v.String(), err)
			}
		}
	}
}

// isValidateError tells apart an error of Validate (the value was read,
// and breaks a rule such as log-level) from a parse error.
func isValidateError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "must ") && !strings.Contains(s, "is not a")
}

func TestConfigPrecedence(t *testing.T) {
	tests := []struct {
		name  string
		file  string // "" for no file
		env   map[string]string
		flags []string
		check func(t *testing.T, c Config)
	}{
		{
			name: "file only", file: "call-timeout = \"7s\"\nmax-links = 7\nmargin-rtts = 2.5\nlisten = \"0.0.0.0:9000\"\ncache-size = 2097152\n",
			check: func(t *testing.T, c Config) {
				eq(t, "call-timeout", c.Coordinator.CallTimeout, 7*time.Second)
				eq(t, "max-links", c.Coordinator.MaxLinks, 7)
				eq(t, "margin-rtts", c.Coordinator.MarginRTTs, 2.5)
				eq(t, "listen", c.Listen, "0.0.0.0:9000")
				eq(t, "cache-size", c.CacheSize, int64(2<<20))
				eq(t, "retry-min (untouched)", c.Coordinator.RetryMin, tccd.DefaultRetryMin)
			},
		},
		{
			name: "env only", env: map[string]string{"TCCD_CALL_TIMEOUT": "8s", "TCCD_MAX_BODY": "2048", "TCCD_LOG_LEVEL": "debug"},
			check: func(t *testing.T, c Config) {
				eq(t, "call-timeout", c.Coordinator.CallTimeout, 8*time.Second)
				eq(t, "max-body", c.Server.MaxBody, int64(2048))
				eq(t, "log-level", c.LogLevel, "debug")
			},
		},
		{
			name: "flags only", flags: []string{"--call-timeout", "9s", "--read-header-timeout=2s", "-node-id", "n1"},
			check: func(t *testing.T, c Config) {
				eq(t, "call-timeout", c.Coordinator.CallTimeout, 9*time.Second)
				eq(t, "read-header-timeout", c.Server.ReadHeaderTimeout, 2*time.Second)
				eq(t, "node-id", c.Coordinator.NodeID, "n1")
			},
		},
		{
			name: "env over file", file: "call-timeout = \"7s\"\nretry-min = \"1s\"\n",
			env: map[string]string{"TCCD_CALL_TIMEOUT": "8s"},
			check: func(t *testing.T, c Config) {
				eq(t, "call-timeout", c.Coordinator.CallTimeout, 8*time.Second)
				eq(t, "retry-min (file)", c.Coordinator.RetryMin, time.Second)
			},
		},
		{
			name: "flag over file", file: "call-timeout = \"7s\"\nretry-min = \"1s\"\n",
			flags: []string{"--call-timeout", "9s"},
			check: func(t *testing.T, c Config) {
				eq(t, "call-timeout", c.Coordinator.CallTimeout, 9*time.Second)
				eq(t, "retry-min (file)", c.Coordinator.RetryMin, time.Second)
			},
		},
		{
			name: "flag over env", env: map[string]string{"TCCD_CALL_TIMEOUT": "8s", "TCCD_RETRY_MIN": "2s"},
			flags: []string{"--call-timeout=9s"},
			check: func(t *testing.T, c Config) {
				eq(t, "call-timeout", c.Coordinator.CallTimeout, 9*time.Second)
				eq(t, "retry-min (env)", c.Coordinator.RetryMin, 2*time.Second)
			},
		},
		{
			name: "flag over env over file", file: "call-timeout = \"7s\"\nretry-min = \"1s\"\nretry-max = \"10s\"\nmax-links = 7\n",
			env:   map[string]string{"TCCD_CALL_TIMEOUT": "8s", "TCCD_RETRY_MIN": "2s", "TCCD_MAX_LINKS": "8"},
			flags: []string{"--call-timeout", "9s", "--max-links", "9"},
			check: func(t *testing.T, c Config) {
				eq(t, "call-timeout", c.Coordinator.CallTimeout, 9*time.Second)
				eq(t, "max-links", c.Coordinator.MaxLinks, 9)
				eq(t, "retry-min (env)", c.Coordinator.RetryMin, 2*time.Second)
				eq(t, "retry-max (file)", c.Coordinator.RetryMax, 10*time.Second)
			},
		},
		{
			name: "ui off in the file, on in env, off by flag", file: "ui = false\n",
			env: map[string]string{"TCCD_UI": "true"}, flags: []string{"--ui=false"},
			check: func(t *testing.T, c Config) { eq(t, "ui", c.UI, false) },
		},
		{
			name: "ui off in env, on by a bare flag", env: map[string]string{"TCCD_UI": "false"}, flags: []string{"--ui"},
			check: func(t *testing.T, c Config) { eq(t, "ui", c.UI, true) },
		},
		{
			name: "ui off in the file", file: "ui = false\n",
			check: func(t *testing.T, c Config) { eq(t, "ui", c.UI, false) },
		},
		{
			name: "empty env value keeps the file's", file: "call-timeout = \"7s\"\n",
			env: map[string]string{"TCCD_CALL_TIMEOUT": ""},
			check: func(t *testing.T, c Config) {
				eq(t, "call-timeout", c.Coordinator.CallTimeout, 7*time.Second)
			},
		},
		{
			name: "TCCD_CONFIG names the file", file: "call-timeout = \"7s\"\n",
			env: map[string]string{"TCCD_CONFIG": "<file>"},
			check: func(t *testing.T, c Config) {
				eq(t, "call-timeout", c.Coordinator.CallTimeout, 7*time.Second)
			},
		},
		{
			name: "--config over TCCD_CONFIG", file: "call-timeout = \"7s\"\n",
			env: map[string]string{"TCCD_CONFIG": "/nonexistent/tccd.toml"},
			check: func(t *testing.T, c Config) {
				eq(t, "call-timeout", c.Coordinator.CallTimeout, 7*time.Second)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := make(map[string]string, len(tt.env))
			for k, v := range tt.env {
				env[k] = v
			}
			args := append([]string(nil), tt.flags...)
			if tt.file != "" {
				path := writeFile(t, tt.file)
				if env["TCCD_CONFIG"] == "<file>" {
					env["TCCD_CONFIG"] = path
				} else {
					args = append([]string{"--config", path}, args...)
				}
			}
			m, err := parse(t, args, env)
			if err != nil {
				t.Fatalf("ParseFlags: %v", err)
			}
			tt.check(t, m.Config)
		})
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		file  string // "" for no file
		env   map[string]string
		flags []string
		want  []string // substrings of the error
	}{
		{name: "unknown file key", file: "call-timeout = \"5s\"\nbogus-key = 1\n", want: []string{"config file", `unknown key "bogus-key"`}},
		{name: "file table", file: "[server]\nmax-body = 2048\n", want: []string{"config file", `unknown key "server"`}},
		{name: "file underscore key", file: "call_timeout = \"5s\"\n", want: []string{"config file", `unknown key "call_timeout"`}},
		{name: "list value in file", file: "data = [\"/a\", \"/b\"]\n", want: []string{"config file", "data", "a list"}},
		{name: "table value in file", file: "listen = { host = \"0.0.0.0\" }\n", want: []string{"config file", "listen", "a table"}},
		{name: "malformed file", file: "call-timeout = \n", want: []string{"config file"}},
		{name: "missing file", flags: []string{"--config", "/nonexistent/tccd.toml"}, want: []string{"config file", "/nonexistent/tccd.toml"}},
		{name: "bad duration in file", file: "call-timeout = \"soon\"\n", want: []string{"config file", "call-timeout", `"soon" is not a duration`}},
		{name: "duration without unit in file", file: "retry-min = 5\n", want: []string{"config file", "retry-min", `"5" is not a duration`}},
		{name: "bad duration in env", env: map[string]string{"TCCD_CALL_TIMEOUT": "soon"}, want: []string{"environment TCCD_CALL_TIMEOUT", `"soon" is not a duration`}},
		{name: "bad duration in flag", flags: []string{"--call-timeout", "soon"}, want: []string{"flag", "call-timeout", `"soon" is not a duration`}},
		{name: "bad integer in file", file: "max-links = \"many\"\n", want: []string{"config file", "max-links", "not an integer"}},
		{name: "bad integer in env", env: map[string]string{"TCCD_MAX_LINKS": "many"}, want: []string{"environment TCCD_MAX_LINKS", "not an integer"}},
		{name: "bad integer in flag", flags: []string{"--max-body", "1MB"}, want: []string{"flag", "max-body", "not an integer"}},
		{name: "bad float in env", env: map[string]string{"TCCD_MARGIN_RTTS": "x"}, want: []string{"environment TCCD_MARGIN_RTTS", "not a number"}},
		{name: "bad bool in env", env: map[string]string{"TCCD_UI": "maybe"}, want: []string{"environment TCCD_UI", `"maybe" is not true or false`}},
		{name: "bad bool in file", file: "ui = \"off\"\n", want: []string{"config file", "ui", `"off" is not true or false`}},
		{name: "unknown flag", flags: []string{"--no-such-flag"}, want: []string{"no-such-flag"}},
		{name: "stray argument", flags: []string{"extra"}, want: []string{"unexpected arguments"}},
		{name: "write-timeout equal to confirm-wait", flags: []string{"--write-timeout", "30s", "--confirm-wait", "30s"}, want: []string{"write-timeout", "confirm-wait"}},
		{name: "write-timeout below confirm-wait", env: map[string]string{"TCCD_CONFIRM_WAIT": "2m"}, want: []string{"write-timeout (1m0s) must exceed confirm-wait (2m0s)"}},
		{name: "retry-max below retry-min", file: "retry-min = \"10s\"\nretry-max = \"1s\"\n", want: []string{"retry-max (1s) must not be below retry-min (10s)"}},
		{name: "bad log level", env: map[string]string{"TCCD_LOG_LEVEL": "verbose"}, want: []string{`log-level must be debug, info, warn or error, not "verbose"`}},
		{name: "bad log format", flags: []string{"--log-format", "xml"}, want: []string{"log-format"}},
		{name: "zero call-timeout", flags: []string{"--call-timeout", "0s"}, want: []string{"call-timeout must be positive"}},
		{name: "negative read-header-timeout", flags: []string{"--read-header-timeout", "-1s"}, want: []string{"read-header-timeout must be positive"}},
		{name: "default-timeout over max-timeout", flags: []string{"--default-timeout", "2h", "--max-timeout", "1h"}, want: []string{"default-timeout (2h0m0s) must not exceed max-timeout (1h0m0s)"}},
		{name: "max-links zero", flags: []string{"--max-links", "0"}, want: []string{"max-links must be at least 1"}},
		{name: "small max-body", flags: []string{"--max-body", "10"}, want: []string{"max-body must be at least 1024"}},
		{name: "small cache", flags: []string{"--cache-size", "1"}, want: []string{"cache-size must be at least 1 MiB"}},
		{name: "empty listen", flags: []string{"--listen", ""}, want: []string{"listen must not be empty"}},
		{name: "every problem reported", flags: []string{"--log-level", "loud", "--retry-min", "1m", "--retry-max", "1s"}, want: []string{"log-level", "retry-max"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string(nil), tt.flags...)
			if tt.file != "" {
				args = append([]string{"--config", writeFile(t, tt.file)}, args...)
			}
			_, err := parse(t, args, tt.env)
			if err == nil {
				t.Fatalf("ParseFlags(%q) succeeded, want an error with %q", args, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// Errors name the source they come from, and only that source.
func TestConfigErrorNamesSource(t *testing.T) {
	path := writeFile(t, "call-timeout = \"soon\"\n")
	_, err := parse(t, []string{"--config", path}, nil)
	if err == nil || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "environment") {
		t.Errorf("file error %v: want it to name %s and not the environment", err, path)
	}
	_, err = parse(t, nil, map[string]string{"TCCD_RETRY_MAX": "soon"})
	if err == nil || !strings.Contains(err.Error(), "TCCD_RETRY_MAX") || strings.Contains(err.Error(), "config file") {
		t.Errorf("env error %v: want it to name TCCD_RETRY_MAX and not a file", err)
	}
}

func TestRun(t *testing.T) {
	valid := writeFile(t, "call-timeout = \"3s\"\nlog-level = \"warn\"\n")
	invalid := writeFile(t, "retry-min = \"10s\"\nretry-max = \"1s\"\n")
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantErr    error  // nil: no error; errAny: any error
		wantStdout string // substring ("" for empty stdout)
		wantStderr string // substring, when set
		wantMsg    string // substring of the error, when set
	}{
		{name: "check-config defaults", args: []string{"serve", "--check-config"}, wantStdout: "configuration is valid\n"},
		{name: "check-config file", args: []string{"serve", "--check-config", "--config", valid}, wantStdout: "configuration is valid\n"},
		{name: "check-config env file", args: []string{"serve", "--check-config"}, env: map[string]string{"TCCD_CONFIG": valid, "TCCD_MAX_LINKS": "10"}, wantStdout: "configuration is valid\n"},
		{name: "check-config invalid file", args: []string{"serve", "--check-config", "--config", invalid}, wantErr: errAny},
		{name: "check-config invalid env", args: []string{"serve", "--check-config"}, env: map[string]string{"TCCD_WRITE_TIMEOUT": "1s"}, wantErr: errAny},
		{name: "check-config invalid flag", args: []string{"serve", "--check-config", "--log-level", "chatty"}, wantErr: errAny},
		{name: "check-config bad duration", args: []string{"serve", "--check-config", "--retry-min", "fast"}, wantErr: errUsage, wantMsg: "retry-min"},
		{name: "check-config unknown key", args: []string{"serve", "--check-config", "--config", writeFile(t, "nope = 1\n")}, wantErr: errAny},
		{name: "serve stray argument", args: []string{"serve", "--check-config", "now"}, wantErr: errUsage},
		{name: "serve help", args: []string{"serve", "-h"}, wantStdout: "call-timeout"},
		{name: "unknown command", args: []string{"frobnicate"}, wantErr: errUsage, wantMsg: `unknown command "frobnicate"`},
		{name: "no command", args: nil, wantErr: errUsage, wantStderr: "Usage:"},
		{name: "version", args: []string{"version"}, wantStdout: "tccd " + Version + "\n"},
		{name: "help", args: []string{"help"}, wantStdout: "Usage:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			// A context that is already done: a test that wrongly starts
			// serving returns at once instead of hanging.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			// --check-config binds the listen address to check it: use a
			// free port, not the default one, which may be in use.
			env := map[string]string{"TCCD_LISTEN": "127.0.0.1:0"}
			for k, v := range tt.env {
				env[k] = v
			}
			err := run(ctx, tt.args, &stdout, &stderr, fakeEnv(env))
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("run(%q): %v (stderr %q)", tt.args, err, stderr.String())
			case tt.wantErr == errAny && err == nil, tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("run(%q) = %v, want %v", tt.args, err, tt.wantErr)
			}
			if tt.wantStdout == "" {
				if stdout.Len() > 0 {
					t.Errorf("stdout %q, want nothing", stdout.String())
				}
			} else if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q, want %q", stdout.String(), tt.wantStdout)
			}
			if tt.wantStderr != "" && !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.wantStderr)
			}
			if tt.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantMsg)) {
				t.Errorf("error %v, want %q", err, tt.wantMsg)
			}
			if err != nil && exitCode(err) == 0 {
				t.Errorf("exit code 0 for error %v", err)
			}
		})
	}
}

var errAny = errors.New("any error")

// TestCheckConfigReportsEverything: --check-config reports every problem
// in one run — every unknown key, bad values, missing files, a listen
// address that cannot be bound, a data directory that cannot be written —
// and changes nothing.
func TestCheckConfigReportsEverything(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	notDir := writeFile(t, "x")
	cfg := writeFile(t, "nope = 1\nalso-nope = 2\nretry-min = \"soon\"\nauth-tokens-file = \"/no/such/tokens\"\n")
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"serve", "--check-config", "--config", cfg,
		"--listen", busy.Addr().String(), "--data", filepath.Join(notDir, "data"), "--participant-ca", "/no/such/ca.pem"},
		&stdout, &stderr, fakeEnv(map[string]string{"TCCD_MAX_LINKS": "many"}))
	if err == nil {
		t.Fatal("check-config passed")
	}
	for _, want := range []string{`unknown key "nope"`, `unknown key "also-nope"`, "retry-min", "TCCD_MAX_LINKS",
		"auth-tokens-file", "participant-ca", "listen address " + busy.Addr().String(), "data directory", "not a directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("check-config error lacks %q:\n%v", want, err)
		}
	}
	if _, err := os.Stat(filepath.Join(notDir, "data")); err == nil {
		t.Error("check-config created the data directory")
	}
}

// TestServeChecksListenFirst: a serve that cannot bind its address fails
// before it creates the data directory.
func TestServeChecksListenFirst(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	data := filepath.Join(t.TempDir(), "data")
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"serve", "--listen", busy.Addr().String(), "--data", data}, &stdout, &stderr, fakeEnv(nil))
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("serve on a busy address = %v", err)
	}
	if _, err := os.Stat(data); err == nil {
		t.Error("serve created the data directory before finding its address busy")
	}
}
