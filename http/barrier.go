package http

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/stomp"
)

// Barrier reports and outcomes on the wire.
type (
	// BarrierReport is the body of a participant's report: POST
	// /api/v1/barriers/{key}, or a STOMP SEND to /app/tccLink/<key>.
	BarrierReport struct {
		Status string `json:"status"`
		Detail string `json:"detail,omitempty"`
	}
	// BarrierAnswer is the outcome of a key's round: "commit", "abort" or
	// "pending".
	BarrierAnswer struct {
		Outcome string `json:"outcome"`
	}
)

// STOMP destinations of forsrc's barrier.
const (
	stompReportPrefix = "/app/tccLink/"
	stompTopicPrefix  = "/topic/tccLink/"
	// DefaultBarrierPoll is how long POST /api/v1/barriers/{key} waits
	// for the outcome by default; MaxBarrierPoll the most it may ask.
	DefaultBarrierPoll = 10 * time.Second
	MaxBarrierPoll     = 60 * time.Second
)

// decodeBarrierReport reads a report body.
func decodeBarrierReport(body []byte) (tccd.BarrierStatus, string, error) {
	var r BarrierReport
	if err := strictDecode(body, &r, true); err != nil {
		return "", "", err
	}
	st := tccd.BarrierStatus(r.Status)
	if st != tccd.BarrierConfirmed && st != tccd.BarrierFailed {
		return "", "", tccd.FieldError("status", "status must be %q or %q, not %q", tccd.BarrierConfirmed, tccd.BarrierFailed, r.Status)
	}
	return st, r.Detail, nil
}

// barrierReport serves POST /api/v1/barriers/{key}: it records the
// report and answers the round's outcome once known, waiting up to ?wait=
// (a duration, default 10s, at most 60s); "pending" if it is not known by
// then.
func (s *Server) barrierReport(w http.ResponseWriter, r *http.Request) error {
	wait := DefaultBarrierPoll
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxBarrierPoll {
			return tccd.FieldError("wait", "wait must be a duration from 0s to %v, not %q", MaxBarrierPoll, v)
		}
		wait = d
	}
	body, err := s.readBody(w, r, "application/json")
	if err != nil {
		return err
	}
	st, detail, err := decodeBarrierReport(body)
	if err != nil {
		return err
	}
	key := r.PathValue("key")
	if _, err := s.coord.BarrierReport(r.Context(), key, st, detail); err != nil {
		return err
	}
	// The answer may take up to wait: past the server's write timeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + 10*time.Second))
	o, err := s.coord.BarrierWait(r.Context(), key, wait)
	if err != nil {
		return err
	}
	if o != tccd.BarrierPending && s.cfg.STOMP != nil {
		s.cfg.STOMP.PublishOutcome(key, o) // a participant may listen on both
	}
	writeJSON(w, http.StatusOK, BarrierAnswer{Outcome: string(o)})
	return nil
}

// BarrierSTOMP is forsrc's STOMP-over-WebSocket endpoint for the barrier
// (/ws/tcc): a participant SUBSCRIBEs to /topic/tccLink/<key>, SENDs its
// report to /app/tccLink/<key>, and gets the round's outcome as a MESSAGE
// {"outcome":"commit"|"abort"} — at once if it subscribes after the
// outcome is known. It is the coordinator's tccd.BarrierPublisher. With
// tokens set, a connection needs a bearer token: in the upgrade request's
// Authorization header, or (browsers cannot set one) as the CONNECT
// frame's passcode. The key itself binds a report to its participant.
type BarrierSTOMP struct {
	srv   *stomp.Server
	coord atomic.Pointer[tccd.Coordinator]
}

var _ tccd.BarrierPublisher = (*BarrierSTOMP)(nil)

// NewBarrierSTOMP returns the endpoint; Attach gives it the coordinator.
func NewBarrierSTOMP(tokens *Tokens, log *slog.Logger) (*BarrierSTOMP, error) {
	b := &BarrierSTOMP{}
	srv, err := stomp.NewServer(stomp.Config{
		Authenticate: func(ctx context.Context, r *http.Request, login, passcode string) (any, error) {
			if tokens == nil {
				return tccd.Principal{}, nil
			}
			tok, found := bearer(r)
			if !found || tok == "" {
				tok = passcode
			}
			p, ok := tokens.Authenticate(tok)
			if !ok {
				return nil, errors.New("no valid bearer token (Authorization header or CONNECT passcode)")
			}
			return p, nil
		},
		OnSend:      b.onSend,
		OnSubscribe: b.onSubscribe,
		AppPrefix:   "/app",
		TopicPrefix: "/topic",
		ServerName:  "tccd",
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}
	b.srv = srv
	return b, nil
}

// Attach sets the coordinator the reports go to.
func (b *BarrierSTOMP) Attach(c *tccd.Coordinator) { b.coord.Store(c) }

func (b *BarrierSTOMP) onSend(ctx context.Context, _ any, dest string, _ map[string]string, body []byte) error {
	key, ok := strings.CutPrefix(dest, stompReportPrefix)
	if !ok || key == "" {
		return errors.New("reports go to " + stompReportPrefix + "<key>")
	}
	st, detail, err := decodeBarrierReport(body)
	if err != nil {
		return errors.New(tccd.ErrorMessage(err))
	}
	c := b.coord.Load()
	if c == nil {
		return errors.New("the coordinator is not ready")
	}
	o, err := c.BarrierReport(ctx, key, st, detail)
	if err != nil {
		return errors.New(tccd.ErrorMessage(err))
	}
	if o != tccd.BarrierPending {
		b.PublishOutcome(key, o) // a late report: the outcome at once
	}
	return nil
}

func (b *BarrierSTOMP) onSubscribe(ctx context.Context, _ any, dest string) (*stomp.Message, error) {
	key, ok := strings.CutPrefix(dest, stompTopicPrefix)
	if !ok || key == "" {
		return nil, errors.New("subscribe to " + stompTopicPrefix + "<key>")
	}
	c := b.coord.Load()
	if c == nil {
		return nil, errors.New("the coordinator is not ready")
	}
	o, err := c.BarrierOutcome(key)
	if err != nil {
		return nil, errors.New(tccd.ErrorMessage(err))
	}
	if o == tccd.BarrierPending {
		return nil, nil
	}
	return outcomeMessage(o), nil
}

func outcomeMessage(o tccd.BarrierOutcome) *stomp.Message {
	body, _ := json.Marshal(BarrierAnswer{Outcome: string(o)})
	return &stomp.Message{Header: map[string]string{"content-type": api.MediaJSON}, Body: body}
}

// PublishOutcome sends the outcome to the key's subscribers.
func (b *BarrierSTOMP) PublishOutcome(key string, o tccd.BarrierOutcome) {
	m := outcomeMessage(o)
	b.srv.Publish(stompTopicPrefix+key, m.Header, m.Body)
}

// ServeHTTP upgrades to a STOMP connection.
func (b *BarrierSTOMP) ServeHTTP(w http.ResponseWriter, r *http.Request) { b.srv.ServeHTTP(w, r) }

// Close closes every connection and waits for them.
func (b *BarrierSTOMP) Close(ctx context.Context) error { return b.srv.Close(ctx) }
