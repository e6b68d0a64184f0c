package client

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tccd/tccd/api"
)

// WebhookTolerance is how far the time a notification was signed may be
// from now: older (or newer) ones are refused, so that a captured request
// cannot be replayed later.
const WebhookTolerance = 5 * time.Minute

// maxWebhookBody bounds the body VerifyWebhook reads.
const maxWebhookBody = 1 << 20

// ErrBadSignature: a notification's signature is missing, malformed,
// wrong, or too old.
var ErrBadSignature = errors.New("tccd: the notification's signature does not verify")

// Webhook is a verified notification of a transaction's outcome.
type Webhook struct {
	// DeliveryID is the same for every attempt to deliver one outcome:
	// a receiver that sees it twice got a repeat (deliveries are at least
	// once).
	DeliveryID  string
	Transaction api.Transaction
}

// VerifyWebhook reads the notification r carries (the POST the
// coordinator sends to a transaction's notify URL), checks its
// Tcc-Signature — HMAC-SHA256 with secret of "<t>.<body>", t within
// WebhookTolerance of now — and returns it. Any mismatch is
// ErrBadSignature; nothing of an unverified body is returned.
func VerifyWebhook(secret []byte, r *http.Request) (*Webhook, error) {
	return verifyWebhook(secret, r, time.Now())
}

func verifyWebhook(secret []byte, r *http.Request, now time.Time) (*Webhook, error) {
	if len(secret) == 0 {
		return nil, errors.New("tccd: VerifyWebhook needs the secret")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody+1))
	if err != nil {
		return nil, fmt.Errorf("tccd: reading the notification: %w", err)
	}
	if len(body) > maxWebhookBody {
		return nil, fmt.Errorf("%w: the body is over %d bytes", ErrBadSignature, maxWebhookBody)
	}
	ts, sigs, err := parseSignature(r.Header.Get(api.HeaderWebhookSignature))
	if err != nil {
		return nil, err
	}
	if d := now.Sub(time.Unix(ts, 0)); d > WebhookTolerance || d < -WebhookTolerance {
		return nil, fmt.Errorf("%w: signed at %s, more than %v from now", ErrBadSignature, time.Unix(ts, 0).UTC().Format(time.RFC3339), WebhookTolerance)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	want := mac.Sum(nil)
	ok := false
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			ok = true
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w: no v1 signature matches the body", ErrBadSignature)
	}
	w := &Webhook{DeliveryID: r.Header.Get(api.HeaderWebhookDelivery)}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&w.Transaction); err != nil {
		return nil, fmt.Errorf("tccd: the notification's body is not a transaction: %w", err)
	}
	return w, nil
}

// parseSignature reads "t=<unix>,v1=<hex>[,v1=<hex>…]".
func parseSignature(h string) (int64, [][]byte, error) {
	if h == "" {
		return 0, nil, fmt.Errorf("%w: no %s header", ErrBadSignature, api.HeaderWebhookSignature)
	}
	var ts int64 = -1
	var sigs [][]byte
	for _, part := range strings.Split(h, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, nil, fmt.Errorf("%w: bad timestamp %q", ErrBadSignature, v)
			}
			ts = n
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return 0, nil, fmt.Errorf("%w: bad v1 signature", ErrBadSignature)
			}
			sigs = append(sigs, b)
		}
	}
	if ts < 0 || len(sigs) == 0 {
		return 0, nil, fmt.Errorf("%w: want t=<unix seconds>,v1=<hex>", ErrBadSignature)
	}
	return ts, sigs, nil
}
