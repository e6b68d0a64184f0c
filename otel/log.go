package otel

import (
	"context"
	"log/slog"

	otelapi "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

// LogHandler wraps h: a record logged with a context that holds a span
// (a request's, for instance) gets the span's trace id as "trace_id",
// unless the line names one already. The engine's lines about a
// transaction carry the id of its stored trace themselves.
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && !hasTraceID(r) {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func hasTraceID(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == "trace_id"
		return !found
	})
	return found
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler {
	return logHandler{h.Handler.WithGroup(name)}
}

// LogErrors sends the errors the OTel SDK reports (a collector that cannot
// be reached, spans dropped) to log as warnings, instead of the SDK's
// default of plain lines on standard error. The SDK keeps one error
// handler per process, so this is process-wide: cmd/tccd calls it once
// tracing is on.
func LogErrors(log *slog.Logger) {
	otelapi.SetErrorHandler(otelapi.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: the OpenTelemetry SDK reports an error", "err", err)
	}))
}
