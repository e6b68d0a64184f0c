package main

import (
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tccd/tccd/internal/testpart"
	"github.com/tccd/tccd/internal/testproc"
)

// otlpReceiver is an OTLP/HTTP trace receiver on loopback: it decodes the
// protobuf export requests tccd sends and keeps their spans.
type otlpReceiver struct {
	mu       sync.Mutex
	spans    []*tracepb.Span
	services map[string]bool
	errs     []error
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(raw, &req)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if ct := r.Header.Get("Content-Type"); err == nil && ct != "application/x-protobuf" {
		err = fmt.Errorf("content type %q", ct)
	}
	if err != nil {
		o.errs = append(o.errs, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, rs := range req.ResourceSpans {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				o.services[kv.GetValue().GetStringValue()] = true
			}
		}
		for _, ss := range rs.ScopeSpans {
			o.spans = append(o.spans, ss.Spans...)
		}
	}
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// trace returns the spans received of trace id (hex).
func (o *otlpReceiver) trace(id string) []*tracepb.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range o.spans {
		if hex.EncodeToString(s.TraceId) == id {
			out = append(out, s)
		}
	}
	return out
}

func spanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			if s := kv.GetValue().GetStringValue(); s != "" {
				return s
			}
			return fmt.Sprint(kv.GetValue().GetIntValue())
		}
	}
	return ""
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestTraceProcess runs a real tccd process with tracing on, exporting to
// an in-process OTLP/HTTP receiver: the initiator's trace continues
// through tccd's request spans, its decision and every confirm call, the
// participants receive a traceparent of that trace, and the log lines
// about the transaction carry its trace id.
func TestTraceProcess(t *testing.T) {
	rcv := &otlpReceiver{services: map[string]bool{}}
	collector := httptest.NewServer(rcv) // 127.0.0.1
	defer collector.Close()
	// The child inherits the test's environment.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_SERVICE_NAME", "tccd-under-test")

	r := &txRig{t: t, c: &http.Client{Timeout: 30 * time.Second}}
	r.p1 = testproc.StartParticipant(t, bins["testpart"])
	r.p2 = testproc.StartParticipant(t, bins["testpart"])
	co := testproc.StartTccd(t, bins["tccd"], "--data", t.TempDir(), "--tracing", "--retry-min", "10ms", "--retry-max", "50ms")
	if len(logRecords(co, "tracing")) != 1 {
		t.Fatalf("no 'tracing' line at start:\n%s", co.Log())
	}
	// p1's first confirm fails: a retry, and a warning about it.
	setFault(t, r.c, r.p1, &testpart.Fault{Op: "confirm", Count: 1, Status: http.StatusServiceUnavailable})

	traceID := randomHex(t, 16)
	beginSpan, confirmSpan := randomHex(t, 8), randomHex(t, 8)
	parent := func(span string) http.Header {
		return http.Header{"Traceparent": {"00-" + traceID + "-" + span + "-01"}}
	}
	id := r.begin(co.URL(), parent(beginSpan))
	if code := r.decide(co.URL(), id, "confirm", parent(confirmSpan)); code != http.StatusOK {
		t.Fatalf("confirm: %d", code)
	}

	// The participants were called within the trace, by tccd's spans.
	var callParents []string
	for _, p := range []*testproc.Proc{r.p1, r.p2} {
		for _, res := range reservations(t, r.c, p) {
			parts := strings.Split(res.TraceParent, "-")
			if len(parts) != 4 || parts[1] != traceID || parts[2] == beginSpan || parts[2] == confirmSpan {
				t.Fatalf("participant %s got traceparent %q, want one of trace %s from a span of tccd's", p.Addr, res.TraceParent, traceID)
			}
			callParents = append(callParents, parts[2])
		}
	}

	// The receiver gets the request spans, the decision and the confirm
	// calls, all in the initiator's trace.
	var byName map[string][]*tracepb.Span
	waitUntil(t, "the spans of the trace", 30*time.Second, func() bool {
		byName = map[string][]*tracepb.Span{}
		for _, s := range rcv.trace(traceID) {
			byName[s.Name] = append(byName[s.Name], s)
		}
		return len(byName["POST /api/v1/transactions"]) == 1 && len(byName["PUT /api/v1/transactions/{id}/confirm"]) == 1 &&
			len(byName["tccd.decide"]) == 1 && len(byName["tccd.participant.confirm"]) == 3
	})
	begin, confirm := byName["POST /api/v1/transactions"][0], byName["PUT /api/v1/transactions/{id}/confirm"][0]
	decide := byName["tccd.decide"][0]
	for _, c := range []struct {
		what         string
		span         *tracepb.Span
		parent, kind string
	}{
		{"the begin request", begin, beginSpan, "SPAN_KIND_SERVER"},
		{"the confirm request", confirm, confirmSpan, "SPAN_KIND_SERVER"},
		{"the decision", decide, hex.EncodeToString(confirm.SpanId), "SPAN_KIND_INTERNAL"},
	} {
		if got := hex.EncodeToString(c.span.ParentSpanId); got != c.parent || c.span.Kind.String() != c.kind {
			t.Errorf("%s: span %s parent %s kind %s, want parent %s kind %s", c.what, c.span.Name, got, c.span.Kind, c.parent, c.kind)
		}
	}
	if got := spanAttr(confirm, "http.response.status_code"); got != "200" {
		t.Errorf("confirm request span status %q", got)
	}
	if spanAttr(decide, "tccd.transaction.id") != id || spanAttr(decide, "tccd.decision") != "confirm" {
		t.Errorf("decision span attributes %v", decide.Attributes)
	}
	callSpans := map[string]bool{}
	for _, s := range byName["tccd.participant.confirm"] {
		callSpans[hex.EncodeToString(s.SpanId)] = true
		if hex.EncodeToString(s.ParentSpanId) != hex.EncodeToString(begin.SpanId) || s.Kind != tracepb.Span_SPAN_KIND_CLIENT {
			t.Errorf("confirm call span %x: parent %x kind %v, want the begin request's span, client", s.SpanId, s.ParentSpanId, s.Kind)
		}
		if spanAttr(s, "tccd.transaction.id") != id || !strings.HasPrefix(spanAttr(s, "url.full"), "http://127.0.0.1:") {
			t.Errorf("confirm call span attributes %v", s.Attributes)
		}
	}
	for _, p := range callParents {
		if !callSpans[p] {
			t.Errorf("a participant was called from span %s, not one of the confirm call spans", p)
		}
	}
	if !rcv.services["tccd-under-test"] {
		t.Errorf("service names %v, want OTEL_SERVICE_NAME's", rcv.services)
	}
	if len(rcv.errs) > 0 {
		t.Errorf("the receiver refused exports: %v", rcv.errs)
	}

	// The warning about p1's failed confirm names the transaction and
	// its trace.
	warned := false
	for _, rec := range logRecords(co, "participant call failed") {
		warned = warned || rec["id"] == id && rec["trace_id"] == traceID
	}
	if !warned {
		t.Errorf("no log line about the failed call with id %s and trace_id %s:\n%s", id, traceID, co.Log())
	}
	if err := co.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}
