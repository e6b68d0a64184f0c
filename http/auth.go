package http

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/tccd/tccd"
)

// Tokens is the set of bearer tokens the server accepts, each naming a
// principal with a role. It holds only the SHA-256 of each token, so a
// leaked tokens file does not leak the tokens.
//
// The tokens file has one token a line, three fields separated by white
// space: the principal's name, its role (client or admin) and the
// SHA-256 of the token in hex. Empty lines and lines starting with # are
// ignored. `tccd token --name NAME --role ROLE` makes a token and its line:
//
//	# name    role    sha256(token)
//	billing   client  5d4b7c0f2e…
//	ops       admin   a3f9e61b08…
//
// Tokens must be random (tccd token draws 256 bits): an unsalted hash
// protects a random token, not a password.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	hash      [sha256.Size]byte
	principal tccd.Principal
}

var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// ParseTokens reads a tokens file. Its errors name the line and the
// field, never the hash.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want 3 fields (name role sha256), found %d", n, len(f))
		}
		if !tokenName.MatchString(f[0]) {
			return nil, fmt.Errorf("line %d: the name must be 1 to 64 letters, digits or ._@- (starting with a letter or digit)", n)
		}
		if names[f[0]] {
			return nil, fmt.Errorf("line %d: name %s appears twice", n, f[0])
		}
		role, err := tccd.ParseRole(f[1])
		if err != nil {
			// Not the parse error: it would echo the field, which may be
			// a hash written in the wrong column.
			return nil, fmt.Errorf("line %d: the second field, the role, must be %s or %s", n, tccd.RoleClient, tccd.RoleAdmin)
		}
		var e tokenEntry
		if len(f[2]) != 2*sha256.Size {
			return nil, fmt.Errorf("line %d: the third field must be a SHA-256 in hex (64 digits)", n)
		}
		if _, err := hex.Decode(e.hash[:], []byte(f[2])); err != nil {
			return nil, fmt.Errorf("line %d: the third field must be a SHA-256 in hex (64 digits)", n)
		}
		if hashes[e.hash] {
			return nil, fmt.Errorf("line %d: the same token hash appears twice", n)
		}
		names[f[0]], hashes[e.hash] = true, true
		e.principal = tccd.Principal{Name: f[0], Role: role}
		t.entries = append(t.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("no tokens (an empty tokens file would lock everyone out)")
	}
	return t, nil
}

// LoadTokens reads the tokens file at path.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Count returns how many tokens have the given role.
func (t *Tokens) Count(role tccd.Role) int {
	n := 0
	for _, e := range t.entries {
		if e.principal.Role == role {
			n++
		}
	}
	return n
}

// Authenticate returns the principal of a token. It compares the token's
// hash with every entry in constant time, and looks at all of them
// whichever matches.
func (t *Tokens) Authenticate(token string) (tccd.Principal, bool) {
	h := sha256.Sum256([]byte(token))
	var found tccd.Principal
	ok := 0
	for i := range t.entries {
		if subtle.ConstantTimeCompare(h[:], t.entries[i].hash[:]) == 1 {
			found, ok = t.entries[i].principal, 1
		}
	}
	return found, ok == 1
}

// TokenPrefix starts every token `tccd token` makes, so that secret
// scanners and people can tell what it is.
const TokenPrefix = "tccd_"

// NewToken returns a new random token: TokenPrefix and 256 random bits in
// URL-safe base64.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashToken returns the SHA-256 of a token in hex, as the tokens file holds it.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// bearer extracts the token of an Authorization: Bearer header. found
// tells whether the request tried to authenticate at all.
func bearer(r *http.Request) (token string, found bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", false
	}
	if len(vals) > 1 {
		return "", true
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	tok = strings.TrimSpace(tok)
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", true
	}
	return tok, true
}
