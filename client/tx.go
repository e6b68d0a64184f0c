package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/tccd/tccd/api"
)

// Tx is a registered transaction: the initiator's handle on it (from
// Begin or (*Client).Tx), or, in a participant that calls further
// participants, the transaction that came in with a request (from
// Middleware). It is safe for concurrent use.
type Tx struct {
	c   *Client
	id  string
	url string // the transaction's URL, sent to participants
	// col, when set, collects links instead of enlisting them: the Tx was
	// propagated to a participant, which does not talk to the coordinator.
	col *collector
}

// ID returns the transaction id.
func (t *Tx) ID() string { return t.id }

// URL returns the transaction's URL at the coordinator, as participants
// are told it.
func (t *Tx) URL() string { return t.url }

// errPropagated refuses confirm and cancel in a participant.
var errPropagated = errors.New("tccd: this transaction was propagated to a participant: only the initiator confirms or cancels it")

// Enlist adds a participant link to the transaction. Enlisting a URI
// already enlisted succeeds and changes nothing, so Enlist may be
// repeated; it is repeated on 503 until ctx ends. It fails with a
// *ConflictError once the transaction is no longer active, with an *Error
// (400) for an expired link.
//
// In a participant (a Tx from Middleware) the link is not sent to the
// coordinator but collected, to be appended to the participant's answer;
// Enlist fails once that answer's header has been written.
func (t *Tx) Enlist(ctx context.Context, link Link) error {
	if t.col != nil {
		return t.col.add(link)
	}
	r := request{
		method: http.MethodPost, path: t.path("/participants"), mediaType: api.MediaJSON,
		body: link.wire(), retry503: true,
	}
	resp, err := t.c.do(ctx, r, http.StatusCreated, http.StatusOK)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

func (t *Tx) path(suffix string) string {
	return "/api/v1/transactions/" + url.PathEscape(t.id) + suffix
}

// Confirm decides to confirm the transaction and waits for the outcome.
// It returns the confirmed transaction; an error matching ErrTimedOut when
// the coordinator cancelled it instead (the error's Transaction says why);
// a *HeuristicError with every participant's outcome; a *ConflictError
// when it had been cancelled; ErrNotFound for an unknown id. While the
// coordinator is still confirming (202) the transaction is polled,
// honouring Retry-After; if ctx ends first, Confirm returns the
// transaction as last seen and an error matching both ErrInProgress and
// ctx.Err(): the decision stands and the coordinator finishes it.
// Confirm may be repeated.
func (t *Tx) Confirm(ctx context.Context) (*api.Transaction, error) {
	return t.settle(ctx, "/confirm", stateConfirmed)
}

// Cancel decides to cancel the transaction and waits for the participants,
// as Confirm does. Cancelling a cancelled transaction returns it; a
// confirming, confirmed or heuristic one is a *ConflictError.
func (t *Tx) Cancel(ctx context.Context) (*api.Transaction, error) {
	return t.settle(ctx, "/cancel", stateCancelled)
}

// ConfirmAsync decides to confirm the transaction and returns as soon as
// the decision is durable (Prefer: respond-async), with the transaction as
// it stands — usually still confirming. Follow it with Wait. Errors as for
// Confirm, for what is known at once.
func (t *Tx) ConfirmAsync(ctx context.Context) (*api.Transaction, error) {
	return t.decideAsync(ctx, "/confirm", stateConfirmed)
}

// CancelAsync is ConfirmAsync for a cancel.
func (t *Tx) CancelAsync(ctx context.Context) (*api.Transaction, error) {
	return t.decideAsync(ctx, "/cancel", stateCancelled)
}

func (t *Tx) decideAsync(ctx context.Context, op, want string) (*api.Transaction, error) {
	if t.col != nil {
		return nil, errPropagated
	}
	r := request{method: http.MethodPut, path: t.path(op), retry503: true,
		header: http.Header{api.HeaderPrefer: {api.PreferRespondAsync}}}
	var tx api.Transaction
	if err := t.c.doJSON(ctx, r, &tx, http.StatusOK, http.StatusAccepted); err != nil {
		return nil, err
	}
	if finalState(tx.State) && tx.State != want {
		return nil, outcomeError(&tx, want)
	}
	return &tx, nil
}

func (t *Tx) settle(ctx context.Context, op, want string) (*api.Transaction, error) {
	if t.col != nil {
		return nil, errPropagated
	}
	r := request{method: http.MethodPut, path: t.path(op), retry503: true}
	resp, err := t.c.do(ctx, r, http.StatusOK, http.StatusAccepted)
	if err != nil {
		return nil, err
	}
	wait := retryAfter(resp.Header.Get("Retry-After"), time.Now(), t.c.poll)
	accepted := resp.StatusCode == http.StatusAccepted
	var tx api.Transaction
	err = json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(&tx)
	drain(resp)
	if err != nil {
		return nil, fmt.Errorf("tccd: cannot decode the coordinator's answer to %s: %w", op, err)
	}
	if !accepted {
		return &tx, nil
	}
	return t.poll(ctx, &tx, want, wait)
}

// poll asks for the transaction until it reaches a final state.
func (t *Tx) poll(ctx context.Context, last *api.Transaction, want string, wait time.Duration) (*api.Transaction, error) {
	for !finalState(last.State) {
		if err := sleep(ctx, wait); err != nil {
			return last, fmt.Errorf("%w (transaction %s is %s): %w", ErrInProgress, t.id, last.State, err)
		}
		wait = t.c.poll
		cur, err := t.c.Get(ctx, t.id)
		if err != nil {
			return last, fmt.Errorf("%w (transaction %s is %s): %w", ErrInProgress, t.id, last.State, err)
		}
		last = cur
	}
	if last.State != want {
		return nil, outcomeError(last, want)
	}
	return last, nil
}

// collector holds the links a participant collected for its answer.
type collector struct {
	mu     sync.Mutex
	links  []Link
	seen   map[string]bool
	sealed bool
}

// errSealed is returned for a link collected after the answer's header
// was written: it can no longer reach the initiator.
var errSealed = errors.New("tccd: the answer's header is already written: the participant link cannot be passed on to the initiator")

func (c *collector) add(l Link) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sealed {
		return errSealed
	}
	if c.seen == nil {
		c.seen = make(map[string]bool)
	}
	if !c.seen[l.URI] {
		c.seen[l.URI] = true
		c.links = append(c.links, l)
	}
	return nil
}

// seal ends collection and returns the links collected.
func (c *collector) seal() ([]Link, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sealed {
		return nil, false
	}
	c.sealed = true
	return c.links, true
}

// txKey is the context key of a *Tx.
type txKey struct{}

// NewContext returns a copy of ctx that carries tx. Requests made with it
// through the client's Transport propagate tx and enlist the reservations
// in their answers.
func NewContext(ctx context.Context, tx *Tx) context.Context {
	return context.WithValue(ctx, txKey{}, tx)
}

// FromContext returns the *Tx that ctx carries, if any.
func FromContext(ctx context.Context) (*Tx, bool) {
	tx, _ := ctx.Value(txKey{}).(*Tx)
	return tx, tx != nil
}
