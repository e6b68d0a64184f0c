package otel_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/otel"
)

const (
	initiatorTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	initiatorSpan  = "00f067aa0ba902b7"
	initiator      = "00-" + initiatorTrace + "-" + initiatorSpan + "-01"
)

// newTracer returns a Tracer over the real SDK, its spans kept in memory.
func newTracer(t *testing.T) (*otel.Tracer, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr := otel.NewWith(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	return tr, exp
}

func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func TestStart(t *testing.T) {
	tr, exp := newTracer(t)
	for _, tc := range []struct {
		name        string
		ctx         func() context.Context
		traceparent string
		wantTrace   string // "" for a new trace
		wantParent  string
		kind        trace.SpanKind
		err         error
	}{
		{"a transaction's stored trace", context.Background, initiator, initiatorTrace, initiatorSpan, trace.SpanKindInternal, nil},
		{
			"the span in ctx wins over the stored trace",
			func() context.Context {
				ctx, _ := tr.Start(context.Background(), "00-11111111111111111111111111111111-2222222222222222-01", "request")
				return ctx
			},
			initiator, "11111111111111111111111111111111", "", trace.SpanKindClient, nil,
		},
		{"no trace at all: a new one", context.Background, "", "", "", trace.SpanKindProducer, nil},
		{"a broken traceparent: a new trace", context.Background, "00-zz-yy-01", "", "", trace.SpanKindInternal, errors.New("refused")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp.Reset()
			name := map[trace.SpanKind]string{trace.SpanKindInternal: "tccd.decide", trace.SpanKindClient: "tccd.participant.confirm", trace.SpanKindProducer: "tccd.message.publish"}[tc.kind]
			ctx, end := tr.Start(tc.ctx(), tc.traceparent, name, tccd.Attr{Key: "tccd.transaction.id", Value: "T1"})
			tp := tr.TraceParent(ctx)
			end(tc.err)
			spans := exp.GetSpans()
			var s tracetest.SpanStub
			for _, sp := range spans {
				if sp.Name == name {
					s = sp
				}
			}
			if s.Name == "" {
				t.Fatalf("no span %s among %v", name, spans)
			}
			if tc.wantTrace != "" && s.SpanContext.TraceID().String() != tc.wantTrace {
				t.Errorf("trace %s, want %s", s.SpanContext.TraceID(), tc.wantTrace)
			}
			if tc.wantTrace == "" && (s.SpanContext.TraceID().String() == initiatorTrace || s.Parent.IsValid()) {
				t.Errorf("want a new root span, got trace %s parent %v", s.SpanContext.TraceID(), s.Parent.SpanID())
			}
			if tc.wantParent != "" && s.Parent.SpanID().String() != tc.wantParent {
				t.Errorf("parent %s, want %s", s.Parent.SpanID(), tc.wantParent)
			}
			if s.SpanKind != tc.kind {
				t.Errorf("kind %v, want %v", s.SpanKind, tc.kind)
			}
			if got := attr(s, "tccd.transaction.id"); got != "T1" {
				t.Errorf("tccd.transaction.id = %q", got)
			}
			if want := "00-" + s.SpanContext.TraceID().String() + "-" + s.SpanContext.SpanID().String() + "-01"; tp != want {
				t.Errorf("TraceParent = %q, want %q", tp, want)
			}
			if (tc.err != nil) != (s.Status.Code == codes.Error) {
				t.Errorf("status %v with error %v", s.Status, tc.err)
			}
		})
	}
	if got := tr.TraceParent(context.Background()); got != "" {
		t.Errorf("TraceParent of no span = %q", got)
	}
}

// TestMiddleware: a request's span continues the initiator's trace, is
// named after the route, records the status, and is what the handler's
// context holds; skipped requests get none.
func TestMiddleware(t *testing.T) {
	tr, exp := newTracer(t)
	var inHandler string
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /api/v1/transactions/{id}/confirm", func(w http.ResponseWriter, r *http.Request) {
		inHandler = tr.TraceParent(r.Context())
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /boom", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	h := tr.Middleware(mux, func(r *http.Request) bool { return r.URL.Path == "/healthz" })

	for _, tc := range []struct {
		method, path, traceparent string
		name                      string // "" for no span
		status                    int
		fromInitiator, error      bool
	}{
		{"PUT", "/api/v1/transactions/T1/confirm", initiator, "PUT /api/v1/transactions/{id}/confirm", 202, true, false},
		{"PUT", "/api/v1/transactions/T1/confirm", "", "PUT /api/v1/transactions/{id}/confirm", 202, false, false},
		{"GET", "/boom", "", "GET /boom", 500, false, true},
		{"GET", "/nowhere", "", "GET", 404, false, false},
		{"GET", "/healthz", initiator, "", 200, false, false},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			exp.Reset()
			inHandler = ""
			req := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.traceparent != "" {
				req.Header.Set("traceparent", tc.traceparent)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			spans := exp.GetSpans()
			if tc.name == "" {
				if len(spans) != 0 {
					t.Fatalf("skipped request has spans %v", spans)
				}
				return
			}
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			s := spans[0]
			if s.Name != tc.name || s.SpanKind != trace.SpanKindServer {
				t.Errorf("span %q kind %v, want %q server", s.Name, s.SpanKind, tc.name)
			}
			if got := attr(s, "http.response.status_code"); got != strconv.Itoa(tc.status) {
				t.Errorf("status attribute %q, want %d", got, tc.status)
			}
			if fromInit := s.SpanContext.TraceID().String() == initiatorTrace && s.Parent.SpanID().String() == initiatorSpan; fromInit != tc.fromInitiator {
				t.Errorf("span of trace %s parent %s: from the initiator %v, want %v", s.SpanContext.TraceID(), s.Parent.SpanID(), fromInit, tc.fromInitiator)
			}
			if (s.Status.Code == codes.Error) != tc.error {
				t.Errorf("span status %v", s.Status)
			}
			if inHandler != "" && !strings.Contains(inHandler, s.SpanContext.SpanID().String()) {
				t.Errorf("handler saw traceparent %q, not its request's span %s", inHandler, s.SpanContext.SpanID())
			}
		})
	}
}

func TestLogHandler(t *testing.T) {
	tr, _ := newTracer(t)
	var buf bytes.Buffer
	log := slog.New(otel.LogHandler(slog.NewTextHandler(&buf, nil))).With("component", "test")
	ctx, end := tr.Start(context.Background(), initiator, "request")
	defer end(nil)
	for _, tc := range []struct {
		name string
		log  func()
		want string // "" for no trace_id
	}{
		{"traced context", func() { log.InfoContext(ctx, "hello", "id", "T1") }, "trace_id=" + initiatorTrace},
		{"no context", func() { log.Info("hello", "id", "T1") }, ""},
		{"trace id given already", func() { log.InfoContext(ctx, "hello", "trace_id", "abc") }, "trace_id=abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf.Reset()
			tc.log()
			line := buf.String()
			if n := strings.Count(line, "trace_id="); tc.want == "" && n != 0 || tc.want != "" && (n != 1 || !strings.Contains(line, tc.want)) {
				t.Errorf("line %q, want %q once", line, tc.want)
			}
			if !strings.Contains(line, "component=test") {
				t.Errorf("line %q lost the logger's attributes", line)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name    string
		asked   bool
		env     func(string) string
		enabled bool
		bad     bool
	}{
		{"off by default", false, env(), false, false},
		{"asked for", true, env(), true, false},
		{"the standard exporter variable", false, env("OTEL_TRACES_EXPORTER", "otlp"), true, false},
		{"exporter none wins", true, env("OTEL_TRACES_EXPORTER", "none"), false, false},
		{"SDK disabled wins", true, env("OTEL_SDK_DISABLED", "true", "OTEL_TRACES_EXPORTER", "otlp"), false, false},
		{"endpoint alone does not turn it on", false, env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"), false, false},
		{"grpc is not linked", true, env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), true, true},
		{"the traces protocol overrides", true, env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), true, false},
		{"an exporter tccd lacks", true, env("OTEL_TRACES_EXPORTER", "zipkin"), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := otel.Enabled(tc.asked, tc.env); got != tc.enabled {
				t.Errorf("Enabled = %v, want %v", got, tc.enabled)
			}
			if err := otel.CheckEnv(tc.env); (err != nil) != tc.bad {
				t.Errorf("CheckEnv = %v, want an error %v", err, tc.bad)
			}
		})
	}
}

// TestMiddlewareKeepsTheWriter: behind the middleware a handler can still
// flush (the event stream), set deadlines and hijack (WebSockets) through
// http.ResponseController.
func TestMiddlewareKeepsTheWriter(t *testing.T) {
	tr, exp := newTracer(t)
	errs := make(chan error, 3)
	srv := httptest.NewServer(tr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		errs <- rc.SetWriteDeadline(time.Now().Add(time.Minute))
		if r.URL.Path == "/hijack" {
			conn, brw, err := rc.Hijack()
			errs <- err
			if err == nil {
				brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: close\r\n\r\n")
				brw.Flush()
				conn.Close()
			}
			return
		}
		w.Write([]byte("data: 1\n\n"))
		errs <- rc.Flush()
	}), nil))
	defer srv.Close()
	for _, path := range []string{"/stream", "/hijack"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
	}
	// The span ends when the handler returns, which may be after the
	// client has read the answer.
	var hijacked string
	for deadline := time.Now().Add(5 * time.Second); hijacked == "" && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, s := range exp.GetSpans() {
			if attr(s, "url.path") == "/hijack" {
				hijacked = attr(s, "http.response.status_code")
			}
		}
	}
	if hijacked != "101" {
		t.Errorf("hijacked request's span status %q, want 101", hijacked)
	}
}
