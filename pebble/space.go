package pebble

import (
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tccd/tccd"
)

// spaceCheckEvery bounds how often the free space is measured: writes in
// between use the last measurement.
const spaceCheckEvery = 50 * time.Millisecond

// spaceGuard refuses writes while the disk of dir has less than min bytes
// free. Pebble treats a failed write of its log as fatal, so the store
// stops writing while a reserve is left, answers clearly, and resumes by
// itself once space returns.
type spaceGuard struct {
	fs  vfs.FS // measured through, as Pebble writes through it
	dir string
	min int64

	mu      sync.Mutex
	checked time.Time
	free    int64
	err     error
}

func (g *spaceGuard) check() error {
	if g.min <= 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if now := time.Now(); now.Sub(g.checked) >= spaceCheckEvery {
		g.checked = now
		u, err := g.fs.GetDiskUsage(g.dir)
		if err != nil {
			g.err = &tccd.Error{Code: tccd.EUnavailable, Message: "cannot measure the free space of the transaction log's disk", Err: err}
			return g.err
		}
		g.free = int64(min(u.AvailBytes, 1<<62))
		g.err = nil
		if g.free < g.min {
			g.err = tccd.Errorf(tccd.EUnavailable, "the disk of the transaction log is nearly full (%d MiB free, %d MiB kept in reserve): no new decision is taken until space returns", g.free>>20, g.min>>20)
		}
	}
	return g.err
}
