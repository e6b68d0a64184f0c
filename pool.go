package tccd

import "time"

// workers runs short tasks (a transaction's driver, a participant call
// loop) on goroutines that stay after their task for the next one, up to
// idle time. A fresh goroutine for every task showed in profiles of the
// confirm path: its stack starts small and is copied as it grows through
// an HTTP call; a goroutine that has run one call already has the stack
// for the next. Tasks never wait for one another here: with no idle
// goroutine, a task gets a new one.
type workers struct {
	tasks chan func()
	stop  chan struct{}
	idle  time.Duration
}

func newWorkers(idle time.Duration) *workers {
	return &workers{tasks: make(chan func()), stop: make(chan struct{}), idle: idle}
}

// Go runs fn on an idle goroutine, or on a new one if none is idle.
func (w *workers) Go(fn func()) {
	select {
	case w.tasks <- fn:
	default:
		go w.run(fn)
	}
}

func (w *workers) run(fn func()) {
	t := time.NewTimer(w.idle)
	defer t.Stop()
	for {
		fn()
		fn = nil // let the task's closure go while idle
		t.Reset(w.idle)
		select {
		case fn = <-w.tasks:
		case <-t.C:
			return
		case <-w.stop:
			return
		}
	}
}

// Close makes idle goroutines end; running tasks finish first.
func (w *workers) Close() { close(w.stop) }
