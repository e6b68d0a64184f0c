// Package http is tccd's HTTP face: the REST server (native API under
// /api/v1 and the Atomikos TCC endpoints under /coordinator), the
// problem+json error mapping, and the outbound calls to participants.
package http

import (
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3 document of the API.
func OpenAPI() []byte { return openAPI }

// Defaults for ServerConfig.
const (
	DefaultMaxBody           = 1 << 20
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultListLimit         = 50
	MaxListLimit             = 1000
)

// ServerConfig tunes the HTTP server.
type ServerConfig struct {
	MaxBody           int64
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// RateLimit, when positive, is how many requests per second each
	// client may make on average, and RateBurst how many at once (0: one
	// second's worth, at least 1). A client is its token's name, or its
	// remote address when authentication is off or its token is bad.
	// Over the limit, requests get 429 with Retry-After. Probes are not
	// limited.
	RateLimit float64
	RateBurst int
	// Tokens, when set, turns authentication on: every request but the
	// probes and the OpenAPI document needs a bearer token of the set.
	Tokens *Tokens
	// TLS, when set, makes Serve speak HTTPS with it (set ClientAuth and
	// ClientCAs for mutual TLS).
	TLS *tls.Config
	// STOMP, when set, serves forsrc's STOMP endpoint of the barrier at
	// /ws/tcc (it authenticates by itself).
	STOMP *BarrierSTOMP
	// MaxStreams bounds the event streams (GET /api/v1/events) one client
	// may have open at once (0: DefaultMaxStreams); StreamKeepAlive is how
	// often an idle stream gets a comment line (0: DefaultStreamKeepAlive).
	MaxStreams      int
	StreamKeepAlive time.Duration
	// UI, when set, serves the activity monitor (package ui) at /ui/.
	// Its files are open, like the probes: they hold no data, and the
	// page sends a token with every API call it makes.
	UI http.Handler
	// Metrics, when set, is served at GET /metrics (the Prometheus
	// scrape), to admins when authentication is on. Not behind the
	// readiness check: a scrape during recovery is answered.
	Metrics http.Handler
	// Middleware, when set, wraps the server's handler: it sees every
	// request before routing (tracing starts a span there).
	Middleware func(http.Handler) http.Handler
}

// WithDefaults fills zero fields.
func (c ServerConfig) WithDefaults() ServerConfig {
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.StreamKeepAlive == 0 {
		c.StreamKeepAlive = DefaultStreamKeepAlive
	}
	return c
}

// Server serves the coordinator's API.
type Server struct {
	coord   *tccd.Coordinator
	cfg     ServerConfig
	log     *slog.Logger
	mux     *http.ServeMux
	limiter *limiter // nil: no rate limit
	srv     *http.Server
	ln      net.Listener
	errc    chan error
	streams *streams
}

// NewServer returns a server over coord. Start it with Serve or use it as
// an http.Handler.
func NewServer(coord *tccd.Coordinator, cfg ServerConfig, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{coord: coord, cfg: cfg.WithDefaults(), log: log, mux: http.NewServeMux(), streams: newStreams()}
	if s.cfg.RateLimit > 0 {
		s.limiter = newLimiter(s.cfg.RateLimit, s.cfg.RateBurst)
	}
	s.routes()
	return s
}

// route is one entry of the routing table: a method, a path pattern (with
// {id} wildcards, as in the OpenAPI document), the role it needs when
// authentication is on, and its handler.
type route struct {
	method  string
	path    string
	role    tccd.Role // "" for everyone, without a token
	handler http.Handler
}

// Who may call what, when authentication is on: probes and the document
// are open; a client may use the Atomikos endpoints and work on its own
// transactions (the coordinator keeps it to those), and a participant
// with a client token may ask for its own outcome in any transaction
// whose link URI it names; listing all,
// resolving and purging are for admins. An admin may do everything.
const (
	roleOpen   tccd.Role = ""
	roleClient           = tccd.RoleClient
	roleAdmin            = tccd.RoleAdmin
)

// routeTable lists every route the server serves. The OpenAPI test checks
// the document's operations against it.
func (s *Server) routeTable() []route {
	return []route{
		{http.MethodGet, "/healthz", roleOpen, http.HandlerFunc(s.healthz)},
		{http.MethodGet, "/readyz", roleOpen, http.HandlerFunc(s.readyz)},
		{http.MethodGet, "/api/v1/openapi.json", roleOpen, http.HandlerFunc(s.openapi)},
		{http.MethodPut, "/coordinator/confirm", roleClient, s.atomikos(s.atomikosConfirm)},
		{http.MethodPut, "/coordinator/cancel", roleClient, s.atomikos(s.atomikosCancel)},
		{http.MethodPost, "/api/v1/transactions", roleClient, s.native(s.begin)},
		{http.MethodGet, "/api/v1/transactions", roleAdmin, s.native(s.list)},
		{http.MethodGet, "/api/v1/transactions/{id}", roleClient, s.native(s.get)},
		{http.MethodPost, "/api/v1/transactions/{id}/participants", roleClient, s.native(s.enlist)},
		{http.MethodPost, "/api/v1/transactions/{id}/messages", roleClient, s.native(s.enlistMessage)},
		{http.MethodPost, "/api/v1/transactions/{id}/participants/outcome", roleClient, s.native(s.participantOutcome)},
		{http.MethodPut, "/api/v1/transactions/{id}/confirm", roleClient, s.native(s.confirm)},
		{http.MethodPut, "/api/v1/transactions/{id}/cancel", roleClient, s.native(s.cancel)},
		{http.MethodPut, "/api/v1/transactions/{id}/resolve", roleAdmin, s.native(s.resolve)},
		{http.MethodPost, "/api/v1/admin/purge", roleAdmin, s.native(s.purge)},
		{http.MethodGet, "/api/v1/events", roleClient, s.native(s.events)},
		{http.MethodPost, "/api/v1/barriers/{key}", roleClient, s.native(s.barrierReport)},
		{http.MethodPost, "/tcc/api/v1/tcc", roleClient, s.forsrc(s.forsrcCreate)},
		{http.MethodPost, "/tcc/api/v1/tcc/{$}", roleClient, s.forsrc(s.forsrcCreate)},
		{http.MethodPut, "/tcc/api/v1/tcc/confirm/{id}", roleClient, s.forsrc(s.forsrcConfirm)},
		{http.MethodPut, "/tcc/api/v1/tcc/cancel/{id}", roleClient, s.forsrc(s.forsrcCancel)},
		{http.MethodGet, "/tcc/api/v1/tcc/{id}", roleClient, s.forsrc(s.forsrcGet)},
	}
}

func (s *Server) routes() {
	if s.cfg.STOMP != nil {
		// The STOMP endpoint authenticates by itself: a browser cannot
		// set headers on a WebSocket, so the token may come in CONNECT.
		s.mux.Handle("GET /ws/tcc", s.cfg.STOMP)
	}
	if s.cfg.UI != nil {
		// GET /ui (no slash) is redirected here by the mux.
		s.mux.Handle("GET /ui/", http.StripPrefix("/ui", s.cfg.UI))
	}
	for _, rt := range s.routeTable() {
		h := rt.handler
		if rt.role != roleOpen {
			h = s.guard(rt.role, h)
		}
		s.mux.Handle(rt.method+" "+rt.path, h)
	}
	if s.cfg.Metrics != nil {
		s.mux.Handle("GET /metrics", s.guard(roleAdmin, s.cfg.Metrics))
	}
}

// guard runs before every route that is not open: the rate limit, then
// authentication and the route's role. The principal goes into the
// request's context, where the coordinator reads it.
func (s *Server) guard(role tccd.Role, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p tccd.Principal
		var authErr *tccd.Error
		if s.cfg.Tokens != nil {
			p, authErr = s.authenticate(r)
		}
		if s.limiter != nil {
			key := "addr " + remoteHost(r)
			if s.cfg.Tokens != nil && authErr == nil {
				key = "token " + p.Name
			}
			if ok, wait := s.limiter.allow(key, time.Now()); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
				s.writeError(w, r, tccd.Errorf(tccd.ETooManyRequests, "too many requests: the limit is %g a second (burst %d); retry later", s.cfg.RateLimit, s.limiter.burst))
				return
			}
		}
		if s.cfg.Tokens == nil {
			next.ServeHTTP(w, r)
			return
		}
		if authErr != nil {
			challenge := `Bearer realm="tccd"`
			if _, found := bearer(r); found {
				challenge += `, error="invalid_token"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			s.writeError(w, r, authErr)
			return
		}
		if role == roleAdmin && p.Role != roleAdmin {
			s.writeError(w, r, tccd.Errorf(tccd.EForbidden, "%s %s needs the admin role", r.Method, r.Pattern[strings.IndexByte(r.Pattern, ' ')+1:]))
			return
		}
		next.ServeHTTP(w, r.WithContext(tccd.WithPrincipal(r.Context(), p)))
	})
}

// authenticate finds the principal of the request's bearer token.
func (s *Server) authenticate(r *http.Request) (tccd.Principal, *tccd.Error) {
	tok, found := bearer(r)
	if !found {
		return tccd.Principal{}, tccd.Errorf(tccd.EUnauthorized, "a bearer token is required (Authorization: Bearer <token>)")
	}
	if tok == "" {
		return tccd.Principal{}, tccd.Errorf(tccd.EUnauthorized, "the Authorization header must be one \"Bearer <token>\"")
	}
	p, ok := s.cfg.Tokens.Authenticate(tok)
	if !ok {
		return tccd.Principal{}, tccd.Errorf(tccd.EUnauthorized, "the bearer token is not valid")
	}
	return p, nil
}

// remoteHost is the address a request came from, without the port.
func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// writeError renders an error in the style of the endpoint: plain text on
// the Atomikos endpoints, a problem document elsewhere.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if strings.HasPrefix(r.URL.Path, "/coordinator/") {
		s.writeAtomikosError(w, r, err)
		return
	}
	writeProblem(w, r, s.log, err)
}

// ServeHTTP routes a request; unknown paths and methods get problem documents.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		// mux.ServeHTTP, not h.ServeHTTP: only the former sets the
		// request's path values ({id}); Handler does not.
		s.mux.ServeHTTP(w, r)
		return
	}
	// Let the mux decide between 404 and 405 (with Allow), then answer
	// in the API's error format.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	err := tccd.Errorf(tccd.ENotFound, "no such resource: %s", r.URL.Path)
	if rec.Code == http.StatusMethodNotAllowed {
		allow := rec.Header().Get("Allow")
		w.Header().Set("Allow", allow)
		err = tccd.Errorf(tccd.EMethodNotAllowed, "method %s is not allowed here; allowed: %s", r.Method, allow)
	}
	writeProblem(w, r, s.log, err)
}

// Serve starts serving on ln in the background, over TLS when the
// configuration has it; Addr tells the address.
func (s *Server) Serve(ln net.Listener) {
	s.ln = ln
	var h http.Handler = s
	if s.cfg.Middleware != nil {
		h = s.cfg.Middleware(h)
	}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.errc = make(chan error, 1)
	go func() {
		var err error
		if s.cfg.TLS != nil {
			s.srv.TLSConfig = s.cfg.TLS.Clone()
			err = s.srv.ServeTLS(ln, "", "")
		} else {
			err = s.srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.errc <- err
	}()
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting connections and waits, up to ctx, for requests
// in progress.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	s.streams.close() // event streams never go idle by themselves
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	if serr := <-s.errc; err == nil {
		err = serr
	}
	return err
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if !s.coord.Ready() {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"status":"not ready"}`+"\n")
		return
	}
	_, _ = io.WriteString(w, `{"status":"ready"}`+"\n")
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}

// native adapts a handler that returns an error: errors become problem
// documents, in this one place.
func (s *Server) native(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := s.checkReady()
		if err == nil {
			err = fn(w, r)
		}
		if err != nil {
			writeProblem(w, r, s.log, err)
		}
	})
}

// checkReady refuses API requests until recovery has finished.
func (s *Server) checkReady() error {
	if !s.coord.Ready() {
		return tccd.Errorf(tccd.EUnavailable, "the coordinator is not ready (recovering or shutting down)")
	}
	return nil
}

// readBody reads a request body of one of the accepted media types, up to
// the configured limit. An absent body reads as empty.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, types ...string) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tccd.Errorf(tccd.ETooLarge, "request body is larger than %d bytes", s.cfg.MaxBody)
		}
		return nil, tccd.Errorf(tccd.EInvalid, "cannot read request body: %v", err)
	}
	ct := r.Header.Get("Content-Type")
	if len(body) == 0 && ct == "" {
		return body, nil
	}
	// The usual header is exactly one of the types: no parse needed.
	if slices.Contains(types, ct) {
		return body, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil {
		for _, t := range types {
			if mt == t {
				return body, nil
			}
		}
	}
	if ct == "" {
		ct = "none"
	}
	return nil, tccd.Errorf(tccd.EUnsupportedMedia, "content type %s is not supported; send %v", ct, types)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func txLocation(id string) string { return "/api/v1/transactions/" + id }

func (s *Server) begin(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r, "application/json")
	if err != nil {
		return err
	}
	req, err := DecodeBegin(body)
	if err != nil {
		return err
	}
	tx, err := s.coord.Begin(r.Context(), req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", txLocation(tx.ID))
	writeTransaction(w, http.StatusCreated, FromTx(tx))
	return nil
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) error {
	tx, err := s.coord.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeTransaction(w, http.StatusOK, FromTx(tx))
	return nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := tccd.Filter{Cursor: q.Get("cursor"), Limit: DefaultListLimit}
	if v := q.Get("state"); v != "" {
		st, err := tccd.ParseState(v)
		if err != nil {
			return tccd.FieldError("state", "state must be one of %v, not %q", tccd.States, v)
		}
		f.State = st
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			return tccd.FieldError("limit", "limit must be an integer from 1 to %d, not %q", MaxListLimit, v)
		}
		f.Limit = n
	}
	txs, next, err := s.coord.List(r.Context(), f)
	if err != nil {
		return err
	}
	out := TransactionList{Transactions: make([]Transaction, len(txs)), NextCursor: next}
	for i, tx := range txs {
		out.Transactions[i] = FromTx(tx)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) enlist(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r, "application/json")
	if err != nil {
		return err
	}
	link, err := DecodeLink(body)
	if err != nil {
		return err
	}
	tx, added, err := s.coord.Enlist(r.Context(), r.PathValue("id"), link)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if added {
		status = http.StatusCreated
	}
	w.Header().Set("Location", txLocation(tx.ID))
	writeTransaction(w, status, FromTx(tx))
	return nil
}

// enlistMessage answers 201 with the transaction, whose participants
// now include the message.
func (s *Server) enlistMessage(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r, "application/json")
	if err != nil {
		return err
	}
	m, err := DecodeMessage(body)
	if err != nil {
		return err
	}
	tx, p, err := s.coord.EnlistMessage(r.Context(), r.PathValue("id"), m)
	if err != nil {
		return err
	}
	w.Header().Set("Location", txLocation(tx.ID))
	w.Header().Set("Tcc-Message-Id", tccd.MessageID(tx.ID, p))
	writeTransaction(w, http.StatusCreated, FromTx(tx))
	return nil
}

// confirm answers 200 with the confirmed transaction, 202 while it is
// still confirming, and a 409 problem when it ended otherwise.
func (s *Server) confirm(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r, "application/json")
	if err != nil {
		return err
	}
	links, err := DecodeConfirm(body)
	if err != nil {
		return err
	}
	confirm := s.coord.Confirm
	async := prefersAsync(r)
	if async {
		confirm = s.coord.ConfirmAsync
	}
	tx, err := confirm(r.Context(), r.PathValue("id"), links)
	if err != nil {
		return err
	}
	s.writeOutcome(w, tx, tccd.StateConfirmed, async)
	return nil
}

// prefersAsync reports whether the request has Prefer: respond-async.
func prefersAsync(r *http.Request) bool {
	for _, v := range r.Header.Values(api.HeaderPrefer) {
		for _, p := range strings.Split(v, ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(p), ";")
			if strings.EqualFold(strings.TrimSpace(name), api.PreferRespondAsync) {
				return true
			}
		}
	}
	return false
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r, "application/json")
	if err != nil {
		return err
	}
	if err := DecodeCancel(body); err != nil {
		return err
	}
	cancel := s.coord.Cancel
	async := prefersAsync(r)
	if async {
		cancel = s.coord.CancelAsync
	}
	tx, err := cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	s.writeOutcome(w, tx, tccd.StateCancelled, async)
	return nil
}

// resolve records an operator's resolution of a heuristic transaction.
func (s *Server) resolve(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r, "application/json")
	if err != nil {
		return err
	}
	state, note, err := DecodeResolve(body)
	if err != nil {
		return err
	}
	tx, err := s.coord.Resolve(r.Context(), r.PathValue("id"), state, note)
	if err != nil {
		return err
	}
	writeTransaction(w, http.StatusOK, FromTx(tx))
	return nil
}

// purge runs the retention purge now.
func (s *Server) purge(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r, "application/json")
	if err != nil {
		return err
	}
	if err := DecodeCancel(body); err != nil {
		return err
	}
	n, err := s.coord.Purge(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, PurgeResult{Purged: n})
	return nil
}

// writeOutcome answers 200 when tx reached the wanted end, 202 (with
// Location and Retry-After) while it is still on its way — with
// Preference-Applied when the client asked not to wait.
func (s *Server) writeOutcome(w http.ResponseWriter, tx *tccd.Transaction, want tccd.State, async bool) {
	status := http.StatusOK
	if tx.State != want {
		status = http.StatusAccepted
		w.Header().Set("Location", txLocation(tx.ID))
		w.Header().Set("Retry-After", "1")
		if async {
			w.Header().Set(api.HeaderPreferApplied, api.PreferRespondAsync)
		}
	}
	writeTransaction(w, status, FromTx(tx))
}
