package http

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/tccd/tccd"
)

// fakeResolver answers from a table, and records what it was asked.
type fakeResolver struct {
	mu    sync.Mutex
	addrs map[string][]string
	asked []string
}

func (f *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, host)
	list, ok := f.addrs[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]netip.Addr, len(list))
	for i, a := range list {
		out[i] = netip.MustParseAddr(a)
	}
	return out, nil
}

// TestCallerDialGuard: the Caller checks the address each connection
// goes to, after name resolution, so a name cannot smuggle a refused
// address in; refusals are permanent, connection failures are not.
func TestCallerDialGuard(t *testing.T) {
	var mu sync.Mutex
	var hosts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	res := &fakeResolver{addrs: map[string][]string{
		"svc.test":      {"127.0.0.1"},
		"metadata.test": {"169.254.169.254"},
		"v6meta.test":   {"fd00:ec2::254"},
		"zero.test":     {"0.0.0.0"},
		"mixed.test":    {"169.254.169.254", "127.0.0.1"},
		"other.test":    {"127.0.0.3"},
	}}
	only127001, _ := tccd.ParseAllowlist([]string{"127.0.0.1"})
	only127002, _ := tccd.ParseAllowlist([]string{"127.0.0.2"})
	names, _ := tccd.ParseAllowlist([]string{"svc.test", "http://127.0.0.1:*"})

	tests := []struct {
		name      string
		allow     *tccd.Allowlist
		uri       string
		status    int    // 0: no answer
		permanent bool   // a refusal
		errHas    string // substring of the error
	}{
		{"name to loopback, no rules", nil, fmt.Sprintf("http://svc.test:%d/r", port), 204, false, ""},
		{"name to loopback, address rule", only127001, fmt.Sprintf("http://svc.test:%d/r", port), 204, false, ""},
		{"name rule", names, fmt.Sprintf("http://svc.test:%d/r", port), 204, false, ""},
		{"one refused address of two", nil, fmt.Sprintf("http://mixed.test:%d/r", port), 204, false, ""},
		{"name to metadata", nil, fmt.Sprintf("http://metadata.test:%d/r", port), 0, true, "cloud metadata"},
		{"name to IPv6 metadata", nil, fmt.Sprintf("http://v6meta.test:%d/r", port), 0, true, "cloud metadata"},
		{"name to 0.0.0.0", nil, fmt.Sprintf("http://zero.test:%d/r", port), 0, true, "unspecified"},
		{"name outside the rules", only127001, fmt.Sprintf("http://other.test:%d/r", port), 0, true, "matches no participant-allow rule"},
		{"name rule is not an address rule", names, fmt.Sprintf("http://other.test:%d/r", port), 0, true, "matches no participant-allow rule"},
		{"localhost, real resolver, 127.0.0.2 only", only127002, fmt.Sprintf("http://localhost:%d/r", port), 0, true, "matches no participant-allow rule"},
		{"link refused before dialling", names, fmt.Sprintf("https://127.0.0.1:%d/r", port), 0, true, "not an allowed destination"},
		{"allowed address, nothing listening", nil, fmt.Sprintf("http://svc.test:%d/r", closedPort), 0, false, "refused"},
		{"unknown name", nil, fmt.Sprintf("http://nxdomain.test:%d/r", port), 0, false, "no such host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := CallerConfig{Allow: tt.allow, Resolver: res}
			if strings.Contains(tt.uri, "localhost") {
				cfg.Resolver = nil // the system's: /etc/hosts
			}
			c := NewCallerWith(cfg)
			defer c.Close()
			r := c.Call(context.Background(), tccd.Call{Op: tccd.OpConfirm, URI: tt.uri})
			if r.Status != tt.status || r.Permanent != tt.permanent {
				t.Fatalf("Call(%s) = status %d permanent %v err %v; want %d, %v", tt.uri, r.Status, r.Permanent, r.Err, tt.status, tt.permanent)
			}
			if tt.errHas != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), tt.errHas)) {
				t.Fatalf("Call(%s) error %v, want %q", tt.uri, r.Err, tt.errHas)
			}
			want := tccd.VerdictDone
			switch {
			case tt.permanent:
				want = tccd.VerdictPermanent
			case tt.status == 0:
				want = tccd.VerdictRetry
			}
			if v := tccd.Classify(tccd.OpConfirm, r); v != want {
				t.Fatalf("verdict %d, want %d", v, want)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	// Every answer came from the one server, under the name in the URI.
	want := []string{fmt.Sprintf("svc.test:%d", port), fmt.Sprintf("svc.test:%d", port), fmt.Sprintf("svc.test:%d", port), fmt.Sprintf("mixed.test:%d", port)}
	if strings.Join(hosts, " ") != strings.Join(want, " ") {
		t.Fatalf("the server saw Host %v, want %v", hosts, want)
	}
}

// ctxTracer is a Tracer whose span is a traceparent string in the context.
type ctxTracer struct{}

type spanKey struct{}

func (ctxTracer) Start(ctx context.Context, traceparent, _ string, _ ...tccd.Attr) (context.Context, func(error)) {
	return context.WithValue(ctx, spanKey{}, traceparent), func(error) {}
}

func (ctxTracer) TraceParent(ctx context.Context) string {
	s, _ := ctx.Value(spanKey{}).(string)
	return s
}

// TestCallerTraceParent: a call carries the traceparent of the span in its
// context, and none when there is none or the Caller has no Tracer.
func TestCallerTraceParent(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	got := make(chan []string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Values("traceparent")
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name   string
		tracer tccd.Tracer
		span   string
		want   string
	}{
		{"traced", ctxTracer{}, tp, tp},
		{"no span", ctxTracer{}, "", ""},
		{"no tracer", nil, tp, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCallerWith(CallerConfig{Tracer: tc.tracer})
			defer c.Close()
			ctx, _ := ctxTracer{}.Start(context.Background(), tc.span, "call")
			if r := c.Call(ctx, tccd.Call{Op: tccd.OpConfirm, URI: srv.URL + "/r/1"}); r.Status != http.StatusNoContent {
				t.Fatalf("call: %+v", r)
			}
			h := <-got
			if tc.want == "" && len(h) != 0 || tc.want != "" && (len(h) != 1 || h[0] != tc.want) {
				t.Errorf("traceparent headers %q, want %q", h, tc.want)
			}
		})
	}
}
