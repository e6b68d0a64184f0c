package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
	"github.com/tccd/tccd/pebble"
	"github.com/tccd/tccd/postgres"
)

// Config is everything `tccd serve` can be told. Each field is one option
// with the same name as a flag (--call-timeout), a config-file key
// (call-timeout = "5s") and an environment variable (TCCD_CALL_TIMEOUT).
// Precedence: flag, then environment, then file, then default.
type Config struct {
	Listen    string
	Data      string
	LogLevel  string
	LogFormat string
	CacheSize int64
	// MinFreeSpace is the free disk space kept in reserve for the log:
	// below it no new decision is taken (503) until space returns.
	MinFreeSpace int64
	// WALSyncInterval is the least time between two syncs of the store's
	// write-ahead log (0: sync as soon as a commit asks).
	WALSyncInterval time.Duration
	// Store selects where transactions are kept: "" for the embedded
	// store in Data, or the URL of a PostgreSQL database (postgres://…),
	// which several tccd processes may share. It may hold a password:
	// it is never logged.
	Store string
	// DebugListen, when set, serves Go's pprof profiles on a separate
	// address, never on the API's. Keep it on loopback.
	DebugListen string
	// MetricsListen, when set, serves GET /metrics on an address of its
	// own, without authentication, instead of on the API's listener.
	MetricsListen string
	// Tracing turns on OpenTelemetry tracing, exported over OTLP/HTTP as
	// the standard OTEL_* environment variables say (see package otel).
	Tracing bool

	// AuthTokensFile, when set, turns authentication on: the file holds
	// the accepted bearer tokens, hashed (see http.Tokens).
	AuthTokensFile string
	// TLSCert and TLSKey, when set, serve the API over HTTPS. TLSClientCA,
	// when set, requires client certificates signed by it (mutual TLS).
	TLSCert, TLSKey, TLSClientCA string
	// ParticipantCA, when set, is the only CA trusted for HTTPS
	// participants (else the system's roots). ParticipantCert and
	// ParticipantKey are a client certificate presented to them.
	ParticipantCA, ParticipantCert, ParticipantKey string
	// ParticipantAllow lists the destinations the coordinator may call
	// (see tccd.Allowlist); empty allows all but the built-in refusals.
	ParticipantAllow []string
	// WebhookSecretFile holds the secret that signs the notifications of
	// outcomes; without it, notify URLs are refused.
	WebhookSecretFile string
	// NATS is the broker to which the messages enlisted in transactions
	// are published (NATS JetStream); off when its URL is empty.
	NATS NATSConfig
	// EventRing is how many recent events are kept for streams that
	// resume (Last-Event-ID).
	EventRing int
	// LeaseTTL is the length of a node's lease on the transactions it
	// drives, with a PostgreSQL store (a cluster).
	LeaseTTL time.Duration
	// UI serves the activity monitor, a web dashboard, at /ui/ on the
	// API's listener (package ui).
	UI bool

	Coordinator tccd.Config
	Server      tccdhttp.ServerConfig
}

// NATSConfig says how to reach the NATS server. Secrets come from files,
// never from flags.
type NATSConfig struct {
	URL                           string
	CredsFile, NKeySeedFile       string
	User, PasswordFile, TokenFile string
	CAFile, CertFile, KeyFile     string
}

// DefaultListen and DefaultData are where tccd listens and keeps its log;
// DefaultMinFreeSpace the disk space kept in reserve for it.
const (
	DefaultMinFreeSpace = 64 << 20
	DefaultListen       = "127.0.0.1:8420"
	DefaultData         = "./tccd-data"
)

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	return Config{
		Listen: DefaultListen, Data: DefaultData, LogLevel: "info", LogFormat: "text", UI: true,
		EventRing:    tccd.DefaultEventRing,
		LeaseTTL:     postgres.DefaultLeaseTTL,
		CacheSize:    pebble.DefaultCacheSize,
		MinFreeSpace: DefaultMinFreeSpace,
		Coordinator:  tccd.Config{}.WithDefaults(),
		Server:       tccdhttp.ServerConfig{}.WithDefaults(),
	}
}

// option is one setting: its name and a flag.Value bound to its field.
type option struct {
	name  string
	usage string
	value flag.Value
}

func (c *Config) options() []option {
	cc, sc := &c.Coordinator, &c.Server
	return []option{
		{"listen", "address to serve the API on (host:port)", (*stringValue)(&c.Listen)},
		{"data", "directory of the embedded transaction log", (*stringValue)(&c.Data)},
		{"store", "where transactions are kept: empty for the embedded log in data, or a PostgreSQL database, postgres://user:password@host/db", (*stringValue)(&c.Store)},
		{"log-level", "debug, info, warn or error", (*stringValue)(&c.LogLevel)},
		{"log-format", "text or json", (*stringValue)(&c.LogFormat)},
		{"cache-size", "block cache of the embedded store, bytes", (*int64Value)(&c.CacheSize)},
		{"min-free-space", "disk space kept free for the log (e.g. 64MiB); below it decisions are refused with 503", (*byteSizeValue)(&c.MinFreeSpace)},
		{"redrive-interval", "how often decided transactions left unsettled by a store error are driven again", (*durationValue)(&cc.RedriveInterval)},
		{"wal-sync-interval", "least time between two syncs of the log (0: at once); more decisions share a sync", (*durationValue)(&c.WALSyncInterval)},
		{"ui", "serve the activity monitor, a web dashboard of the transactions, at /ui/ (--ui=false turns it off)", (*boolValue)(&c.UI)},
		{"debug-listen", "address serving /debug/pprof/ and /debug/heap (off when empty; keep it on loopback)", (*stringValue)(&c.DebugListen)},
		{"metrics-listen", "address serving GET /metrics (Prometheus) on its own listener, without authentication; empty: /metrics is on the API's listener, for admins when auth is on", (*stringValue)(&c.MetricsListen)},
		{"tracing", "export OpenTelemetry traces over OTLP/HTTP, configured by the OTEL_* environment variables (also on when OTEL_TRACES_EXPORTER=otlp)", (*boolValue)(&c.Tracing)},
		{"auth-tokens-file", "file of bearer tokens (name role sha256 a line); authentication is off when empty", (*stringValue)(&c.AuthTokensFile)},
		{"tls-cert", "PEM certificate (chain) to serve the API over HTTPS; with tls-key", (*stringValue)(&c.TLSCert)},
		{"tls-key", "PEM private key of tls-cert", (*stringValue)(&c.TLSKey)},
		{"tls-client-ca", "PEM CA certificates; when set, API clients must present a certificate signed by one (mutual TLS)", (*stringValue)(&c.TLSClientCA)},
		{"participant-ca", "PEM CA certificates trusted for HTTPS participants, instead of the system's", (*stringValue)(&c.ParticipantCA)},
		{"participant-cert", "PEM client certificate presented to HTTPS participants; with participant-key", (*stringValue)(&c.ParticipantCert)},
		{"participant-key", "PEM private key of participant-cert", (*stringValue)(&c.ParticipantKey)},
		{"participant-allow", "allowed participant destinations, [scheme://]host[:port] or CIDR, comma-separated or repeated (empty: all but link-local and metadata addresses)", (*listValue)(&c.ParticipantAllow)},
		{"webhook-secret-file", "file holding the secret that signs outcome notifications (Tcc-Signature); without it, notify URLs are refused", (*stringValue)(&c.WebhookSecretFile)},
		{"webhook-max-age", "how long the notification of an outcome is retried before it is marked failed", (*durationValue)(&cc.WebhookMaxAge)},
		{"nats-url", "NATS server(s) with JetStream to which messages enlisted in transactions are published, nats://host:4222 (comma-separated for a cluster); messages are refused when empty", (*stringValue)(&c.NATS.URL)},
		{"nats-creds", "NATS .creds file (user JWT and NKey seed)", (*stringValue)(&c.NATS.CredsFile)},
		{"nats-nkey-seed", "file holding a NATS user's NKey seed", (*stringValue)(&c.NATS.NKeySeedFile)},
		{"nats-user", "NATS user name; with nats-password-file", (*stringValue)(&c.NATS.User)},
		{"nats-password-file", "file holding the NATS user's password", (*stringValue)(&c.NATS.PasswordFile)},
		{"nats-token-file", "file holding a NATS token", (*stringValue)(&c.NATS.TokenFile)},
		{"nats-ca", "PEM CA certificates trusted for the NATS server (turns TLS on)", (*stringValue)(&c.NATS.CAFile)},
		{"nats-cert", "PEM client certificate presented to the NATS server; with nats-key", (*stringValue)(&c.NATS.CertFile)},
		{"nats-key", "PEM private key of nats-cert", (*stringValue)(&c.NATS.KeyFile)},
		{"event-ring", "recent events kept for event streams that resume with Last-Event-ID", (*intValue)(&c.EventRing)},
		{"max-streams", "event streams (GET /api/v1/events) one client may have open at once", (*intValue)(&sc.MaxStreams)},
		{"rate-limit", "requests per second each client may make (0: no limit)", (*floatValue)(&sc.RateLimit)},
		{"rate-burst", "requests a client may make at once (0: rate-limit rounded up)", (*intValue)(&sc.RateBurst)},
		{"node-id", "name of this coordinator as owner of its transactions; with a PostgreSQL store each node needs its own (the default is then made from the host name)", (*stringValue)(&cc.NodeID)},
		{"lease-ttl", "with a PostgreSQL store: how long a node's lease on the transactions it drives lasts without renewal; another node takes them over after it", (*durationValue)(&c.LeaseTTL)},
		{"call-timeout", "timeout of one call to a participant", (*durationValue)(&cc.CallTimeout)},
		{"retry-min", "smallest back-off between retries of a participant call", (*durationValue)(&cc.RetryMin)},
		{"retry-max", "largest back-off between retries of a participant call", (*durationValue)(&cc.RetryMax)},
		{"max-parallel", "participant calls in flight for one transaction", (*intValue)(&cc.MaxParallel)},
		{"confirm-wait", "how long confirm and cancel requests wait for the outcome", (*durationValue)(&cc.ConfirmWait)},
		{"default-timeout", "timeout of a registered transaction that names none", (*durationValue)(&cc.DefaultTimeout)},
		{"max-timeout", "largest timeout a registered transaction may ask for", (*durationValue)(&cc.MaxTimeout)},
		{"margin-floor", "smallest expiry safety margin before confirming", (*durationValue)(&cc.MarginFloor)},
		{"margin-rtts", "expiry safety margin as a multiple of the round trip to the participant", (*floatValue)(&cc.MarginRTTs)},
		{"max-links", "most participants in one transaction", (*intValue)(&cc.MaxLinks)},
		{"barrier-wait", "how long a barrier round waits for every participant's report before it aborts", (*durationValue)(&cc.BarrierWait)},
		{"in-doubt-window", "how long past its link's expiry a participant in doubt (a confirm may have landed, no definite answer) is still asked; then the transaction ends heuristic", (*durationValue)(&cc.InDoubtWindow)},
		{"retention", "how long finished transactions stay queryable", (*durationValue)(&cc.Retention)},
		{"purge-interval", "how often finished transactions past retention are purged", (*durationValue)(&cc.PurgeInterval)},
		{"shutdown-grace", "how long shutdown lets in-flight participant calls finish", (*durationValue)(&cc.ShutdownGrace)},
		{"recovery-drives", "recovered transactions driven at once after a restart", (*intValue)(&cc.RecoveryDrives)},
		{"max-body", "largest request body, bytes", (*int64Value)(&sc.MaxBody)},
		{"max-header-bytes", "largest request header block, bytes", (*intValue)(&sc.MaxHeaderBytes)},
		{"read-header-timeout", "time a client has to send request headers", (*durationValue)(&sc.ReadHeaderTimeout)},
		{"read-timeout", "time a client has to send a whole request", (*durationValue)(&sc.ReadTimeout)},
		{"write-timeout", "time to write a response (must exceed confirm-wait)", (*durationValue)(&sc.WriteTimeout)},
		{"idle-timeout", "how long an idle keep-alive connection is kept", (*durationValue)(&sc.IdleTimeout)},
	}
}

// envName returns the environment variable of an option.
func envName(opt string) string {
	return "TCCD_" + strings.ToUpper(strings.ReplaceAll(opt, "-", "_"))
}

// Load fills c from a config file (if path is not empty), then from the
// environment. Flags are applied after, by the caller's FlagSet.
func (c *Config) Load(path string, getenv func(string) string) error {
	opts := c.options()
	byName := make(map[string]option, len(opts))
	for _, o := range opts {
		byName[o.name] = o
	}
	var errs []error
	if path != "" {
		raw := map[string]any{}
		if _, err := toml.DecodeFile(path, &raw); err != nil {
			return fmt.Errorf("config file %s: %w", path, err)
		}
		keys := make([]string, 0, len(raw))
		for k := range raw {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := setFromFile(byName, k, raw[k]); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: %w", path, err))
			}
		}
	}
	for _, o := range opts {
		if v := getenv(envName(o.name)); v != "" {
			if err := o.value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s: %w", envName(o.name), err))
			}
		}
	}
	return errors.Join(errs...)
}

// setFromFile sets option k from its value in the config file.
func setFromFile(byName map[string]option, k string, v any) error {
	o, ok := byName[k]
	if !ok {
		return fmt.Errorf("unknown key %q", k)
	}
	// Every option but the lists is one scalar: fmt.Sprint would turn a
	// list or table into a plausible string (data = ["/a"] → "[/a]").
	if l, ok := o.value.(*listValue); ok {
		if err := l.setTOML(v); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		return nil
	}
	switch v.(type) {
	case []any, []map[string]any:
		return fmt.Errorf("%s: must be a single value, not a list", k)
	case map[string]any:
		return fmt.Errorf("%s: must be a single value, not a table", k)
	}
	if err := o.value.Set(fmt.Sprint(v)); err != nil {
		return fmt.Errorf("%s: %w", k, err)
	}
	return nil
}

// register binds every option to a flag of fs. A list option may be
// repeated: its first occurrence replaces the value from the file or the
// environment, the next ones add to it.
func (c *Config) register(fs *flag.FlagSet) {
	for _, o := range c.options() {
		v := o.value
		if l, ok := v.(*listValue); ok {
			v = &repeatedList{list: l}
		}
		fs.Var(v, o.name, fmt.Sprintf("%s (env %s)", o.usage, envName(o.name)))
	}
}

// Validate reports every setting that makes no sense.
func (c Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("listen must not be empty"))
	}
	if c.Data == "" && c.Store == "" {
		errs = append(errs, errors.New("data must not be empty"))
	}
	if err := validateStore(c.Store); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.NATS.natsConfig(nil); err != nil {
		errs = append(errs, err)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level must be debug, info, warn or error, not %q", c.LogLevel))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log-format must be text or json, not %q", c.LogFormat))
	}
	if c.WALSyncInterval < 0 || c.WALSyncInterval > 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("wal-sync-interval must be from 0 to 10ms, got %v", c.WALSyncInterval))
	}
	if c.MinFreeSpace < 0 {
		errs = append(errs, fmt.Errorf("min-free-space must not be negative, got %d", c.MinFreeSpace))
	}
	if c.CacheSize < 1<<20 {
		errs = append(errs, fmt.Errorf("cache-size must be at least 1 MiB, got %d", c.CacheSize))
	}
	if err := c.Coordinator.Validate(); err != nil {
		errs = append(errs, err)
	}
	s := c.Server
	if s.MaxBody < 1024 {
		errs = append(errs, fmt.Errorf("max-body must be at least 1024 bytes, got %d", s.MaxBody))
	}
	if s.MaxHeaderBytes < 4096 {
		errs = append(errs, fmt.Errorf("max-header-bytes must be at least 4096, got %d", s.MaxHeaderBytes))
	}
	for name, d := range map[string]time.Duration{
		"read-header-timeout": s.ReadHeaderTimeout, "read-timeout": s.ReadTimeout,
		"write-timeout": s.WriteTimeout, "idle-timeout": s.IdleTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", name, d))
		}
	}
	if s.WriteTimeout <= c.Coordinator.ConfirmWait {
		errs = append(errs, fmt.Errorf("write-timeout (%v) must exceed confirm-wait (%v), or waiting requests are cut off", s.WriteTimeout, c.Coordinator.ConfirmWait))
	}
	if s.RateLimit < 0 || s.RateLimit > 1e6 {
		errs = append(errs, fmt.Errorf("rate-limit must be from 0 to 1000000 requests a second, got %v", s.RateLimit))
	}
	if c.LeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("lease-ttl must be at least 1s, got %v", c.LeaseTTL))
	}
	if c.EventRing < 1 || c.EventRing > 10_000_000 {
		errs = append(errs, fmt.Errorf("event-ring must be from 1 to 10000000 events, got %d", c.EventRing))
	}
	if s.MaxStreams < 1 {
		errs = append(errs, fmt.Errorf("max-streams must be at least 1, got %d", s.MaxStreams))
	}
	if s.RateBurst < 0 {
		errs = append(errs, fmt.Errorf("rate-burst must not be negative, got %d", s.RateBurst))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls-cert and tls-key must be set together"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("tls-client-ca must be used with tls-cert and tls-key (mutual TLS needs TLS)"))
	}
	if (c.ParticipantCert == "") != (c.ParticipantKey == "") {
		errs = append(errs, errors.New("participant-cert and participant-key must be set together"))
	}
	if _, err := tccd.ParseAllowlist(c.ParticipantAllow); err != nil {
		errs = append(errs, fmt.Errorf("participant-allow must be a list of valid rules: %w", err))
	}
	return errors.Join(errs...)
}

type stringValue string

func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }

// boolValue is an on/off option: a flag that may stand alone (--ui) or
// take a value (--ui=false), true or false in the environment and the
// config file.
type boolValue bool

func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }
func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	*v = boolValue(b)
	return nil
}

type intValue int

func (v *intValue) String() string { return strconv.Itoa(int(*v)) }
func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%q is not an integer", s)
	}
	*v = intValue(n)
	return nil
}

type int64Value int64

func (v *int64Value) String() string { return strconv.FormatInt(int64(*v), 10) }
func (v *int64Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not an integer", s)
	}
	*v = int64Value(n)
	return nil
}

type floatValue float64

func (v *floatValue) String() string { return strconv.FormatFloat(float64(*v), 'g', -1, 64) }
func (v *floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", s)
	}
	*v = floatValue(f)
	return nil
}

// listValue is a list option: comma-separated in a flag or the
// environment, a list (or a comma-separated string) in the config file.
type listValue []string

func (v *listValue) String() string { return strings.Join(*v, ",") }

// Set replaces the list with the comma-separated elements of s.
func (v *listValue) Set(s string) error {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	*v = out
	return nil
}

func (v *listValue) setTOML(raw any) error {
	switch x := raw.(type) {
	case string:
		return v.Set(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("must be a list of strings")
			}
			parts[i] = s
		}
		return v.Set(strings.Join(parts, ","))
	}
	return fmt.Errorf("must be a list of strings")
}

// repeatedList is the flag form of a list option (see register).
type repeatedList struct {
	list *listValue
	seen bool
}

func (r *repeatedList) String() string {
	if r.list == nil {
		return ""
	}
	return r.list.String()
}

func (r *repeatedList) Set(s string) error {
	if !r.seen {
		r.seen = true
		return r.list.Set(s)
	}
	var more listValue
	_ = more.Set(s)
	*r.list = append(*r.list, more...)
	return nil
}

// byteSizeValue is a size in bytes, written as a number of bytes or with
// a binary unit: 512KiB, 64MiB, 1GiB.
type byteSizeValue int64

func (v *byteSizeValue) String() string { return formatBytes(int64(*v)) }
func (v *byteSizeValue) Set(s string) error {
	num, unit := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, unit = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 || n > (1<<62)/unit {
		return fmt.Errorf("%q is not a size (say 1048576, 512KiB, 64MiB or 1GiB)", s)
	}
	*v = byteSizeValue(n * unit)
	return nil
}

func formatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

type durationValue time.Duration

func (v *durationValue) String() string { return time.Duration(*v).String() }
func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (say \"500ms\", \"30s\" or \"2h\")", s)
	}
	*v = durationValue(d)
	return nil
}

// checkEnvironment reports, for --check-config, what would stop a start
// with this configuration: a listen address that cannot be bound, a data
// directory that cannot be written, a PostgreSQL store that cannot be
// reached or whose schema is newer than this tccd. It changes nothing.
func (c Config) checkEnvironment() error {
	var errs []error
	for _, l := range []struct{ name, addr string }{{"listen", c.Listen}, {"metrics-listen", c.MetricsListen}} {
		if l.addr == "" {
			continue
		}
		if ln, err := net.Listen("tcp", l.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s address %s cannot be used: %w", l.name, l.addr, err))
		} else {
			ln.Close()
		}
	}
	if c.Store != "" {
		if err := validateStore(c.Store); err == nil {
			errs = append(errs, checkStore(c.Store))
		}
	} else if c.Data != "" {
		if err := checkWritableDir(c.Data); err != nil {
			errs = append(errs, fmt.Errorf("data directory %s: %w", c.Data, err))
		}
	}
	return errors.Join(errs...)
}

// checkWritableDir reports whether dir, or the nearest existing directory
// above it (where it would be created), can be written.
func checkWritableDir(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			f, err := os.CreateTemp(d, ".tccd-check-*")
			if err != nil {
				if d == dir {
					return fmt.Errorf("cannot be written: %w", err)
				}
				return fmt.Errorf("cannot be created in %s: %w", d, err)
			}
			f.Close()
			os.Remove(f.Name())
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(d) == d {
			return err
		}
	}
}
