package participant

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tccd/tccd/api"
)

// Barrier mode (forsrc's all-confirmed barrier), the participant's half.
// A confirm of a barrier-mode transaction carries the header Tcc-Barrier
// with the key of the coordinator's round. The kit applies the confirm in
// its local transaction as usual — row lock, expiry check, move to
// confirmed, the application's Confirm — but does not commit: it reports
// "confirmed" for the key to the coordinator (POST
// <Coordinator>/api/v1/barriers/<key>, a long poll) and, holding the
// transaction open, waits for the round's outcome. On "commit" it commits
// and answers 204; on "abort", or no outcome within BarrierWait, it rolls
// back and answers 503, and the coordinator tries a later round. If the
// application's Confirm fails, the kit rolls back, reports "failed" with
// the error's message and answers 409: the coordinator aborts the round and
// cancels the transaction, so no participant commits.
//
// The local transaction keeps its locks while it waits: the reservation's
// row (on SQLite, the whole database: one barrier confirm at a time per
// database file), and whatever rows the application's Confirm wrote. The
// expiry sweeper cannot expire the reservation meanwhile.

// Barrier reports and outcomes on the wire (package http's BarrierReport
// and BarrierAnswer).
const (
	barrierConfirmed = "confirmed"
	barrierFailed    = "failed"
	barrierCommit    = "commit"
	barrierPending   = "pending"
)

const (
	// DefaultBarrierWait is how long a barrier confirm waits for its
	// round's outcome after reporting; longer than the coordinator's
	// default barrier-wait (10s), which bounds how long a round stays
	// undecided.
	DefaultBarrierWait = 30 * time.Second
	// maxReportPoll is the longest wait one report may ask of the
	// coordinator (its limit for ?wait=); a longer BarrierWait polls again.
	maxReportPoll = 60 * time.Second
	// maxReportDetail is the longest detail the coordinator accepts with a
	// report (tccd.MaxNoteLength).
	maxReportDetail = 1024
	// reportSlack is how long past its ?wait= a report's answer may take
	// before the kit gives up on it.
	reportSlack = 5 * time.Second
)

// barrierReport is the body of a report.
type barrierReport struct {
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// confirmBarrier serves a confirm that carries a barrier key. nil means
// the reservation is confirmed and committed (now or before).
func (p *Participant) confirmBarrier(ctx context.Context, id, scope, key string) error {
	if p.coordinator == "" {
		// writeProblem logs it, as every 5xx, for the operator to see.
		return Rejectf(http.StatusInternalServerError, "this participant is not configured for barrier-mode confirms: "+
			"it has no coordinator URL to report to (participant.Config.Coordinator)")
	}
	// The local transaction does not end with the request: once the
	// outcome is "commit" it commits even if the coordinator's call went
	// away meanwhile (the coordinator asks again, and finds it confirmed).
	// It is bounded all the same, so that locks are never held for ever.
	dbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.barrierWait+maxReportPoll)
	defer cancel()
	var tx *sql.Tx
	err := p.retry(ctx, func() error {
		var err error
		tx, err = p.applyConfirm(dbCtx, id, scope)
		return err
	})
	var failed *confirmFuncError
	var unavailable errUnavailable
	switch {
	case errors.As(err, &unavailable):
		// A deadlock or a busy database, even after retries: no report;
		// the answer aborts the round and the coordinator tries another.
		return err
	case errors.As(err, &failed):
		return p.reportFailure(ctx, id, key, failed)
	case err != nil:
		return err
	case tx == nil:
		return nil // confirmed before: nothing to report
	}
	defer tx.Rollback()
	outcome, err := p.awaitOutcome(ctx, key)
	if outcome != barrierCommit {
		_ = tx.Rollback()
		why := "the round was aborted"
		switch {
		case err != nil:
			why = "no outcome from the coordinator: " + err.Error()
		case outcome == barrierPending:
			why = fmt.Sprintf("no outcome within %v", p.barrierWait)
		}
		// writeProblem logs the 503 with why.
		return Rejectf(http.StatusServiceUnavailable, "confirm of reservation %s rolled back: %s; ask again", id, why)
	}
	if err := tx.Commit(); err != nil {
		// The round is committed: the coordinator asks again with the
		// same key, the confirm is applied again and hears "commit" at
		// once.
		return errUnavailable{fmt.Errorf("participant: commit confirm %s after the barrier: %w", id, err)}
	}
	return nil
}

// reportFailure tells the coordinator that the application's Confirm
// failed (what applyConfirm left open is rolled back already) and answers
// 409: the transaction is cancelled. The report only speeds that up — the
// 409 alone aborts the round — so a report that fails is logged, not
// answered.
func (p *Participant) reportFailure(ctx context.Context, id, key string, failed *confirmFuncError) error {
	msg := failed.err.Error()
	var rej *Rejection
	if errors.As(failed.err, &rej) {
		msg = rej.Detail
	}
	if len(msg) > maxReportDetail {
		msg = msg[:maxReportDetail]
	}
	if _, err := p.report(ctx, key, barrierReport{Status: barrierFailed, Detail: msg}, 0); err != nil {
		p.log.Warn("participant: could not report a failed barrier confirm", "table", p.table, "id", id, "err", err)
	}
	p.log.Info("participant: barrier confirm failed; reported", "table", p.table, "id", id, "err", failed.err)
	return Rejectf(http.StatusConflict, "confirm of reservation %s failed: %s", id, msg)
}

// awaitOutcome reports "confirmed" for key and waits up to BarrierWait for
// the round's outcome, polling again while the coordinator answers
// "pending". It returns "pending" when the wait ran out, and an error when
// the coordinator cannot be asked (or the request's context ended: the
// coordinator stopped waiting for this confirm).
func (p *Participant) awaitOutcome(ctx context.Context, key string) (string, error) {
	deadline := time.Now().Add(p.barrierWait)
	for {
		wait := min(time.Until(deadline), maxReportPoll)
		if wait <= 0 {
			return barrierPending, nil
		}
		outcome, err := p.report(ctx, key, barrierReport{Status: barrierConfirmed}, wait)
		if err != nil || outcome != barrierPending {
			return outcome, err
		}
	}
}

// report POSTs a report for key and returns the outcome the coordinator
// answers, waiting up to wait for it. A report may be repeated: the
// coordinator keeps the last one of an undecided round, and answers a
// decided round's outcome at once.
func (p *Participant) report(ctx context.Context, key string, rep barrierReport, wait time.Duration) (string, error) {
	body, err := json.Marshal(rep)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, wait+reportSlack)
	defer cancel()
	u := p.coordinator + "/api/v1/barriers/" + url.PathEscape(key) + "?wait=" + url.QueryEscape(wait.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	req.Header.Set("Content-Type", api.MediaJSON)
	req.Header.Set("Accept", api.MediaJSON)
	if p.coordinatorToken != "" {
		req.Header.Set("Authorization", "Bearer "+p.coordinatorToken)
	}
	resp, err := p.httpClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		// 404: the coordinator knows no round with this key (it ended);
		// 401/403: a missing or wrong CoordinatorToken.
		return "", fmt.Errorf("report: the coordinator answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var ans struct {
		Outcome string `json:"outcome"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return "", fmt.Errorf("report: the coordinator's answer: %w", err)
	}
	return ans.Outcome, nil
}
