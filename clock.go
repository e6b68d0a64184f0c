package tccd

import "time"

// Clock tells the time. The coordinator reads the time only through it,
// so tests can run decisions at chosen instants.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }
