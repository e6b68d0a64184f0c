// Package otel is tccd's OpenTelemetry tracing: a tccd.Tracer over the
// OTel Go SDK exporting over OTLP/HTTP (configured by the standard OTEL_*
// environment variables), the HTTP middleware that starts a span per
// request from the initiator's W3C traceparent, and a log handler that
// adds the trace id to log lines made with a traced context.
//
// It keeps no global state: its provider is its own, not OTel's global
// one, so that two Tracers (two servers in one test process) stay apart.
package otel

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tccd/tccd"
)

// ScopeName names the instrumentation scope of tccd's spans.
const ScopeName = "github.com/tccd/tccd"

// Tracer is the OpenTelemetry tccd.Tracer. Its spans go to the exporter of
// its provider, batched; Shutdown flushes them.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TraceContext
}

var _ tccd.Tracer = (*Tracer)(nil)

// New returns a Tracer that exports over OTLP/HTTP (protobuf) as the
// standard environment variables say: OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), _HEADERS, _TIMEOUT,
// _COMPRESSION, _CERTIFICATE, _CLIENT_CERTIFICATE and _CLIENT_KEY; the
// sampler from OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default:
// parent-based, always on); the batching from OTEL_BSP_*; the resource
// from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, service.name
// defaulting to "tccd" and service.version to version. getenv reads
// the environment (for the checks of CheckEnv; the SDK reads the
// process's own).
func New(ctx context.Context, version string, getenv func(string) string) (*Tracer, error) {
	if err := CheckEnv(getenv); err != nil {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res, err := resource.New(ctx,
		// Later options win: the environment overrides the defaults.
		resource.WithAttributes(attribute.String("service.name", "tccd"), attribute.String("service.version", version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("otel resource: %w", err)
	}
	return NewWith(sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))), nil
}

// NewWith returns a Tracer over the given provider (a test's, with an
// in-memory exporter). Shutdown shuts the provider down.
func NewWith(provider *sdktrace.TracerProvider) *Tracer {
	return &Tracer{provider: provider, tracer: provider.Tracer(ScopeName)}
}

// CheckEnv reports OTEL_* settings tccd cannot honour: it exports traces
// over OTLP/HTTP with protobuf only (the gRPC exporter is not linked).
func CheckEnv(getenv func(string) string) error {
	var errs []error
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		v := getenv(k)
		if v == "" {
			continue
		}
		if v != "http/protobuf" {
			errs = append(errs, fmt.Errorf("%s=%s: tccd exports traces over OTLP/HTTP with protobuf only (http/protobuf)", k, v))
		}
		break // the first one set is the one that applies
	}
	if v := getenv("OTEL_TRACES_EXPORTER"); v != "" && v != "otlp" && v != "none" {
		errs = append(errs, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: tccd exports traces with otlp only", v))
	}
	return errors.Join(errs...)
}

// Enabled says whether tracing is on: asked for (the tracing option), or
// OTEL_TRACES_EXPORTER=otlp; never when OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none.
func Enabled(asked bool, getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch getenv("OTEL_TRACES_EXPORTER") {
	case "otlp":
		return true
	case "none":
		return false
	}
	return asked
}

// Start starts a span named name: a child of the span in ctx, or else of
// traceparent (a transaction's stored trace context), or else the root
// of a new trace. Spans of calls to participants are client spans, of
// message publishes producer spans; others are internal.
func (t *Tracer) Start(ctx context.Context, traceparent, name string, attrs ...tccd.Attr) (context.Context, func(error)) {
	if traceparent != "" && !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = t.prop.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
	}
	kv := make([]attribute.KeyValue, len(attrs))
	for i, a := range attrs {
		kv[i] = attribute.String(a.Key, a.Value)
	}
	kind := trace.SpanKindInternal
	switch {
	case strings.HasPrefix(name, "tccd.participant."):
		kind = trace.SpanKindClient
	case strings.HasPrefix(name, "tccd.message."):
		kind = trace.SpanKindProducer
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(kv...))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// TraceParent returns the W3C traceparent of the span in ctx, "" if none.
func (t *Tracer) TraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	t.prop.Inject(ctx, c)
	return c["traceparent"]
}

// Shutdown exports the spans still buffered, within ctx, and stops.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("otel: %w", err)
	}
	return nil
}
