package http

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/internal/testcert"
	"github.com/tccd/tccd/pebble"
)

// serveTLS starts a Server over TLS on loopback with cfg and returns its
// https base URL.
func serveTLS(t *testing.T, coord *tccd.Coordinator, cfg ServerConfig) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(coord, cfg, nil)
	s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return "https://" + s.Addr()
}

func tlsClient(cfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func get(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func openCoordinator(t *testing.T, caller tccd.Caller) *tccd.Coordinator {
	t.Helper()
	store, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	coord := tccd.NewCoordinator(tccd.Config{ConfirmWait: 5 * time.Second, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, store, caller, nil, nil)
	if err := coord.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { coord.Close() })
	return coord
}

// TestServeTLS: the API over HTTPS, with real handshakes on loopback.
func TestServeTLS(t *testing.T) {
	ca := testcert.NewCA(t, "tccd test CA")
	coord := openCoordinator(t, NewCaller())
	base := serveTLS(t, coord, ServerConfig{TLS: &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "tccd", "127.0.0.1")}}})

	if code, err := get(tlsClient(&tls.Config{RootCAs: ca.Pool()}), base+"/readyz"); err != nil || code != 200 {
		t.Fatalf("GET /readyz over TLS = %d, %v", code, err)
	}
	resp, err := tlsClient(&tls.Config{RootCAs: ca.Pool()}).Post(base+"/api/v1/transactions", "application/json", strings.NewReader(`{}`))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("begin over TLS: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, err := get(tlsClient(&tls.Config{}), base+"/readyz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client that does not trust the CA: %v, want a certificate error", err)
	}
	// Plain HTTP on the TLS port is not served (Go answers it 400).
	if code, err := get(&http.Client{Timeout: 5 * time.Second}, "http"+strings.TrimPrefix(base, "https")+"/readyz"); err == nil && code == 200 {
		t.Fatal("plain HTTP served on the TLS port")
	}
}

// TestServeMutualTLS: with a client CA, a client without a certificate,
// or with one from another CA, is refused in the handshake.
func TestServeMutualTLS(t *testing.T) {
	ca, other := testcert.NewCA(t, "tccd test CA"), testcert.NewCA(t, "someone else")
	coord := openCoordinator(t, NewCaller())
	base := serveTLS(t, coord, ServerConfig{TLS: &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "tccd", "127.0.0.1")},
		ClientCAs:    ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert,
	}})
	good := tlsClient(&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.Issue(t, "billing")}})
	if code, err := get(good, base+"/readyz"); err != nil || code != 200 {
		t.Fatalf("client with a certificate: %d, %v", code, err)
	}
	for name, cfg := range map[string]*tls.Config{
		"no certificate":       {RootCAs: ca.Pool()},
		"another CA's":         {RootCAs: ca.Pool(), Certificates: []tls.Certificate{other.Issue(t, "mallory")}},
		"a server certificate": {RootCAs: ca.Pool(), Certificates: []tls.Certificate{other.Issue(t, "tccd", "127.0.0.1")}},
	} {
		code, err := get(tlsClient(cfg), base+"/readyz")
		if err == nil {
			t.Errorf("client with %s: answered %d, want the handshake refused", name, code)
		} else if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("client with %s: %v, want a certificate error", name, err)
		}
	}
}

// TestCallerTLS: the coordinator confirms an https participant that has a
// certificate from a private CA and requires a client certificate.
func TestCallerTLS(t *testing.T) {
	ca := testcert.NewCA(t, "participants CA")
	var mu sync.Mutex
	var clients []string
	part := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		clients = append(clients, r.TLS.PeerCertificates[0].Subject.CommonName)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	part.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "participant", "127.0.0.1")},
		ClientCAs:    ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert,
	}
	part.StartTLS()
	t.Cleanup(part.Close)
	uri := part.URL + "/reservations/1"
	if !strings.HasPrefix(uri, "https://127.0.0.1:") {
		t.Fatalf("participant URL %s", uri)
	}

	// Without the CA, or without a client certificate: the call fails
	// (and would be retried: it is not a refused destination).
	for name, cfg := range map[string]*tls.Config{
		"system roots":          nil,
		"no client certificate": {RootCAs: ca.Pool()},
	} {
		c := NewCallerWith(CallerConfig{TLS: cfg})
		r := c.Call(context.Background(), tccd.Call{Op: tccd.OpConfirm, URI: uri})
		c.Close()
		if r.Err == nil || r.Status != 0 || r.Permanent || tccd.Classify(tccd.OpConfirm, r) != tccd.VerdictRetry {
			t.Errorf("%s: %+v, want a retried TLS failure", name, r)
		}
	}

	caller := NewCallerWith(CallerConfig{TLS: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.Issue(t, "tccd")}}})
	t.Cleanup(caller.Close)
	coord := openCoordinator(t, caller)
	tx, err := coord.Begin(context.Background(), tccd.BeginRequest{Participants: []tccd.Link{{URI: uri, Expires: time.Now().Add(time.Hour)}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := coord.Confirm(context.Background(), tx.ID, nil)
	if err != nil || got.State != tccd.StateConfirmed || got.Participants[0].LastStatus != 204 {
		t.Fatalf("confirm over mutual TLS = %+v, %v", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(clients) != 1 || clients[0] != "tccd" {
		t.Fatalf("the participant saw clients %v, want [tccd]", clients)
	}
}
