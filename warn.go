package tccd

import (
	"sync"
	"time"
)

// retryWarnEvery is how often, at most, failed participant calls to one
// host are logged as a warning (every one is logged at debug level).
const retryWarnEvery = 10 * time.Second

// maxWarnHosts bounds the hosts a warnLimiter remembers.
const maxWarnHosts = 10000

// warnLimiter rate-limits warnings per key (a participant host), counting
// the ones it holds back.
type warnLimiter struct {
	mu   sync.Mutex
	last map[string]warnState
}

type warnState struct {
	at         time.Time
	suppressed int
}

// allow reports whether a warning about key may be logged now, and how
// many were held back since the last one.
func (w *warnLimiter) allow(key string, now time.Time) (suppressed int, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil || len(w.last) >= maxWarnHosts {
		w.last = make(map[string]warnState)
	}
	st, seen := w.last[key]
	if seen && now.Sub(st.at) < retryWarnEvery {
		st.suppressed++
		w.last[key] = st
		return 0, false
	}
	w.last[key] = warnState{at: now}
	return st.suppressed, true
}
