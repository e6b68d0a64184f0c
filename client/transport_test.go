package client_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tccd/tccd/api"
	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/internal/testpart"
)

// styled answers try (POST /reservations) in one of the ways a participant
// may report its link, and passes the rest to testpart. It echoes the
// reservation id and the transaction headers it received in X- headers.
func styled(answer func(w http.ResponseWriter, uri, rel string, res *testpart.Reservation)) func(*part, http.Handler) http.Handler {
	return func(p *part, h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != "/reservations" {
				h.ServeHTTP(w, r)
				return
			}
			res, err := p.svc.Try(r.Context(), time.Minute)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("X-Reservation", res.ID)
			w.Header().Set("X-Seen-Link", strings.Join(r.Header.Values("Link"), ", "))
			w.Header().Set("X-Seen-Id", r.Header.Get(api.HeaderTransactionID))
			answer(w, p.uri(res.ID), "/reservations/"+res.ID, &res)
		})
	}
}

func TestTransportLinkStyles(t *testing.T) {
	t.Parallel()
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	const body = "reserved\n"
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter, uri, rel string, res *testpart.Reservation)
		// relative: the expiry is a time from now (one minute).
		relative bool
		wantBody string
	}{
		{name: "Link rel=tcc with expires", answer: func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
			w.Header().Set("Link", fmt.Sprintf(`<http://other.example/x>; rel="next", <%s>; rel="tcc"; expires="%s"`, uri, rfc(res.Expires)))
			io.WriteString(w, body)
		}, wantBody: body},
		{name: "Link rel=tcc, relative target, second header, +01:00 offset", answer: func(w http.ResponseWriter, _, rel string, res *testpart.Reservation) {
			w.Header().Add("Link", `<http://other.example/x>; rel="next"`)
			w.Header().Add("Link", fmt.Sprintf(`<%s>;rel=tcc;expires=%s`, rel, res.Expires.In(time.FixedZone("CET", 3600)).Format(time.RFC3339Nano)))
			io.WriteString(w, body)
		}, wantBody: body},
		{name: "MicroTx rel with timeLimit date-time", answer: func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="%s"; timeLimit="%s"`, uri, api.MicroTxRelParticipant, rfc(res.Expires)))
			io.WriteString(w, body)
		}, wantBody: body},
		{name: "MicroTx rel with timeLimit in seconds", answer: func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="%s"; timeLimit=60`, uri, api.MicroTxRelParticipant))
			io.WriteString(w, body)
		}, relative: true, wantBody: body},
		{name: "MicroTx rel with timeLimit as a duration", answer: func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="%s"; timeLimit="1m"`, uri, api.MicroTxRelParticipant))
			io.WriteString(w, body)
		}, relative: true, wantBody: body},
		{name: "JSON participantLink body", answer: func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			fmt.Fprintf(w, `{"participantLink":{"uri":%q,"expires":%q,"rel":"tcc"},"seat":"12A"}`, uri, rfc(res.Expires))
		}, wantBody: `"seat":"12A"`},
		{name: "201 with relative Location and Tcc-Expires", answer: func(w http.ResponseWriter, _, rel string, res *testpart.Reservation) {
			w.Header().Set("Location", rel)
			w.Header().Set(api.HeaderExpires, rfc(res.Expires))
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, body)
		}, wantBody: body},
		{name: "all styles at once (testpart's answer): enlisted once", answer: func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
			exp := rfc(res.Expires)
			w.Header().Set("Location", uri)
			w.Header().Set(api.HeaderExpires, exp)
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="tcc"; expires="%s"`, uri, exp))
			w.Header().Add("Link", fmt.Sprintf(`<%s>; rel="%s"; timeLimit="%s"`, uri, api.MicroTxRelParticipant, exp))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"participantLink":{"uri":%q,"expires":%q}}`, uri, exp)
		}, wantBody: "participantLink"},
	}
	e := newEnv(t, testConfig())
	hc := e.c.WrapHTTPClient(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPart(t, styled(tt.answer))
			ctx := testCtx(t)
			tx, err := e.c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			req := mustRequest(t, client.NewContext(ctx, tx), "POST", p.srv.URL+"/reservations", "")
			before := time.Now()
			resp, err := hc.Do(req)
			after := time.Now()
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(got), tt.wantBody) {
				t.Errorf("body = %q, want it to contain %q (given back untouched)", got, tt.wantBody)
			}
			if len(req.Header.Values("Link")) != 0 {
				t.Errorf("the caller's request was changed: %v", req.Header)
			}
			wantLink := fmt.Sprintf(`<%s>; rel="tcc-transaction"`, tx.URL())
			if seen := resp.Header.Get("X-Seen-Link"); seen != wantLink {
				t.Errorf("participant saw Link %q, want %q", seen, wantLink)
			}
			if seen := resp.Header.Get("X-Seen-Id"); seen != tx.ID() {
				t.Errorf("participant saw %s %q, want %q", api.HeaderTransactionID, seen, tx.ID())
			}

			id := resp.Header.Get("X-Reservation")
			res, _, err := p.svc.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			cur, err := e.c.Get(ctx, tx.ID())
			if err != nil {
				t.Fatal(err)
			}
			if len(cur.Participants) != 1 || cur.Participants[0].URI != p.uri(id) {
				t.Fatalf("participants = %+v, want one: %s", cur.Participants, p.uri(id))
			}
			exp := cur.Participants[0].Expires
			if tt.relative {
				if exp.Before(before.Add(time.Minute-time.Second)) || exp.After(after.Add(time.Minute+time.Second)) {
					t.Errorf("expires = %v, want about a minute from %v", exp, before)
				}
			} else if !exp.Equal(res.Expires) {
				t.Errorf("expires = %v, want %v", exp, res.Expires)
			}
			out, err := tx.Confirm(ctx)
			if err != nil || out.State != "confirmed" {
				t.Fatalf("Confirm = %v, %v", out, err)
			}
			if s := p.state(p.uri(id)); s != testpart.Confirmed {
				t.Errorf("reservation state = %s, want confirmed", s)
			}
		})
	}
}

// TestTransportWithoutTx: a request without a *Tx passes through untouched.
func TestTransportWithoutTx(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	p := newPart(t, styled(func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
		w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="tcc"; expires="%s"`, uri, res.Expires.Format(time.RFC3339Nano)))
	}))
	resp, err := e.c.WrapHTTPClient(nil).Do(mustRequest(t, testCtx(t), "POST", p.srv.URL+"/reservations", ""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if l, id := resp.Header.Get("X-Seen-Link"), resp.Header.Get("X-Seen-Id"); l != "" || id != "" {
		t.Errorf("participant saw Link %q, id %q; want none", l, id)
	}
	if calls := e.rec.calls(); len(calls) != 0 {
		t.Errorf("coordinator calls = %v, want none", calls)
	}
}

// closeTracker records whether response bodies were closed.
type closeTracker struct {
	base   http.RoundTripper
	closed atomic.Int32
	opened atomic.Int32
}

func (c *closeTracker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err == nil {
		c.opened.Add(1)
		resp.Body = &trackedBody{ReadCloser: resp.Body, n: &c.closed}
	}
	return resp, err
}

type trackedBody struct {
	io.ReadCloser
	n *atomic.Int32
}

func (b *trackedBody) Close() error { b.n.Add(1); return b.ReadCloser.Close() }

// TestTransportEnlistFailure: when a reported reservation cannot be
// enlisted (or read), the round trip fails and the body is closed.
func TestTransportEnlistFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	good := func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
		w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="tcc"; expires="%s"`, uri, res.Expires.Format(time.RFC3339Nano)))
	}
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter, uri, rel string, res *testpart.Reservation)
		// cancel cancels the transaction before the request.
		cancel bool
		check  func(t *testing.T, err error)
	}{
		{name: "transaction already cancelled", answer: good, cancel: true, check: func(t *testing.T, err error) {
			var ce *client.ConflictError
			if !errors.As(err, &ce) || ce.State != "cancelled" {
				t.Errorf("err = %v, want a *ConflictError in state cancelled", err)
			}
		}},
		{name: "link expired", answer: func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="tcc"; expires="%s"`, uri, time.Now().Add(-time.Second).Format(time.RFC3339Nano)))
		}, check: func(t *testing.T, err error) {
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Status != 400 || ce.Code != api.CodeInvalid {
				t.Errorf("err = %v, want the coordinator's 400", err)
			}
		}},
		{name: "unreadable expires", answer: func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="tcc"; expires="tomorrow"`, uri))
		}},
		{name: "no expires", answer: func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="tcc"`, uri))
		}},
		{name: "MicroTx link without timeLimit", answer: func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="%s"`, uri, api.MicroTxRelParticipant))
		}},
		{name: "JSON participantLink without expires", answer: func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"participantLink":{"uri":%q}}`, uri)
		}},
		{name: "Tcc-Expires without Location", answer: func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
			w.Header().Set(api.HeaderExpires, res.Expires.Format(time.RFC3339Nano))
			w.WriteHeader(http.StatusCreated)
		}},
		{name: "link that is not http", answer: func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
			w.Header().Set("Link", fmt.Sprintf(`<mailto:a@b>; rel="tcc"; expires="%s"`, res.Expires.Format(time.RFC3339Nano)))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPart(t, styled(tt.answer))
			ctx := testCtx(t)
			tx, err := e.c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tt.cancel {
				if _, err := tx.Cancel(ctx); err != nil {
					t.Fatal(err)
				}
			}
			tracker := &closeTracker{base: http.DefaultTransport}
			hc := &http.Client{Transport: e.c.Transport(tracker)}
			resp, err := hc.Do(mustRequest(t, client.NewContext(ctx, tx), "POST", p.srv.URL+"/reservations", ""))
			if err == nil {
				resp.Body.Close()
				t.Fatal("the round trip succeeded")
			}
			if !strings.Contains(err.Error(), "tccd:") {
				t.Errorf("err = %v, want it to say what failed", err)
			}
			if o, c := tracker.opened.Load(), tracker.closed.Load(); o != 1 || c != 1 {
				t.Errorf("bodies opened %d, closed %d; want 1 and 1", o, c)
			}
			if tt.check != nil {
				tt.check(t, err)
			}
			cur, err := e.c.Get(ctx, tx.ID())
			if err != nil {
				t.Fatal(err)
			}
			if len(cur.Participants) != 0 {
				t.Errorf("participants = %+v, want none", cur.Participants)
			}
		})
	}
}

// TestTransportCollectsOnErrorAnswers: Link headers are read whatever the
// status (a participant reporting a reservation on a 500 still gets it
// under the coordinator's control); bodies only on 2xx.
func TestTransportCollectsOnErrorAnswers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	p := newPart(t, styled(func(w http.ResponseWriter, uri, _ string, res *testpart.Reservation) {
		w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="tcc"; expires="%s"`, uri, res.Expires.Format(time.RFC3339Nano)))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(map[string]any{"participantLink": map[string]string{"uri": "http://127.0.0.1:1/not-this", "expires": "2099-01-01T00:00:00Z"}})
	}))
	ctx := testCtx(t)
	tx, err := e.c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.c.WrapHTTPClient(nil).Do(mustRequest(t, client.NewContext(ctx, tx), "POST", p.srv.URL+"/reservations", ""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cur, err := e.c.Get(ctx, tx.ID())
	if err != nil {
		t.Fatal(err)
	}
	if len(cur.Participants) != 1 || cur.Participants[0].URI != p.uri(resp.Header.Get("X-Reservation")) {
		t.Errorf("participants = %+v, want only the Link header's", cur.Participants)
	}
	if _, err := tx.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
}
