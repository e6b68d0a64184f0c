package participant

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tccd/tccd/api"
)

// Compensate-style reservations, the kit's half. The try does the work
// (a payment captured, a mail queued) and Cancel undoes it. The
// coordinator sends nothing to such a participant on confirm — the
// decision to confirm records it confirmed — and its DELETE means "undo".
// So the reservation's expiry cannot mean "cancel yourself", as it does
// for a TCC reservation, whose confirm would have reached it: it means
// "undo yourself if no confirm decision reached you". The kit learns
// whether one did by asking the coordinator, at the expiry:
//
//	POST <Coordinator>/api/v1/transactions/<tx_id>/participants/outcome {"uri": <the link URI>}
//
// with the transaction id the try carried (Tcc-Transaction-Id, stored as
// tx_id) and the link URI the try answered (stored as uri). The answer is
// the transaction's state and the participant's; judge says what the
// kit does with it.
//
// The race at the expiry. The coordinator decides to confirm only while
// every pending link is at least its margin (margin-floor, 200ms by
// default, or 3 round trips) away from its expiry, and enlists a link
// only before its expiry; its decision is written before anyone hears of
// it. So, with the two clocks within the margin of each other, a question
// asked at or after the expiry sees every confirm decision that will ever
// include this link — the same assumption a TCC participant makes when it
// cancels itself at its expiry. What the kit does not see yet is a
// decision being written at that very moment; it never acts on "active",
// so that matters only for 404: a confirm that adds the link in its own
// request (links given with the confirm) and whose write takes longer
// than the margin. Config.CompensateGrace covers that and a larger clock
// difference: a 404 is taken for "never confirmed" only once the expiry
// is that far in the past; before, the kit asks again then.

// Style says how a collection's reservations take part in a transaction
// (Config.Style).
type Style string

// Styles.
const (
	// StyleTCC (or ""): the try reserves, confirm makes it final, cancel
	// and the expiry release it.
	StyleTCC Style = "tcc"
	// StyleCompensate: the try does the work, Cancel undoes it; nothing is
	// sent on confirm, and at the expiry the kit asks the coordinator
	// whether the transaction was decided to confirm.
	StyleCompensate Style = "compensate"
)

// stored is the style as the bookkeeping table and the link keep it: ""
// for StyleTCC, the coordinator's default.
func (s Style) stored() Style {
	if s == StyleTCC {
		return ""
	}
	return s
}

const (
	// DefaultCompensateGrace is Config.CompensateGrace by default.
	DefaultCompensateGrace = 10 * time.Second
	// askTimeout bounds one question to the coordinator.
	askTimeout = 10 * time.Second
	// askMin and askMax bound the back-off between two questions about a
	// reservation whose transaction is undecided, and between two attempts
	// to reach a coordinator that did not answer.
	askMin = time.Second
	askMax = time.Minute
	// askWarnEvery is how often, at most, the sweeper logs a warning
	// about asking (the coordinator unreachable, refusing, or unknown).
	askWarnEvery = time.Minute
)

// transactionOf is the transaction id a try carries in
// Tcc-Transaction-Id: "" if none or not usable as one (1 to maxTxIDLen
// visible ASCII characters). A compensate-style try without one is
// refused: its reservation could never ask the coordinator about it.
func (p *Participant) transactionOf(r *http.Request) (string, error) {
	id := strings.TrimSpace(r.Header.Get(api.HeaderTransactionID))
	ok := id != "" && len(id) <= maxTxIDLen
	for i := 0; ok && i < len(id); i++ {
		ok = id[i] > ' ' && id[i] < 0x7f
	}
	switch {
	case ok:
		return id, nil
	case p.style != StyleCompensate:
		return "", nil // a TCC reservation keeps it for diagnosis only
	case id == "":
		return "", Rejectf(http.StatusBadRequest, "a compensate-style try must carry the transaction's id (header %s): "+
			"at the reservation's expiry this participant asks the coordinator whether that transaction was decided to confirm, "+
			"and without the id it could not ask (a one-shot Atomikos try has none: use a registered transaction)", api.HeaderTransactionID)
	default:
		return "", Rejectf(http.StatusBadRequest, "header %s must be 1 to %d visible ASCII characters", api.HeaderTransactionID, maxTxIDLen)
	}
}

// verdict is what the kit does with a compensate-style reservation past
// its expiry, given the coordinator's answer.
type verdict int

const (
	// ask again later: no decision the kit may act on yet.
	askAgain verdict = iota
	// keep the work: the transaction confirmed for good.
	keep
	// undo the work: no confirm decision includes it, or the decision
	// is to undo it.
	undo
)

func (v verdict) String() string {
	switch v {
	case keep:
		return "keep"
	case undo:
		return "undo"
	}
	return "ask again"
}

// judge turns the coordinator's answer — the transaction's state and the
// participant's, as tccd names them — into a verdict. It keeps only what
// the coordinator holds confirmed for good, undoes only what it will
// never hold confirmed, and otherwise asks again:
//
//   - participant confirmed: in a final transaction (confirmed, or
//     heuristic — the coordinator sends nothing more, and counts it
//     confirmed) keep; in a transaction turned to cancelling or
//     compensating undo (its DELETE is on the way, and does the same);
//     while confirming ask again: the confirm phase may still end in an
//     undo.
//   - participant cancelled, expired, compensated, failed or
//     cancel_refused: undo — the coordinator does not count it confirmed.
//   - participant pending or in doubt: while the transaction is active or
//     confirming ask again (a confirm may still come: pending is how a
//     TCC-recorded link waits for its PUT); once it is cancelling,
//     compensating or final undo. (A reservation whose PUT is in doubt
//     is still tried here, and past its expiry the kit refuses that PUT
//     with 404: it cannot confirm any more.)
//   - anything else (a state this kit does not know): ask again.
func judge(txState, partState string) verdict {
	switch partState {
	case "confirmed":
		switch txState {
		case "confirmed", "heuristic":
			return keep
		case "cancelling", "compensating", "cancelled", "compensated":
			return undo
		}
	case "cancelled", "expired", "compensated", "failed", "cancel_refused":
		return undo
	case "pending", "in_doubt":
		switch txState {
		case "cancelling", "compensating", "cancelled", "compensated", "heuristic":
			return undo
		}
	}
	return askAgain
}

// askAnswer is the coordinator's answer to a question: found false for
// its 404 (no such transaction, or no such participant in it).
type askAnswer struct {
	found            bool
	state, partState string
}

// askOutcome asks the coordinator how transaction txID and its
// participant uri stand. An error means no usable answer: the
// coordinator could not be reached, answered an error, or does not serve
// the question (a 404 that is not its "no such participant").
func (p *Participant) askOutcome(ctx context.Context, txID, uri string) (askAnswer, error) {
	body, err := json.Marshal(api.OutcomeRequest{URI: uri})
	if err != nil {
		return askAnswer{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	u := p.coordinator + "/api/v1/transactions/" + url.PathEscape(txID) + "/participants/outcome"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return askAnswer{}, fmt.Errorf("ask the coordinator: %w", err)
	}
	req.Header.Set("Content-Type", api.MediaJSON)
	req.Header.Set("Accept", api.MediaJSON)
	if p.coordinatorToken != "" {
		req.Header.Set("Authorization", "Bearer "+p.coordinatorToken)
	}
	resp, err := p.httpClient.Do(req)
	if err != nil {
		return askAnswer{}, fmt.Errorf("ask the coordinator: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return askAnswer{}, fmt.Errorf("ask the coordinator: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var o api.Outcome
		if err := json.Unmarshal(b, &o); err != nil {
			return askAnswer{}, fmt.Errorf("ask the coordinator: its answer: %w", err)
		}
		if o.Transaction != txID || o.State == "" || o.Participant.State == "" {
			return askAnswer{}, fmt.Errorf("ask the coordinator: its answer is not about transaction %s: %s", txID, strings.TrimSpace(string(b)))
		}
		return askAnswer{found: true, state: o.State, partState: o.Participant.State}, nil
	case http.StatusNotFound:
		// Its "no such transaction or participant" names the field uri;
		// a 404 without it is a path the coordinator does not serve, and
		// must not pass for "never confirmed".
		var pr api.Problem
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if mt == api.MediaProblem && json.Unmarshal(b, &pr) == nil && pr.Code == api.CodeNotFound && pr.Field == "uri" {
			return askAnswer{}, nil
		}
		return askAnswer{}, fmt.Errorf("ask the coordinator: it answered 404 without naming the uri: "+
			"it does not serve participant outcomes (is Config.Coordinator a tccd that does?): %s", strings.TrimSpace(string(b)))
	}
	// 401/403: a missing or wrong CoordinatorToken; 429, 5xx: later.
	return askAnswer{}, fmt.Errorf("ask the coordinator: it answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
}

// askBook is the sweeper's memory of its questions: when to ask about
// each waiting reservation again, and how long to leave a coordinator
// that did not answer alone. It is in memory only: after a restart the
// kit asks about every expired reservation at once, which is harmless.
type askBook struct {
	mu   sync.Mutex
	next map[string]askEntry
	// down: after a failed question, nobody is asked before downUntil
	// (downTries failures in a row set the back-off).
	downUntil time.Time
	downTries int
	// warned is when the last warning was logged; skipped counts those
	// not logged since.
	warned  time.Time
	skipped int
}

// askEntry says when a reservation is to be asked about again, and how
// often it was asked while undecided.
type askEntry struct {
	at    time.Time
	tries int
}

// backoff is the wait after n questions in a row without a decision:
// askMin doubling up to askMax.
func backoff(n int) time.Duration {
	if n > 6 {
		return askMax
	}
	return min(askMin<<n, askMax)
}

// due reports whether reservation id may be asked about at now.
func (b *askBook) due(id string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.downUntil) {
		return false
	}
	e, ok := b.next[id]
	return !ok || !now.Before(e.at)
}

// later schedules the next question about id: at at, or — zero at —
// after the back-off of one more question without a decision.
func (b *askBook) later(id string, now, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.next == nil {
		b.next = make(map[string]askEntry)
	}
	e := b.next[id]
	if at.IsZero() {
		at = now.Add(backoff(e.tries))
		e.tries++
	}
	e.at = at
	b.next[id] = e
}

// forget drops id: it is settled.
func (b *askBook) forget(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.next, id)
}

// keepOnly drops every reservation not in seen: a pass of the sweeper
// that went through every expired one did not find them tried any more.
func (b *askBook) keepOnly(seen map[string]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id := range b.next {
		if !seen[id] {
			delete(b.next, id)
		}
	}
}

// failed records a question without a usable answer: nobody is asked
// again before the back-off has passed.
func (b *askBook) failed(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.downUntil = now.Add(backoff(b.downTries))
	b.downTries++
}

// answered records that the coordinator answered.
func (b *askBook) answered() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.downUntil, b.downTries = time.Time{}, 0
}

// warn reports whether a warning may be logged at now (at most one every
// askWarnEvery), and how many were not logged since the last one.
func (b *askBook) warn(now time.Time) (bool, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.warned.IsZero() && now.Sub(b.warned) < askWarnEvery {
		b.skipped++
		return false, 0
	}
	n := b.skipped
	b.warned, b.skipped = now, 0
	return true, n
}

// askWarn logs a warning about asking, rate-limited.
func (p *Participant) askWarn(now time.Time, msg string, args ...any) {
	if ok, skipped := p.asks.warn(now); ok {
		p.log.Warn(msg, append(args, "table", p.table, "warnings_skipped", skipped)...)
	}
}

// dueAsk is a compensate-style reservation past its expiry, still tried.
type dueAsk struct {
	id       string
	expires  int64
	txID     string
	uri      string
	expiresT time.Time
}

// sweepCompensate is the part of a sweep that asks about the
// compensate-style reservations past their expiry and keeps or undoes
// them by the answer (see judge). It returns how many it undid.
func (p *Participant) sweepCompensate(ctx context.Context, now int64) (int, error) {
	undone, failed := 0, 0
	var errs []error
	seen := map[string]bool{}
	complete := true
	afterExp, afterID := int64(-1), ""
	for {
		rows, err := p.dueAsks(ctx, now, afterExp, afterID)
		if err != nil {
			errs = append(errs, err)
			complete = false
			break
		}
		for _, row := range rows {
			seen[row.id] = true
			done, err := p.settleByAsking(ctx, row, now)
			if ctx.Err() != nil {
				return undone, errors.Join(append(errs, ctx.Err())...)
			}
			if err != nil {
				if failed++; failed <= maxSweepErrors {
					errs = append(errs, err)
				}
				continue
			}
			if done == undo {
				undone++
			}
		}
		if len(rows) < p.sweepBatch {
			break
		}
		afterExp, afterID = rows[len(rows)-1].expires, rows[len(rows)-1].id
	}
	if complete {
		p.asks.keepOnly(seen)
	}
	if failed > maxSweepErrors {
		errs = append(errs, fmt.Errorf("participant: %d more compensate-style reservations failed to settle", failed-maxSweepErrors))
	}
	return undone, errors.Join(errs...)
}

// settleByAsking asks about one reservation, if it is time to, and acts
// on the answer. It returns what it did: keep or undo, or askAgain when
// it did nothing. An error is the database's (the answer is acted on at
// the next question); a coordinator that does not answer is logged, not
// returned.
func (p *Participant) settleByAsking(ctx context.Context, row dueAsk, nowMs int64) (verdict, error) {
	now := time.UnixMilli(nowMs)
	if !p.asks.due(row.id, now) {
		return askAgain, nil
	}
	if p.coordinator == "" || row.txID == "" || row.uri == "" {
		// The configuration changed since the try (Config.Style and
		// Coordinator are checked by New), or the row was written by
		// hand: nobody to ask, and no guessing.
		p.asks.later(row.id, now, now.Add(askMax))
		p.askWarn(now, "participant: a compensate-style reservation past its expiry cannot be asked about "+
			"(no Config.Coordinator, or no transaction id or URI recorded): it is left as it is, neither kept nor undone",
			"id", row.id, "tx_id", row.txID)
		return askAgain, nil
	}
	ans, err := p.askOutcome(ctx, row.txID, row.uri)
	if err != nil {
		if ctx.Err() != nil {
			return askAgain, nil
		}
		p.asks.failed(now)
		p.askWarn(now, "participant: cannot learn the outcome of compensate-style reservations past their expiry; "+
			"nothing is undone until the coordinator answers", "id", row.id, "tx_id", row.txID, "err", err)
		return askAgain, nil
	}
	p.asks.answered()
	v, why := undo, "the coordinator knows no such transaction with this participant"
	if ans.found {
		v, why = judge(ans.state, ans.partState), "transaction "+ans.state+", participant "+ans.partState
	} else if grace := row.expiresT.Add(p.compensateGrace); now.Before(grace) {
		// A decision may still be in flight: ask again once the grace
		// has passed, and believe it then.
		p.asks.later(row.id, now, grace)
		return askAgain, nil
	}
	var moved bool
	switch v {
	case keep:
		moved, err = p.keepConfirmed(ctx, row.id, nowMs)
	case undo:
		moved, err = p.expire(ctx, row.id, nowMs)
	default:
		p.asks.later(row.id, now, time.Time{})
		if !knownAnswer(ans) {
			p.askWarn(now, "participant: the coordinator answered states this kit does not know; asking again later",
				"id", row.id, "tx_id", row.txID, "state", ans.state, "participant_state", ans.partState)
		}
		return askAgain, nil
	}
	if err != nil {
		p.asks.later(row.id, now, time.Time{})
		return askAgain, err
	}
	p.asks.forget(row.id)
	if !moved {
		return askAgain, nil // settled meanwhile by a DELETE, or by another sweeper
	}
	p.log.Info("participant: compensate-style reservation settled at its expiry", "table", p.table, "id", row.id,
		"tx_id", row.txID, "verdict", v.String(), "why", why)
	return v, nil
}

// knownAnswer reports whether ans holds states judge knows, whatever it
// made of them.
func knownAnswer(ans askAnswer) bool {
	switch ans.state {
	case "active", "confirming", "confirmed", "cancelling", "cancelled", "compensating", "compensated", "heuristic":
	default:
		return false
	}
	switch ans.partState {
	case "pending", "in_doubt", "confirmed", "cancelled", "expired", "failed", "cancel_refused", "compensated":
		return true
	}
	return false
}

// keepConfirmed moves a compensate-style reservation from tried to
// confirmed, its transaction having confirmed, and runs the
// application's Confirm (and the outbox's), in one local transaction; it
// reports whether it did. A reservation no longer tried (a DELETE or
// another sweeper came first) is left as it is.
func (p *Participant) keepConfirmed(ctx context.Context, id string, now int64) (bool, error) {
	return p.settleDue(ctx, id, Confirmed, now, p.confirmFn, "confirm %s after its transaction confirmed", "confirm")
}

// dueAsks reads a page of compensate-style reservations still tried and
// expired at now, after the cursor (expires, id), in that order.
func (p *Participant) dueAsks(ctx context.Context, now, afterExp int64, afterID string) ([]dueAsk, error) {
	rows, err := p.db.QueryContext(ctx, p.q.dueAsk, Tried, StyleCompensate, now, afterExp, afterExp, afterID)
	if err != nil {
		return nil, fmt.Errorf("participant: find expired compensate-style reservations: %w", err)
	}
	defer rows.Close()
	var out []dueAsk
	for rows.Next() {
		var d dueAsk
		if err := rows.Scan(&d.id, &d.expires, &d.txID, &d.uri); err != nil {
			return nil, fmt.Errorf("participant: find expired compensate-style reservations: %w", err)
		}
		d.expiresT = time.UnixMilli(d.expires)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("participant: find expired compensate-style reservations: %w", err)
	}
	return out, nil
}
