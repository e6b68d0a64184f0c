package tccd

import (
	"context"
	"strings"
)

// Tracer records spans of the engine's work — a decision, a participant
// call — for a tracing system. The trace context travels as a W3C
// traceparent string: taken from the request that created a transaction,
// stored with it (so that its driver, and recovery after a restart,
// continue the same trace), and passed on to participants by the Caller.
// NopTracer does nothing; an OpenTelemetry implementation is wired in
// cmd/tccd.
//
// Contract: Start and TraceParent are safe for concurrent use and never
// fail; the end function is called exactly once.
type Tracer interface {
	// Start starts a span named name, a child of the span in ctx or, when
	// ctx has none, of traceparent ("" for a new trace). It returns the
	// span's context (which carries it to the Caller) and its end.
	Start(ctx context.Context, traceparent, name string, attrs ...Attr) (context.Context, func(err error))
	// TraceParent returns the W3C traceparent of the span in ctx, "" if
	// none.
	TraceParent(ctx context.Context) string
}

// Attr is a span attribute.
type Attr struct{ Key, Value string }

// NopTracer records nothing.
type NopTracer struct{}

// Start returns ctx and an end that does nothing.
func (NopTracer) Start(ctx context.Context, _, _ string, _ ...Attr) (context.Context, func(error)) {
	return ctx, func(error) {}
}

// TraceParent returns "".
func (NopTracer) TraceParent(context.Context) string { return "" }

// logTx returns the arguments of a log line about a transaction: its id,
// the id of its trace when it has one (so that the line can be found from
// the trace, and the trace from the line), then args.
func logTx(id, traceparent string, args ...any) []any {
	out := make([]any, 0, 4+len(args))
	out = append(out, "id", id)
	if t := traceID(traceparent); t != "" {
		out = append(out, "trace_id", t)
	}
	return append(out, args...)
}

// traceID returns the trace id of a W3C traceparent
// ("00-<trace id>-<span id>-<flags>"), "" if it has none.
func traceID(traceparent string) string {
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		return ""
	}
	return parts[1]
}
