// Package backoff computes retry delays: exponential growth with full jitter.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is an exponential back-off with full jitter: the n-th retry (from
// 0) waits a uniformly random time in [0, min(Max, Min·2ⁿ)], but at least
// Min/2 so that a hot loop cannot form.
type Policy struct {
	Min time.Duration
	Max time.Duration
}

// Delay returns the wait before retry number n (0-based). rnd returns a
// float in [0,1); nil means math/rand/v2.
func (p Policy) Delay(n int, rnd func() float64) time.Duration {
	if rnd == nil {
		rnd = rand.Float64
	}
	ceil := p.Ceiling(n)
	floor := p.Min / 2
	d := time.Duration(rnd() * float64(ceil))
	if d < floor {
		d = floor
	}
	return d
}

// Ceiling returns the upper bound of the delay before retry n.
func (p Policy) Ceiling(n int) time.Duration {
	min, max := p.Min, p.Max
	if min <= 0 {
		min = time.Millisecond
	}
	if max < min {
		max = min
	}
	d := min
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}
