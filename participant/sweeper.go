package participant

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// cleanupEvery is how often Run deletes old rows when Config.Retention is set.
const cleanupEvery = time.Minute

// maxSweepErrors bounds the failures a Sweep reports in detail.
const maxSweepErrors = 10

// Sweep makes one pass of the expiry sweeper: every TCC reservation still
// tried whose expiry is at or before now moves to expired, and the
// application's Cancel releases it, one local transaction each (so a
// confirm or cancel racing with it finds the row moved and cannot apply
// twice). A compensate-style reservation still tried past its expiry is
// kept or undone as the coordinator's answer says (see Config.Style):
// kept (confirmed, the application's Confirm run) once its transaction
// confirmed, undone (expired, the application's Cancel run) once no
// confirm decision can include it, left tried — and asked about again
// later, with back-off — while that is not known or the coordinator does
// not answer. It returns how many reservations it expired or undid. A
// failing Cancel (or Confirm) leaves its reservation tried for the next
// pass and is reported in err (the others are still swept); a
// coordinator that does not answer is logged, at most once a minute, not
// reported. Run calls Sweep periodically; tests and cron-style
// deployments may call it directly.
func (p *Participant) Sweep(ctx context.Context) (int, error) {
	now := p.nowMilli()
	expired, failed := 0, 0
	var errs []error
	afterExp, afterID := int64(-1), ""
	for {
		ids, exps, err := p.due(ctx, now, afterExp, afterID)
		if err != nil {
			errs = append(errs, err)
			break
		}
		for _, id := range ids {
			ok, err := p.expire(ctx, id, now)
			if err != nil {
				if ctx.Err() != nil {
					return expired, errors.Join(append(errs, ctx.Err())...)
				}
				if failed++; failed <= maxSweepErrors {
					errs = append(errs, err)
				}
				continue
			}
			if ok {
				expired++
			}
		}
		if len(ids) < p.sweepBatch {
			break
		}
		afterExp, afterID = exps[len(ids)-1], ids[len(ids)-1]
	}
	if failed > maxSweepErrors {
		errs = append(errs, fmt.Errorf("participant: %d more reservations failed to expire", failed-maxSweepErrors))
	}
	undone, err := p.sweepCompensate(ctx, now)
	if err != nil {
		errs = append(errs, err)
	}
	return expired + undone, errors.Join(errs...)
}

// due reads a page of tried TCC reservations expired at now, after the
// cursor (expires, id), in that order.
func (p *Participant) due(ctx context.Context, now, afterExp int64, afterID string) ([]string, []int64, error) {
	rows, err := p.db.QueryContext(ctx, p.q.due, Tried, StyleTCC.stored(), now, afterExp, afterExp, afterID)
	if err != nil {
		return nil, nil, fmt.Errorf("participant: find expired reservations: %w", err)
	}
	defer rows.Close()
	var ids []string
	var exps []int64
	for rows.Next() {
		var id string
		var exp int64
		if err := rows.Scan(&id, &exp); err != nil {
			return nil, nil, fmt.Errorf("participant: find expired reservations: %w", err)
		}
		ids, exps = append(ids, id), append(exps, exp)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("participant: find expired reservations: %w", err)
	}
	return ids, exps, nil
}

// Cleanup deletes the settled bookkeeping rows (confirmed, cancelled,
// expired, void) whose expiry lies more than olderThan in the past and
// that have not changed for as long; for a void row the expiry is the end
// of its refusal of a late try. Tried rows are never deleted. olderThan
// must be at least MinRetention (see there for why): a younger row may
// still have to answer a repeated confirm or a repeated try. It returns
// the number of rows deleted.
func (p *Participant) Cleanup(ctx context.Context, olderThan time.Duration) (int64, error) {
	if olderThan < MinRetention {
		return 0, fmt.Errorf("participant: cleanup: age %v is below MinRetention (%v)", olderThan, MinRetention)
	}
	cutoff := p.nowMilli() - olderThan.Milliseconds()
	res, err := p.db.ExecContext(ctx, p.q.cleanup, Confirmed, Cancelled, Expired, Void, cutoff, cutoff)
	if err != nil {
		return 0, fmt.Errorf("participant: cleanup: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("participant: cleanup: %w", err)
	}
	return n, nil
}

// Run is the expiry sweeper: it calls Sweep now and every
// Config.SweepEvery (and Cleanup about once a minute when Config.Retention
// is set), logging what it does, until ctx ends; then it returns. Run it
// in a goroutine you own, e.g. beside the HTTP server, and cancel ctx to
// stop it. One Run per table is enough; several (one per replica) are
// safe, each row being expired by one transaction only. With a
// Config.Outbox that has a Publisher, Run also runs its relay
// (Outbox.Run) and returns once that has stopped too.
func (p *Participant) Run(ctx context.Context) {
	defer p.startRelay(ctx)()
	ticker := time.NewTicker(p.sweepEvery)
	defer ticker.Stop()
	var lastCleanup time.Time
	for {
		n, err := p.Sweep(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			p.log.Warn("participant: expiry sweep failed", "table", p.table, "expired", n, "err", err)
		} else if n > 0 {
			p.log.Info("participant: expired reservations cancelled", "table", p.table, "expired", n)
		}
		if p.retention > 0 && time.Since(lastCleanup) >= cleanupEvery {
			lastCleanup = time.Now()
			if n, err := p.Cleanup(ctx, p.retention); err != nil && ctx.Err() == nil {
				p.log.Warn("participant: cleanup failed", "table", p.table, "err", err)
			} else if n > 0 {
				p.log.Info("participant: old bookkeeping rows deleted", "table", p.table, "deleted", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
