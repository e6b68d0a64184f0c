package tccd

import (
	"context"
	"fmt"
)

// Role says what a principal may do. The API layer decides which role an
// operation needs; the coordinator decides which transactions a principal
// may see (see Principal).
type Role string

// Roles.
const (
	// RoleClient may begin, enlist, confirm, cancel and read its own
	// transactions, and use the Atomikos endpoints.
	RoleClient Role = "client"
	// RoleAdmin may do everything a client may, on every transaction, and
	// list all transactions, resolve heuristic ones and purge.
	RoleAdmin Role = "admin"
)

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleClient, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (want %s or %s)", s, RoleClient, RoleAdmin)
}

// Principal is who a request acts for: an authenticated caller. Its Name
// is recorded as a transaction's CreatedBy.
type Principal struct {
	Name string
	Role Role
}

type principalKey struct{}

// WithPrincipal returns a context carrying p. The coordinator reads it to
// record who created a transaction and to keep clients to their own.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal of ctx, if any. A context without
// one acts with no restriction: that is how the coordinator runs when
// authentication is off.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// principalName is the name of the principal of ctx ("" without one): it
// is recorded as CreatedBy and ResolvedBy.
func principalName(ctx context.Context) string {
	p, _ := PrincipalFrom(ctx)
	return p.Name
}

// mayAccess reports whether the principal of ctx may see and act on tx: an
// admin may, a client only on the transactions it created, and a context
// without a principal (authentication off) may.
func mayAccess(ctx context.Context, tx *Transaction) bool {
	p, ok := PrincipalFrom(ctx)
	return !ok || p.Role == RoleAdmin || tx.CreatedBy == p.Name
}

// notFound is the error for a transaction that does not exist, and also
// for one the caller may not see: the two answers are the same, so that
// ids cannot be probed.
func notFound(id string) *Error {
	return Errorf(ENotFound, "transaction %s not found", id)
}
