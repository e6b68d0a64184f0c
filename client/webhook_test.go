package client

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func sign(secret, body string, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + body))
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

func TestVerifyWebhook(t *testing.T) {
	const secret = "whsec-0123456789abcdef"
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	body := `{"id":"01J","protocol":"native","state":"confirmed","created_at":"2026-12-03T09:59:00Z","updated_at":"2026-12-03T10:00:00Z","participants":[]}`
	tests := []struct {
		name, secret, body, sig string
		wantErr                 bool
	}{
		{"valid", secret, body, sign(secret, body, now), false},
		{"valid, a second signature", secret, body, sign("old-secret-xxxxxxxx", body, now) + "," + strings.Split(sign(secret, body, now), ",")[1], false},
		{"4 minutes old", secret, body, sign(secret, body, now.Add(-4*time.Minute)), false},
		{"tampered body", secret, strings.Replace(body, "confirmed", "cancelled", 1), sign(secret, body, now), true},
		{"another secret", "another-secret-xxxxxx", body, sign(secret, body, now), true},
		{"6 minutes old (a replay)", secret, body, sign(secret, body, now.Add(-6*time.Minute)), true},
		{"from the future", secret, body, sign(secret, body, now.Add(6*time.Minute)), true},
		{"no header", secret, body, "", true},
		{"no v1", secret, body, "t=" + strconv.FormatInt(now.Unix(), 10), true},
		{"bad hex", secret, body, "t=" + strconv.FormatInt(now.Unix(), 10) + ",v1=zz", true},
		{"timestamp changed", secret, body, strings.Replace(sign(secret, body, now), strconv.FormatInt(now.Unix(), 10), strconv.FormatInt(now.Unix()-1, 10), 1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/hook", strings.NewReader(tt.body))
			if tt.sig != "" {
				r.Header.Set("Tcc-Signature", tt.sig)
			}
			r.Header.Set("Tcc-Delivery", "01J/confirmed")
			wh, err := verifyWebhook([]byte(tt.secret), r, now)
			if tt.wantErr {
				if !errors.Is(err, ErrBadSignature) || wh != nil {
					t.Fatalf("verify = %v, %v; want ErrBadSignature", wh, err)
				}
				return
			}
			if err != nil || wh.DeliveryID != "01J/confirmed" || wh.Transaction.State != "confirmed" || wh.Transaction.ID != "01J" {
				t.Fatalf("verify = %+v, %v", wh, err)
			}
		})
	}
	if _, err := VerifyWebhook(nil, httptest.NewRequest("POST", "/", nil)); err == nil {
		t.Fatal("no secret accepted")
	}
}

// FuzzParseSignature: any Tcc-Signature header parses or is refused
// without a panic, and nothing unverified gets through.
func FuzzParseSignature(f *testing.F) {
	f.Add("t=1764756000,v1=" + strings.Repeat("ab", 32))
	f.Add("t=-1,v1=,v1=00")
	f.Add("v1=" + strings.Repeat("0", 64) + ",t=1")
	f.Fuzz(func(t *testing.T, h string) {
		ts, sigs, err := parseSignature(h)
		if err == nil && (ts < 0 || len(sigs) == 0) {
			t.Fatalf("parseSignature(%q) = %d, %d signatures, no error", h, ts, len(sigs))
		}
		for _, s := range sigs {
			if len(s) != sha256.Size {
				t.Fatalf("a signature of %d bytes", len(s))
			}
		}
	})
}
