package nats

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultReconnectWait  = time.Second
	DefaultAckTimeout     = 5 * time.Second
	DefaultName           = "tccd"
)

// Config says how to reach the NATS server. URL is required; the rest has
// defaults. At most one of the credential kinds (User and Password, Token,
// CredsFile, NKeySeedFile) may be set. Secrets are never logged, and
// Config has no String method that could print them.
type Config struct {
	// URL is the server, nats://host:4222 or tls://host:4222; a
	// comma-separated list names several servers of one cluster, tried in
	// turn on connect and reconnect.
	URL string

	// User and Password authenticate with a user name and password.
	User, Password string
	// Token authenticates with a token.
	Token string
	// CredsFile is a .creds file (a user JWT and its NKey seed), the
	// decentralised authentication of NATS accounts.
	CredsFile string
	// NKeySeedFile is a file holding a user's NKey seed (SU…).
	NKeySeedFile string

	// CAFile, when set, is the PEM bundle of the authorities that sign the
	// server's certificate, and turns TLS on. CertFile and KeyFile, set
	// together, are the client's certificate and key for servers that
	// verify clients. A tls:// URL turns TLS on with the system's roots.
	CAFile, CertFile, KeyFile string

	// ConnectTimeout bounds each attempt to connect to a server (TCP, TLS
	// and the NATS handshake); default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// ReconnectWait is the pause between two attempts to reconnect to the
	// same server after the connection is lost; default
	// DefaultReconnectWait. The client reconnects for ever, until Close.
	ReconnectWait time.Duration
	// AckTimeout bounds a Publish or CheckSubject whose context has no
	// deadline; default DefaultAckTimeout.
	AckTimeout time.Duration

	// Name is the client's name in the server's connection list; default
	// DefaultName.
	Name string
	// Logger receives the connection's events (lost, reconnected, server
	// errors). Default slog.Default().
	Logger *slog.Logger
}

// Validate checks the configuration without connecting: the URL's form,
// the credentials (at most one kind, files readable), the TLS files and
// the durations.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if strings.TrimSpace(c.URL) == "" {
		bad("URL is required (e.g. nats://127.0.0.1:4222)")
	}
	for _, u := range strings.Split(c.URL, ",") {
		u = strings.TrimSpace(u)
		if u != "" && strings.Contains(u, "://") && !hasScheme(u, "nats", "tls", "ws", "wss") {
			bad("URL %q: the scheme must be nats, tls, ws or wss", redactURL(u))
		}
	}
	kinds := 0
	if c.User != "" || c.Password != "" {
		kinds++
		if c.User == "" {
			bad("Password without User")
		}
	}
	for _, s := range []string{c.Token, c.CredsFile, c.NKeySeedFile} {
		if s != "" {
			kinds++
		}
	}
	if kinds > 1 {
		bad("set at most one of User/Password, Token, CredsFile and NKeySeedFile")
	}
	for name, f := range map[string]string{"CredsFile": c.CredsFile, "NKeySeedFile": c.NKeySeedFile, "CAFile": c.CAFile, "CertFile": c.CertFile, "KeyFile": c.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			bad("%s: %w", name, err)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		bad("CertFile and KeyFile go together")
	}
	if c.ConnectTimeout < 0 || c.ReconnectWait < 0 || c.AckTimeout < 0 {
		bad("ConnectTimeout, ReconnectWait and AckTimeout must not be negative")
	}
	if len(errs) > 0 {
		return fmt.Errorf("nats: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

func hasScheme(u string, schemes ...string) bool {
	for _, s := range schemes {
		if strings.HasPrefix(strings.ToLower(u), s+"://") {
			return true
		}
	}
	return false
}

// redactURL hides the user information of a server URL
// (nats://user:secret@host → nats://***@host), for messages.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		return scheme + "://***@" + rest[at+1:]
	}
	return u
}

func (c *Config) setDefaults() {
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}
