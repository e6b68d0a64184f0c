package http

// The Atomikos TCC for REST flavour of the API: PUT /coordinator/confirm
// and /coordinator/cancel with a set of participant links and no
// transaction id. The set is the identity — AtomikosKey derives the
// transaction's key from it, so a repeated request joins the transaction
// the first made — and the answers are the protocol's: plain text, 204,
// 404 for "timed out and cancelled", 409 for a heuristic outcome, 503
// with Retry-After while the outcome is not known. The engine offers the
// protocol-neutral one-shot operations (Coordinator.ConfirmLinks and
// CancelLinks, named by a key).

import (
	"crypto/sha256"
	"encoding/base32"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/api"
)

// atomikos adapts a handler for the Atomikos endpoints, whose errors are
// plain text.
func (s *Server) atomikos(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := s.checkReady()
		if err == nil {
			err = fn(w, r)
		}
		if err != nil {
			s.writeAtomikosError(w, r, err)
		}
	})
}

// writeAtomikosError writes err as the Atomikos endpoints do: plain text.
func (s *Server) writeAtomikosError(w http.ResponseWriter, r *http.Request, err error) {
	code := tccd.ErrorCode(err)
	status := atomikosStatus(code)
	if status == http.StatusInternalServerError {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else if status >= 500 {
		s.log.Warn("request not served", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set(api.HeaderErrorCode, string(code))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, atomikosText(err)+"\n")
}

var atomikosTypes = []string{"application/tcc+json", "application/json"}

func (s *Server) atomikosLinks(w http.ResponseWriter, r *http.Request) ([]tccd.Link, error) {
	body, err := s.readBody(w, r, atomikosTypes...)
	if err != nil {
		return nil, err
	}
	return DecodeAtomikos(body)
}

// atomikosConfirm: 204 confirmed, 404 timed out and cancelled, 409
// heuristic, 503 with Retry-After while the outcome is not known yet
// (repeating the request is safe and joins it).
func (s *Server) atomikosConfirm(w http.ResponseWriter, r *http.Request) error {
	links, err := s.atomikosLinks(w, r)
	if err != nil {
		return err
	}
	if len(links) == 0 {
		w.WriteHeader(http.StatusNoContent) // nothing to confirm: all of it is confirmed
		return nil
	}
	opt, err := atomikosOptions(r, links)
	if err != nil {
		return err
	}
	tx, err := s.coord.ConfirmLinks(r.Context(), links, opt)
	if err != nil {
		return atomikosError(err)
	}
	if tx.State != tccd.StateConfirmed {
		return tccd.Errorf(tccd.EUnavailable, "confirmation in progress - repeat the request for the outcome")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// atomikosCancel answers 204 when the link set is cancelled, or decided
// to cancel with no participant that may have confirmed (each either
// receives its DELETE or cancels itself at its expiry); 503 with
// Retry-After while that is not known yet (a participant in doubt, or
// refusing); 409 when the set was confirmed (a cancel never undoes a
// confirm) or ended heuristic.
func (s *Server) atomikosCancel(w http.ResponseWriter, r *http.Request) error {
	links, err := s.atomikosLinks(w, r)
	if err != nil {
		return err
	}
	if len(links) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	opt, err := atomikosOptions(r, links)
	if err != nil {
		return err
	}
	tx, err := s.coord.CancelLinks(r.Context(), links, opt)
	if err != nil {
		return atomikosError(err)
	}
	switch {
	case tx.State == tccd.StateHeuristic:
		return &tccd.Error{Code: tccd.EHeuristic, Message: "heuristic outcome", Tx: tx}
	case tx.State == tccd.StateConfirming || tx.State == tccd.StateConfirmed:
		return &tccd.Error{Code: tccd.EConflict, Message: "these participant links were confirmed; a cancel never undoes a confirm", Tx: tx}
	case !tccd.CancelCertain(tx):
		return tccd.Errorf(tccd.EUnavailable, "cancellation in progress - repeat the request for the outcome")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// atomikosOptions are the one-shot options of an Atomikos request.
func atomikosOptions(r *http.Request, links []tccd.Link) (tccd.OneShotOptions, error) {
	key, err := AtomikosKey(links)
	if err != nil {
		return tccd.OneShotOptions{}, err
	}
	return tccd.OneShotOptions{Key: key, Protocol: tccd.ProtocolAtomikos, Notify: r.Header.Get(api.HeaderNotify)}, nil
}

// AtomikosKey derives the key of the transaction of an Atomikos link set:
// "a-" and the first 128 bits of the SHA-256 of the canonical URIs
// (tccd.CanonicalURI), sorted and joined by newlines, in lower-case
// base32. However the links are ordered or spelled, one set is one
// transaction; a URI given twice is an error.
func AtomikosKey(links []tccd.Link) (string, error) {
	uris := make([]string, len(links))
	for i, l := range links {
		u, err := tccd.CanonicalURI(l.URI)
		if err != nil {
			return "", err
		}
		uris[i] = u
	}
	sort.Strings(uris)
	for i := 1; i < len(uris); i++ {
		if uris[i] == uris[i-1] {
			return "", tccd.FieldError("uri", "duplicate participant link %s", uris[i])
		}
	}
	sum := sha256.Sum256([]byte(strings.Join(uris, "\n")))
	return "a-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:16])), nil
}

// atomikosError words an engine error as the protocol's answer.
func atomikosError(err error) error {
	if tccd.ErrorCode(err) == tccd.EForbidden {
		// The set is the identity: the transaction it names is another
		// client's. (404 would mean "cancelled" here, which is not so.)
		return tccd.Errorf(tccd.EForbidden, "these participant links belong to another client's transaction")
	}
	return err
}
