package tccd

import (
	"context"
	"time"

	"github.com/tccd/tccd/internal/backoff"
)

// Notifier delivers a transaction's outcome to its Notify URL (a
// webhook). http.Caller is the implementation: a signed POST of the
// transaction document. Notify must honour ctx and must not retry by
// itself; the coordinator retries until a 2xx or the webhook's maximum
// age, and records each attempt.
type Notifier interface {
	Notify(ctx context.Context, url, deliveryID string, tx *Transaction) CallResult
}

// Defaults for the webhook settings of Config.
const DefaultWebhookMaxAge = 24 * time.Hour

// checkNotify validates a Notify URL: allowed (the same rules as
// participant links, checked again when the connection is made), and
// only when the coordinator can sign deliveries.
func (c *Coordinator) checkNotify(url string) (string, error) {
	if url == "" {
		return "", nil
	}
	if c.cfg.Notifier == nil {
		return "", &Error{Code: ENotConfigured, Field: "notify", Message: "this coordinator cannot notify: it has no webhook secret to sign deliveries with (start it with webhook-secret-file)"}
	}
	canon, err := CanonicalURI(url)
	if err != nil {
		return "", &Error{Code: EInvalid, Field: "notify", Message: "notify: " + ErrorMessage(err)}
	}
	if err := c.links.CheckLink(canon); err != nil {
		return "", &Error{Code: EInvalid, Field: "notify", Message: "notify: " + ErrorMessage(err)}
	}
	return canon, nil
}

// notifyOnFinal makes the notification of tx due, when tx has a Notify
// URL and moves from prev to the final state to: written with that state.
func (c *Coordinator) notifyOnFinal(tx *Transaction, prev, to State, now time.Time) {
	if tx.Notify == "" || !to.Final() || to == prev {
		return
	}
	// The delivery id names the outcome, not the attempt to deliver it: a
	// final state reached again after a crash (its unsynced write lost,
	// the calls re-sent) is delivered again under the same id, so that a
	// receiver can tell the repeat. A resolution is another outcome.
	tx.Notification = Notification{State: NotificationPending, DeliveryID: tx.ID + "/" + string(to), Since: now}
}

// startDelivery delivers the pending notification of transaction id in
// the background, unless a delivery of it is running already.
func (c *Coordinator) startDelivery(id string) {
	c.mu.Lock()
	if c.delivering[id] || c.closed {
		c.mu.Unlock()
		return
	}
	c.delivering[id] = true
	c.wg.Add(1)
	c.mu.Unlock()
	c.pool.Go(func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.delivering, id)
			c.mu.Unlock()
		}()
		c.deliver(id)
	})
}

// deliver posts the outcome of transaction id to its Notify URL until a
// 2xx, the webhook's maximum age, or the coordinator closes (the next
// start resumes it: the pending notification is in the record). Every
// attempt is recorded without a sync: a lost record means one more
// delivery, which receivers must accept (Tcc-Delivery tells a repeat).
func (c *Coordinator) deliver(id string) {
	policy := backoff.Policy{Min: c.cfg.RetryMin, Max: c.cfg.RetryMax}
	for retry := 0; c.ctx.Err() == nil && c.owns(id); retry++ {
		tx, err := c.store.Get(c.writeCtx(), id)
		if err != nil || tx.Notification.State != NotificationPending {
			return
		}
		n := tx.Notification
		start := c.clock.Now()
		ctx, cancel := context.WithTimeout(c.callCtx, c.cfg.CallTimeout)
		r := c.cfg.Notifier.Notify(ctx, tx.Notify, n.DeliveryID, tx)
		cancel()
		n.Attempts++
		n.LastStatus, n.LastError, n.LastAttemptAt = r.Status, r.describe(), start
		done := r.Err == nil && r.Status >= 200 && r.Status < 300
		now := c.clock.Now()
		switch {
		case done:
			n.State = NotificationDelivered
		case !now.Before(n.Since.Add(c.cfg.WebhookMaxAge)) || r.Permanent:
			n.State = NotificationFailed
			c.log.Error("notification not delivered: giving up", logTx(id, tx.TraceParent, "host", HostOf(tx.Notify), "attempts", n.Attempts, "status", r.Status, "error", n.LastError)...)
		default:
			c.log.Debug("notification not delivered; retrying", logTx(id, tx.TraceParent, "host", HostOf(tx.Notify), "attempt", n.Attempts, "status", r.Status, "error", n.LastError)...)
		}
		_, _, err = c.update(c.writeCtx(), id, false, func(cur *Transaction) (State, error) {
			if cur.Notification.DeliveryID != n.DeliveryID || cur.Notification.State != NotificationPending {
				return "", errUnchanged // resolved meanwhile: a new delivery is due
			}
			cur.Notification = n
			return cur.State, nil
		})
		if err != nil {
			c.log.Warn("cannot record a notification attempt", logTx(id, tx.TraceParent, "err", err)...)
		}
		if n.State != NotificationPending {
			c.released(id)
			return
		}
		wait := max(policy.Delay(retry, nil), r.RetryAfter)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return
		}
	}
}
