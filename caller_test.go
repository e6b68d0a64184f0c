package tccd

import (
	"errors"
	"testing"
)

func TestClassify(t *testing.T) {
	transport := errors.New("connection refused")
	tests := []struct {
		op   Op
		r    CallResult
		want Verdict
	}{
		{OpConfirm, CallResult{Status: 200}, VerdictDone},
		{OpConfirm, CallResult{Status: 204}, VerdictDone},
		{OpConfirm, CallResult{Status: 404}, VerdictGone},
		{OpConfirm, CallResult{Status: 410}, VerdictGone},
		{OpConfirm, CallResult{Status: 405}, VerdictPermanent},
		{OpConfirm, CallResult{Status: 400}, VerdictPermanent},
		{OpConfirm, CallResult{Status: 409}, VerdictPermanent},
		{OpConfirm, CallResult{Status: 301}, VerdictPermanent},
		{OpConfirm, CallResult{Status: 408}, VerdictRetry},
		{OpConfirm, CallResult{Status: 425}, VerdictRetry},
		{OpConfirm, CallResult{Status: 429}, VerdictRetry},
		{OpConfirm, CallResult{Status: 500}, VerdictRetry},
		{OpConfirm, CallResult{Status: 503}, VerdictRetry},
		{OpConfirm, CallResult{Err: transport}, VerdictRetry},
		{OpConfirm, CallResult{}, VerdictRetry},
		{OpCancel, CallResult{Status: 204}, VerdictDone},
		{OpCancel, CallResult{Status: 404}, VerdictDone},
		{OpCancel, CallResult{Status: 405}, VerdictDone},
		{OpCancel, CallResult{Status: 410}, VerdictDone},
		{OpCancel, CallResult{Status: 409}, VerdictPermanent},
		{OpCancel, CallResult{Status: 403}, VerdictPermanent},
		{OpCancel, CallResult{Status: 502}, VerdictRetry},
		{OpCancel, CallResult{Status: 429}, VerdictRetry},
		{OpCancel, CallResult{Err: transport}, VerdictRetry},
		// A refused destination is a configuration matter: permanent.
		{OpConfirm, CallResult{Err: transport, Permanent: true}, VerdictPermanent},
		{OpCancel, CallResult{Err: transport, Permanent: true}, VerdictPermanent},
	}
	for _, tt := range tests {
		if got := Classify(tt.op, tt.r); got != tt.want {
			t.Errorf("Classify(%s, status %d, err %v) = %d, want %d", tt.op, tt.r.Status, tt.r.Err, got, tt.want)
		}
	}
}
