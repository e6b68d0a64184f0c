// Package metrics exposes what a tccd process observes in the Prometheus
// text format (prometheus/client_golang). It is built from decorators of
// the engine's seams — the Events publisher, the Store, the Caller and
// the MessagePublisher — and a collector that reads the store at scrape
// time, so the engine knows nothing of it; cmd/tccd wires it.
//
// The rule it keeps: a metric never claims more than the process saw.
// Counters count what went through this process's seams (in a cluster,
// each node counts its own work); the gauges of what is unfinished are
// read from the store, so they are right after a restart; a participant
// call whose answer never came is counted as "error" or "timeout", never
// by the status the participant may have meant to send.
package metrics

import (
	"log/slog"
	"net/http"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Bucket boundaries, in seconds.
var (
	// A decision is one synced write after a request's checks.
	decisionBuckets = []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// The second phase may wait for retries, an expiry, an in-doubt window.
	settleBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400}
	callBuckets   = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	storeBuckets  = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
)

// Metrics holds one process's metrics in a registry of its own (never
// Prometheus's global one): two Metrics in one process, as in tests, do
// not share anything. Its decorators may be used concurrently.
type Metrics struct {
	reg *prometheus.Registry

	started    prometheus.Counter
	finished   *prometheus.CounterVec
	resolved   *prometheus.CounterVec
	decision   prometheus.Histogram
	settle     *prometheus.HistogramVec
	calls      *prometheus.CounterVec
	callTime   *prometheus.HistogramVec
	storeTime  *prometheus.HistogramVec
	storeFails *prometheus.CounterVec
}

// New returns the metrics of a tccd process: the transaction and
// participant metrics (fed by the decorators), the Go runtime and process
// collectors, and tccd_build_info labelled with version.
func New(version string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tccd_transactions_started_total",
			Help: "Transactions this process created (a registered begin, or a one-shot confirm or cancel of a new link set).",
		}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tccd_transactions_finished_total",
			Help: "Transactions this process moved to a final state, by that state and the transaction's reason.",
		}, []string{"state", "reason"}),
		resolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tccd_transactions_resolved_total",
			Help: "Heuristic transactions an operator resolved through this process, by the state they were resolved to.",
		}, []string{"state"}),
		decision: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tccd_decision_duration_seconds",
			Help:    "Time from a confirm or cancel request to its decision being durably written.",
			Buckets: decisionBuckets,
		}),
		settle: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tccd_confirm_duration_seconds",
			Help:    "Time from a transaction's decision to its final state (the second phase), by final state.",
			Buckets: settleBuckets,
		}, []string{"state"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tccd_participant_calls_total",
			Help: "Calls to participants (and message publishes), by phase and outcome class: 1xx-5xx for an answer, timeout, error (no answer: refused, reset, lost), not_allowed (destination refused, not sent); ok for a publish the broker stored.",
		}, []string{"phase", "outcome"}),
		callTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tccd_participant_call_duration_seconds",
			Help:    "Duration of calls to participants (and message publishes), by phase.",
			Buckets: callBuckets,
		}, []string{"phase"}),
		storeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tccd_store_write_duration_seconds",
			Help:    "Duration of writes to the transaction store, by whether the write was synced to stable storage.",
			Buckets: storeBuckets,
		}, []string{"synced"}),
		storeFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tccd_store_write_failures_total",
			Help: "Writes the store failed (I/O, full disk, lost database connection; not compare-and-set conflicts), by whether the write was to be synced.",
		}, []string{"synced"}),
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tccd_build_info",
		Help: "Always 1: the version of tccd and of Go it was built with.",
	}, []string{"version", "goversion"})
	info.WithLabelValues(version, runtime.Version()).Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		info, m.started, m.finished, m.resolved, m.decision, m.settle,
		m.calls, m.callTime, m.storeTime, m.storeFails,
	)
	// Series that exist from the start, so that rate() and alerts see a
	// zero rather than nothing.
	for _, s := range []string{"true", "false"} {
		m.storeFails.WithLabelValues(s)
	}
	return m
}

// Registry returns the registry the metrics are in; a caller may register
// more collectors with it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats. A
// collector that fails (the store cannot be read) is logged to log and
// left out; the rest is served.
func (m *Metrics) Handler(log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg, // promhttp_metric_handler_errors_total
	})
}
