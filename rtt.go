package tccd

import (
	"sync"
	"time"
)

// rttTable keeps a moving average of call round-trip times per participant
// host, so the expiry safety margin follows what the network really does.
type rttTable struct {
	mu    sync.Mutex
	hosts map[string]time.Duration
}

// rttAlpha weighs the newest sample in the moving average.
const rttAlpha = 0.2

func newRTTTable() *rttTable { return &rttTable{hosts: make(map[string]time.Duration)} }

func (t *rttTable) observe(host string, d time.Duration) {
	if host == "" || d <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.hosts[host]
	if !ok {
		t.hosts[host] = d
		return
	}
	t.hosts[host] = time.Duration(rttAlpha*float64(d) + (1-rttAlpha)*float64(old))
}

// get returns the average round trip to host, 0 if none was observed.
func (t *rttTable) get(host string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.hosts[host]
}
