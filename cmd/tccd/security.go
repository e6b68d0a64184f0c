package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tccd/tccd"
	tccdhttp "github.com/tccd/tccd/http"
)

// security is what the security options load from their files.
type security struct {
	tokens         *tccdhttp.Tokens // nil: authentication off
	serverTLS      *tls.Config      // nil: plain HTTP
	participantTLS *tls.Config      // nil: Go's defaults
	allow          *tccd.Allowlist
	webhookSecret  []byte // nil: no notifications
}

// minWebhookSecret is the shortest webhook secret accepted, in bytes.
const minWebhookSecret = 16

// loadSecurity reads the tokens file, certificates and keys, and parses
// the allowlist. Its errors name the option and the file, never a token
// hash or a key.
func (c Config) loadSecurity() (*security, error) {
	sec := &security{}
	var errs []error
	var err error
	if c.AuthTokensFile != "" {
		if sec.tokens, err = tccdhttp.LoadTokens(c.AuthTokensFile); err != nil {
			errs = append(errs, fmt.Errorf("auth-tokens-file must name a valid tokens file: %w", err))
		}
	}
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("tls-cert and tls-key must be a PEM certificate and its key: %w", err))
		}
		sec.serverTLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		if c.TLSClientCA != "" {
			pool, err := loadPool(c.TLSClientCA)
			if err != nil {
				errs = append(errs, fmt.Errorf("tls-client-ca must be a PEM file of CA certificates: %w", err))
			}
			sec.serverTLS.ClientCAs = pool
			sec.serverTLS.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	if c.ParticipantCA != "" || c.ParticipantCert != "" {
		sec.participantTLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if c.ParticipantCA != "" {
			if sec.participantTLS.RootCAs, err = loadPool(c.ParticipantCA); err != nil {
				errs = append(errs, fmt.Errorf("participant-ca must be a PEM file of CA certificates: %w", err))
			}
		}
		if c.ParticipantCert != "" {
			cert, err := tls.LoadX509KeyPair(c.ParticipantCert, c.ParticipantKey)
			if err != nil {
				errs = append(errs, fmt.Errorf("participant-cert and participant-key must be a PEM certificate and its key: %w", err))
			}
			sec.participantTLS.Certificates = []tls.Certificate{cert}
		}
	}
	if sec.allow, err = tccd.ParseAllowlist(c.ParticipantAllow); err != nil {
		errs = append(errs, fmt.Errorf("participant-allow must be a list of valid rules: %w", err))
	}
	if c.WebhookSecretFile != "" {
		b, err := os.ReadFile(c.WebhookSecretFile)
		secret := strings.TrimSpace(string(b))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("webhook-secret-file must name a readable file: %w", err))
		case len(secret) < minWebhookSecret:
			errs = append(errs, fmt.Errorf("webhook-secret-file %s must hold a secret of at least %d bytes (make one with: head -c 32 /dev/urandom | base64)", c.WebhookSecretFile, minWebhookSecret))
		default:
			sec.webhookSecret = []byte(secret)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return sec, nil
}

// loadPool reads PEM CA certificates.
func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// summary describes the security settings for --check-config and the
// start-up log: what is on, never a secret.
func (s *security) summary() []any {
	auth := "off"
	if s.tokens != nil {
		auth = fmt.Sprintf("on (%d admin, %d client tokens)", s.tokens.Count(tccd.RoleAdmin), s.tokens.Count(tccd.RoleClient))
	}
	tlsMode := "off"
	if s.serverTLS != nil {
		tlsMode = "on"
		if s.serverTLS.ClientCAs != nil {
			tlsMode = "mutual"
		}
	}
	allow := "built-in refusals only"
	if n := len(s.allow.Rules()); n > 0 {
		allow = fmt.Sprintf("%d rules", n)
	}
	webhooks := "off"
	if s.webhookSecret != nil {
		webhooks = "on (signed)"
	}
	return []any{"auth", auth, "tls", tlsMode, "participant_allow", allow, "webhooks", webhooks}
}

const tokenUsage = `Usage: tccd token [--name NAME] [--role client|admin]

Makes a random bearer token and prints it with its line for the tokens
file (--auth-tokens-file). Give the token to the client; add the line to
the file. tccd keeps only the SHA-256 of the token.
`

// runToken is `tccd token`.
func runToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tccd token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), tokenUsage); fs.PrintDefaults() }
	name := fs.String("name", "", "the name of the client the token is for (recorded as created_by)")
	role := fs.String("role", string(tccd.RoleClient), "client or admin")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if _, err := tccd.ParseRole(*role); err != nil {
		return fmt.Errorf("%w: --role must be client or admin", errUsage)
	}
	if *name == "" {
		return fmt.Errorf("%w: --name is required (it names the client in the tokens file and on its transactions)", errUsage)
	}
	tok, err := tccdhttp.NewToken()
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%s %s %s", *name, *role, tccdhttp.HashToken(tok))
	// The line must parse as the server will parse it (a bad name, say).
	if _, err := tccdhttp.ParseTokens(strings.NewReader(line)); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	fmt.Fprintf(stdout, "# The token for %s (give it to the client; tccd does not keep it):\n%s\n", *name, tok)
	fmt.Fprintf(stdout, "# Its line for the tokens file (--auth-tokens-file):\n%s\n", line)
	return nil
}
