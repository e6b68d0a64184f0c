package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/metrics"
	"github.com/tccd/tccd/otel"
)

// tracingOn says whether this configuration and environment turn tracing
// on (see otel.Enabled), and reports OTEL_* settings tccd cannot honour.
func (m *Main) tracingOn() (bool, error) {
	if !otel.Enabled(m.Config.Tracing, m.getenv) {
		return false, nil
	}
	if err := otel.CheckEnv(m.getenv); err != nil {
		return false, fmt.Errorf("tracing: %w", err)
	}
	return true, nil
}

// initTracing starts the OpenTelemetry tracer when tracing is on. Its
// exporter reads the OTEL_* variables of the process's environment.
func (m *Main) initTracing(ctx context.Context) error {
	on, err := m.tracingOn()
	if err != nil || !on {
		return err
	}
	t, err := otel.New(ctx, Version, m.getenv)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	m.tracer = t
	otel.LogErrors(m.Log)
	endpoint := m.getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		endpoint = m.getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if endpoint == "" {
		endpoint = "(default) http://localhost:4318"
	}
	m.Log.Info("tracing", "exporter", "otlp/http", "endpoint", endpoint)
	return nil
}

// tracerOrNil is the engine's Tracer: nil (none) when tracing is off.
func (m *Main) tracerOrNil() tccd.Tracer {
	if m.tracer == nil {
		return nil
	}
	return m.tracer
}

// withMetrics puts the metrics' decorators around the coordinator's
// seams — its store, caller, events and message publisher — and registers
// the gauges of unfinished work, read from the store itself (in a
// cluster, limited to the records this node owns, nodeID).
func (m *Main) withMetrics(cfg *tccd.Config, store tccd.Store, caller tccd.Caller, cluster bool) (tccd.Store, tccd.Caller, error) {
	m.metrics = metrics.New(Version)
	owner := ""
	if cluster {
		owner = cfg.NodeID
	}
	if err := m.metrics.TrackUnfinished(store, owner); err != nil {
		return nil, nil, err
	}
	cfg.Events = m.metrics.Events(cfg.Events)
	if cfg.Messages != nil {
		cfg.Messages = m.metrics.Messages(cfg.Messages)
	}
	return m.metrics.Store(store), m.metrics.Caller(caller), nil
}

// serveMetrics serves GET /metrics on metrics-listen when it is set:
// without authentication, over plain HTTP, as scrapers on a private
// network expect. Else the API server serves it (see initServer).
func (m *Main) serveMetrics() error {
	if m.Config.MetricsListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", m.Config.MetricsListen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.metrics.Handler(m.Log))
	m.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go m.metricsSrv.Serve(ln)
	m.Log.Info("metrics server listening", "addr", ln.Addr().String())
	if !isLoopback(ln.Addr()) && m.sec.tokens != nil {
		m.Log.Warn("metrics-listen serves /metrics without authentication beyond loopback: keep that address on a private network")
	}
	return nil
}

// skipTrace says which requests get no span: the probes and the scrapes,
// which come every few seconds and say nothing about transactions, and
// the activity monitor's files (its API calls are traced).
func skipTrace(r *http.Request) bool {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return strings.HasPrefix(r.URL.Path, "/ui/")
}
