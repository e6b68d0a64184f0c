package metrics

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tccd/tccd"
)

// Scan bounds of the unfinished collector.
const (
	// ScanTimeout bounds one read of the unfinished transactions.
	ScanTimeout = 10 * time.Second
	// ScanMinInterval is the least time between two reads: scrapes closer
	// together than that get the last figures.
	ScanMinInterval = time.Second
)

// inFlightStates are the states of tccd_transactions_in_flight.
var inFlightStates = []tccd.State{tccd.StateActive, tccd.StateConfirming, tccd.StateCancelling, tccd.StateCompensating}

// unfinished is the collector of the gauges of unfinished work. It counts
// at scrape time from the store, not from events: figures kept in memory
// would start from zero after a restart (and drift in a cluster, where
// other nodes change the records), while the store is what the
// coordinator itself recovers from.
type unfinished struct {
	store tccd.Store
	owner string // "" counts every record

	inFlight, inDoubt, scanTime *prometheus.Desc

	mu      sync.Mutex
	last    time.Time // when the figures below were read
	counts  map[tccd.State]int
	doubt   int
	took    time.Duration
	lastErr error
}

// TrackUnfinished registers the gauges read from store at scrape time:
// tccd_transactions_in_flight{state}, tccd_in_doubt_participants and
// tccd_unfinished_scan_duration_seconds. owner, when set, limits them to
// the records that name it as their owner (a cluster node: each reports
// the transactions it holds); "" counts every unfinished record (a single
// node). Pass the store itself, not a decorator whose reads would be
// counted.
func (m *Metrics) TrackUnfinished(store tccd.Store, owner string) error {
	c := &unfinished{
		store: store, owner: owner,
		inFlight: prometheus.NewDesc("tccd_transactions_in_flight",
			"Unfinished transactions in the store, by state (read from the store at scrape time; in a cluster, those whose record names this node as owner).",
			[]string{"state"}, nil),
		inDoubt: prometheus.NewDesc("tccd_in_doubt_participants",
			"Participants in doubt in unfinished transactions: a confirm was sent to them and no definite answer came, so they may have confirmed; the coordinator keeps asking.",
			nil, nil),
		scanTime: prometheus.NewDesc("tccd_unfinished_scan_duration_seconds",
			"How long the last read of the unfinished transactions, for the two gauges above, took.",
			nil, nil),
	}
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Describe sends the descriptions of the gauges.
func (c *unfinished) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.inFlight
	ch <- c.inDoubt
	ch <- c.scanTime
}

// Collect reads the store (at most once every ScanMinInterval) and sends
// the gauges. If the store cannot be read, it sends errors instead of
// figures: an old count would claim what is no longer known.
func (c *unfinished) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.last) >= ScanMinInterval {
		c.scan()
	}
	if c.lastErr != nil {
		err := fmt.Errorf("reading the unfinished transactions: %w", c.lastErr)
		ch <- prometheus.NewInvalidMetric(c.inFlight, err)
		ch <- prometheus.NewInvalidMetric(c.inDoubt, err)
		return
	}
	for _, s := range inFlightStates {
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(c.counts[s]), string(s))
	}
	ch <- prometheus.MustNewConstMetric(c.inDoubt, prometheus.GaugeValue, float64(c.doubt))
	ch <- prometheus.MustNewConstMetric(c.scanTime, prometheus.GaugeValue, c.took.Seconds())
}

// scan counts the unfinished transactions and their participants in
// doubt; with c.mu held.
func (c *unfinished) scan() {
	ctx, cancel := context.WithTimeout(context.Background(), ScanTimeout)
	defer cancel()
	start := time.Now()
	counts := make(map[tccd.State]int, len(inFlightStates))
	doubt := 0
	err := c.store.Unfinished(ctx, func(tx *tccd.Transaction) error {
		// Unfinished also yields final transactions whose notification
		// is pending: not in flight.
		if tx.State.Final() || (c.owner != "" && tx.Owner != c.owner) {
			return nil
		}
		counts[tx.State]++
		for i := range tx.Participants {
			if tx.Participants[i].State == tccd.ParticipantInDoubt {
				doubt++
			}
		}
		return nil
	})
	c.last, c.took, c.lastErr = time.Now(), time.Since(start), err
	if err == nil {
		c.counts, c.doubt = counts, doubt
	}
}
