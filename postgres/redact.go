package postgres

import (
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// redacted stands for a password in what is logged or returned.
const redacted = "xxxxx"

// IsDSN reports whether s names a PostgreSQL database as a URL, the form
// tccd's store option takes.
func IsDSN(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// ParseDSN reports whether dsn is a DSN the driver can use, without
// connecting; the error does not quote the password.
func ParseDSN(dsn string) error {
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return redactError(dsn, err)
	}
	return nil
}

// Redact returns dsn with its password (in a URL's user part or password
// parameter, or the password= of the keyword/value form) replaced by
// xxxxx, for logs and error messages.
func Redact(dsn string) string {
	out := dsn
	for _, s := range secrets(dsn) {
		out = strings.ReplaceAll(out, s, redacted)
	}
	return out
}

// secrets returns the forms in which dsn's password may appear: as
// written (percent-encoded or not) and decoded.
func secrets(dsn string) []string {
	var out []string
	add := func(s string) {
		if s != "" && s != redacted {
			out = append(out, s)
		}
	}
	// The user part, read by hand: url.Parse refuses some DSNs that the
	// driver accepts, and those must be redacted too.
	if _, rest, ok := strings.Cut(dsn, "://"); ok {
		if end := strings.IndexAny(rest, "/?#"); end >= 0 {
			rest = rest[:end]
		}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
				add(pw)
				if dec, err := url.PathUnescape(pw); err == nil {
					add(dec)
				}
			}
		}
	}
	if !strings.Contains(dsn, "://") {
		// The keyword/value form: password=secret or password='a secret'.
		for _, m := range keywordPassword.FindAllStringSubmatch(dsn, -1) {
			add(m[1])
		}
		return sortLongestFirst(out)
	}
	if _, query, ok := strings.Cut(dsn, "?"); ok {
		for _, kv := range strings.Split(query, "&") {
			if k, v, ok := strings.Cut(kv, "="); ok && k == "password" {
				add(v)
				if dec, err := url.QueryUnescape(v); err == nil {
					add(dec)
				}
			}
		}
	}
	return sortLongestFirst(out)
}

var keywordPassword = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']\S*)`)

// sortLongestFirst sorts secrets longest first: a shorter form may be
// part of a longer one, which must be replaced whole.
func sortLongestFirst(out []string) []string {
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// redactError returns err with dsn's password replaced in its message:
// the driver's errors may quote the DSN, and they end up in logs.
func redactError(dsn string, err error) error {
	if err == nil {
		return nil
	}
	s := secrets(dsn)
	if len(s) == 0 {
		return err
	}
	return &redactedError{err: err, secrets: s}
}

type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		msg = strings.ReplaceAll(msg, s, redacted)
	}
	return msg
}

func (e *redactedError) Unwrap() error { return e.err }
