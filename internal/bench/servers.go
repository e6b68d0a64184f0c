// Package bench is `tccd bench`: it runs a coordinator and participant
// processes on loopback, drives a TCC workload against them, and compares
// every figure with a null coordinator measured in the same run.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pdb "github.com/cockroachdb/pebble/v2"

	"github.com/tccd/tccd/api"
)

// NewParticipant returns the benchmark participant: every PUT or DELETE of
// /r/{id} (and forsrc's PUT /r/{id}/confirm and DELETE /r/{id}/cancel)
// succeeds with 204 after the given latency. It keeps no state: the
// benchmark measures the coordinator, not the participant.
//
// A confirm of a barrier-mode transaction (with Tcc-Barrier) speaks the
// barrier over HTTP as the participant kit does: it reports "confirmed"
// for the key to coordinator (POST /api/v1/barriers/<key>, a long poll)
// and answers 204 once the round commits, 503 if it aborts — there is no
// local transaction to hold. Without a coordinator it answers 500.
//
// PUT and DELETE of /hold/{id} are held instead, until POST /release (or
// until the caller gives up, or maxHold), then answered 204: the inflight
// workload holds confirms in flight with them while it measures the
// coordinator's memory. GET /held answers how many calls are being held.
// Holding is all the state it keeps, per handler.
func NewParticipant(latency time.Duration, coordinator string) http.Handler {
	mux := http.NewServeMux()
	b := &barrierReporter{coordinator: strings.TrimSuffix(coordinator, "/"), client: newHTTPClient(1024)}
	ok := func(w http.ResponseWriter, r *http.Request) {
		if latency > 0 {
			time.Sleep(latency)
		}
		if key := r.Header.Get(api.HeaderBarrier); key != "" && r.Method == http.MethodPut {
			w.WriteHeader(b.report(r.Context(), key))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
	mux.HandleFunc("PUT /r/{id}", ok)
	mux.HandleFunc("DELETE /r/{id}", ok)
	mux.HandleFunc("PUT /r/{id}/confirm", ok)
	mux.HandleFunc("DELETE /r/{id}/cancel", ok)
	h := &holder{release: make(chan struct{})}
	mux.HandleFunc("PUT /hold/{id}", h.hold)
	mux.HandleFunc("DELETE /hold/{id}", h.hold)
	mux.HandleFunc("POST /release", h.releaseAll)
	mux.HandleFunc("GET /held", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, h.held.Load())
	})
	return mux
}

// barrierReporter reports the benchmark participant's barrier confirms.
type barrierReporter struct {
	coordinator string
	client      *http.Client
}

// barrierPoll is how long a report waits for its round's outcome: above
// the coordinator's default barrier-wait (10s).
const barrierPoll = 15 * time.Second

var confirmedReport = []byte(`{"status":"confirmed"}`)

// report reports "confirmed" for key and returns the status to answer the
// confirm with: 204 on commit, 503 otherwise, 500 without a coordinator.
func (b *barrierReporter) report(ctx context.Context, key string) int {
	if b.coordinator == "" {
		return http.StatusInternalServerError
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		b.coordinator+"/api/v1/barriers/"+key+"?wait="+barrierPoll.String(), bytes.NewReader(confirmedReport))
	if err != nil {
		return http.StatusInternalServerError
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		return http.StatusServiceUnavailable
	}
	defer resp.Body.Close()
	var ans struct {
		Outcome string `json:"outcome"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&ans) != nil || ans.Outcome != "commit" {
		return http.StatusServiceUnavailable
	}
	return http.StatusNoContent
}

// maxHold bounds how long a participant holds a call nobody releases.
const maxHold = 5 * time.Minute

// holder holds /hold/ calls until released.
type holder struct {
	held    atomic.Int64
	once    sync.Once
	release chan struct{} // closed by POST /release; later calls pass at once
}

func (h *holder) hold(w http.ResponseWriter, r *http.Request) {
	h.held.Add(1)
	t := time.NewTimer(maxHold)
	defer t.Stop()
	select {
	case <-h.release:
	case <-t.C:
	case <-r.Context().Done():
		h.held.Add(-1)
		return
	}
	h.held.Add(-1)
	w.WriteHeader(http.StatusNoContent)
}

func (h *holder) releaseAll(w http.ResponseWriter, r *http.Request) {
	h.once.Do(func() { close(h.release) })
	w.WriteHeader(http.StatusNoContent)
}

// NullCoordinator does the same HTTP work as tccd — it accepts the same
// requests and fans the same calls out to the participants in parallel —
// with no log and no bookkeeping beyond remembering the links of a
// registered transaction until it ends. It is the baseline.
type NullCoordinator struct {
	client *http.Client
	mux    *http.ServeMux
	next   atomic.Int64
	mu     sync.Mutex
	txs    map[string][]string
	log    *pdb.DB // nil: no log
}

// NewNullCoordinator returns the baseline server. Given a Pebble database
// it is the null coordinator with a log ("null+log"): before calling the
// participants it writes the decision (the link URIs) with a synced write,
// and after them the outcome with an unsynced one — the least a durable
// coordinator must write, on the same engine as tccd, with Pebble's
// default options. It shows what the log alone costs on this machine.
func NewNullCoordinator(log *pdb.DB) *NullCoordinator {
	n := &NullCoordinator{client: newHTTPClient(1024), mux: http.NewServeMux(), txs: make(map[string][]string), log: log}
	n.mux.HandleFunc("PUT /coordinator/confirm", n.oneShot(http.MethodPut))
	n.mux.HandleFunc("PUT /coordinator/cancel", n.oneShot(http.MethodDelete))
	n.mux.HandleFunc("POST /api/v1/transactions", n.begin)
	n.mux.HandleFunc("POST /api/v1/transactions/{id}/participants", n.enlist)
	n.mux.HandleFunc("PUT /api/v1/transactions/{id}/confirm", n.end(http.MethodPut))
	n.mux.HandleFunc("PUT /api/v1/transactions/{id}/cancel", n.end(http.MethodDelete))
	n.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {})
	return n
}

func (n *NullCoordinator) ServeHTTP(w http.ResponseWriter, r *http.Request) { n.mux.ServeHTTP(w, r) }

type wireLink struct {
	URI     string `json:"uri"`
	Expires string `json:"expires"`
}

// fanOut calls every uri in parallel and reports whether all answered 2xx.
// With a log, the decision is written (synced) before and the outcome
// (unsynced) after.
func (n *NullCoordinator) fanOut(ctx context.Context, method string, uris []string) bool {
	if n.log == nil {
		return n.call(ctx, method, uris)
	}
	key := strconv.AppendInt([]byte("t/"), n.next.Add(1), 10)
	rec := []byte("d " + method + " " + strings.Join(uris, " ")) // d: decided
	if err := n.log.Set(key, rec, pdb.Sync); err != nil {
		return false
	}
	ok := n.call(ctx, method, uris)
	rec[0] = 'o' // o: over, participants settled; f: failed
	if !ok {
		rec[0] = 'f'
	}
	return n.log.Set(key, rec, pdb.NoSync) == nil && ok
}

func (n *NullCoordinator) call(ctx context.Context, method string, uris []string) bool {
	var wg sync.WaitGroup
	var failed atomic.Bool
	for _, u := range uris {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, method, u, nil)
			req.Header.Set("Accept", "application/tcc")
			resp, err := n.client.Do(req)
			if err != nil {
				failed.Store(true)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	return !failed.Load()
}

func (n *NullCoordinator) oneShot(method string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ParticipantLinks []wireLink `json:"participantLinks"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		uris := make([]string, len(req.ParticipantLinks))
		for i, l := range req.ParticipantLinks {
			uris[i] = l.URI
		}
		if !n.fanOut(r.Context(), method, uris) {
			w.WriteHeader(http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (n *NullCoordinator) begin(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	id := strconv.FormatInt(n.next.Add(1), 10)
	n.mu.Lock()
	n.txs[id] = nil
	n.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"id":%q,"state":"active"}`, id)
}

func (n *NullCoordinator) enlist(w http.ResponseWriter, r *http.Request) {
	var l wireLink
	if err := json.NewDecoder(r.Body).Decode(&l); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.PathValue("id")
	n.mu.Lock()
	links, ok := n.txs[id]
	if ok {
		n.txs[id] = append(links, l.URI)
	}
	n.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"id":%q,"state":"active"}`, id)
}

func (n *NullCoordinator) end(method string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		id := r.PathValue("id")
		n.mu.Lock()
		uris, ok := n.txs[id]
		delete(n.txs, id)
		n.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		if !n.fanOut(r.Context(), method, uris) {
			w.WriteHeader(http.StatusConflict)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"state":"done"}`, id)
	}
}

// newHTTPClient returns a client with enough idle keep-alive connections
// per host for the given concurrency.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * 4,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
	}, Timeout: 60 * time.Second}
}

// Serve runs handler on addr until ctx ends, printing "listening <addr>"
// to out once it accepts connections. It is the body of the hidden
// `tccd bench-participant` and `tccd bench-null` commands.
func Serve(ctx context.Context, addr string, handler http.Handler, out io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(out, "listening %s\n", ln.Addr())
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// linkBody renders an Atomikos request body for the given URIs.
func linkBody(buf *bytes.Buffer, uris []string, expires string) {
	buf.WriteString(`{"participantLinks":[`)
	for i, u := range uris {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"uri":"`)
		buf.WriteString(u)
		buf.WriteString(`","expires":"`)
		buf.WriteString(expires)
		buf.WriteString(`"}`)
	}
	buf.WriteString(`]}`)
}

// forsrcBody renders the body of forsrc's POST /tcc/api/v1/tcc/ for the
// given URIs.
func forsrcBody(buf *bytes.Buffer, uris []string, expires string) {
	buf.WriteString(`{"expire":"`)
	buf.WriteString(expires)
	buf.WriteString(`","tccLinks":[`)
	for i, u := range uris {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"uri":"`)
		buf.WriteString(u)
		buf.WriteString(`","expire":"`)
		buf.WriteString(expires)
		buf.WriteString(`"}`)
	}
	buf.WriteString(`]}`)
}

func linkJSON(buf *bytes.Buffer, uri, expires string) {
	buf.WriteString(`{"uri":"`)
	buf.WriteString(uri)
	buf.WriteString(`","expires":"`)
	buf.WriteString(expires)
	buf.WriteString(`"}`)
}

// idFrom extracts "id" from a small JSON object without a full decode.
func idFrom(body []byte) string {
	i := bytes.Index(body, []byte(`"id":"`))
	if i < 0 {
		return ""
	}
	rest := body[i+6:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return strings.Clone(string(rest[:j]))
}
