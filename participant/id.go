package participant

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"strings"
)

// MaxIDLen is the longest reservation id the kit accepts (the column is
// VARCHAR(128)).
const MaxIDLen = 128

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a random reservation id: 128 bits from crypto/rand as 26
// lowercase base32 characters. It is what the kit uses when
// Config.ReservationID is nil.
func NewID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("participant: reservation id: %w", err)
	}
	return idEncoding.EncodeToString(b[:]), nil
}

// DeriveID returns a reservation id determined by parts, for example the
// inbound transaction id (the Tcc-Transaction-Id header) and the resource
// reserved: the same parts always give the same id, different parts (in
// number, order or content) give different ids. A Config.ReservationID built
// on it makes a retried try land on the same reservation, lets an initiator
// cancel a try whose answer it never got, and lets the kit refuse a try that
// arrives after its cancel.
func DeriveID(parts ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return idEncoding.EncodeToString(h.Sum(nil)[:16])
}

// checkID accepts 1 to MaxIDLen characters from RFC 3986's unreserved set
// (letters, digits, '-', '.', '_', '~'), so that an id is one path segment
// as it is, and compares the same in every database.
func checkID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("reservation id must have 1 to %d characters", MaxIDLen)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("reservation id %q is a path step", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return fmt.Errorf("reservation id has a character outside A-Z a-z 0-9 - . _ ~")
		}
	}
	return nil
}

// checkIdent accepts an SQL identifier the kit may splice into a query: a
// name of letters, digits and underscores not starting with a digit, at most
// 63 characters, optionally qualified once ("schema.table"). Nothing is
// quoted, so names are case-folded as the database folds unquoted names.
func checkIdent(name string) error {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return fmt.Errorf("identifier %q has more than one dot", name)
	}
	for _, p := range parts {
		if p == "" || len(p) > 63 {
			return fmt.Errorf("identifier %q: each part must have 1 to 63 characters", name)
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			ok := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9'
			if !ok {
				return fmt.Errorf("identifier %q: only letters, digits and '_' are allowed, not starting with a digit", name)
			}
		}
	}
	return nil
}

// checkIdents checks named identifiers, reporting the first bad one by its
// field name.
func checkIdents(fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if err := checkIdent(fields[i+1]); err != nil {
			return fmt.Errorf("%s: %w", fields[i], err)
		}
	}
	return nil
}
