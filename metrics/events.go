package metrics

import "github.com/tccd/tccd"

// Events is a tccd.Events that counts every event on its way to the
// publisher it wraps. A decorator rather than a subscriber: a subscriber
// that falls behind is dropped (see tccd.Events), and counters that
// silently stop would claim less than happened without saying so; the
// counting is a few atomic additions, cheap enough to do in Publish.
type Events struct {
	tccd.Events
	m *Metrics
}

var _ tccd.Events = (*Events)(nil)

// Events returns next with the transaction metrics counted from its
// events: give it to the coordinator (tccd.Config.Events).
func (m *Metrics) Events(next tccd.Events) *Events { return &Events{Events: next, m: m} }

// Publish counts ev, then publishes it.
func (e *Events) Publish(ev tccd.Event) {
	e.m.observe(&ev)
	e.Events.Publish(ev)
}

// observe counts a state event. The coordinator publishes one only after
// the change is written, so what is counted is what the store holds.
func (m *Metrics) observe(ev *tccd.Event) {
	if ev.Type != tccd.EventState {
		return
	}
	if ev.Previous == tccd.StateNone {
		m.started.Inc()
	}
	// Elapsed is set on a decision only when a request took it (a timer's
	// has no request to measure from).
	if ev.State.Decided() && !ev.Previous.Decided() && ev.Elapsed > 0 {
		m.decision.Observe(ev.Elapsed.Seconds())
	}
	switch {
	case ev.State.Final() && !ev.Previous.Final():
		m.finished.WithLabelValues(string(ev.State), string(ev.Reason)).Inc()
		if ev.Elapsed > 0 {
			m.settle.WithLabelValues(string(ev.State)).Observe(ev.Elapsed.Seconds())
		}
	case ev.Previous == tccd.StateHeuristic && ev.State != tccd.StateHeuristic:
		m.resolved.WithLabelValues(string(ev.State)).Inc()
	}
}
