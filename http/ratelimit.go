package http

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter holds one token bucket per client key: the token's name when
// authentication is on, the remote address otherwise.
type limiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	sweepAt int // sweep idle buckets when the map reaches this size
}

// minSweep is the map size below which idle buckets are not swept.
const minSweep = 1024

func newLimiter(perSecond float64, burst int) *limiter {
	if burst < 1 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return &limiter{limit: rate.Limit(perSecond), burst: burst, buckets: map[string]*rate.Limiter{}, sweepAt: minSweep}
}

// allow takes one request from key's bucket. When the bucket is empty it
// reports false and how long until a request would be allowed.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.sweepAt {
			l.sweep(now)
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Hour
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep drops the buckets that are full again: a full bucket is the same
// as a new one, so forgetting it changes nothing. This bounds the memory
// that many remote addresses can take, without a goroutine.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	l.sweepAt = max(minSweep, 2*len(l.buckets))
}
