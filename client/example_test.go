package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tccd/tccd/client"
	"github.com/tccd/tccd/internal/testpart"
)

// sandbox starts an in-process coordinator and n reservation services
// (POST /reservations tries, PUT confirms, DELETE cancels, GET shows).
func sandbox(n int) (coordinatorURL string, services []*httptest.Server, stop func()) {
	dir, err := os.MkdirTemp("", "tccd-example-")
	if err != nil {
		log.Fatal(err)
	}
	co, err := startCoordinator(dir, testConfig())
	if err != nil {
		log.Fatal(err)
	}
	var parts []*testpart.Service
	for i := 0; i < n; i++ {
		p, err := testpart.Open(context.Background(), testpart.Config{DB: filepath.Join(dir, fmt.Sprintf("part%d.db", i)), TTL: time.Minute})
		if err != nil {
			log.Fatal(err)
		}
		parts = append(parts, p)
		services = append(services, httptest.NewServer(p))
	}
	return co.URL, services, func() {
		for i, s := range services {
			s.Close()
			parts[i].Close()
		}
		co.stop()
		os.RemoveAll(dir)
	}
}

// reservationState asks a reservation service for the state of a reservation.
func reservationState(uri string) string {
	resp, err := http.Get(uri)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var r struct{ State string }
	json.NewDecoder(resp.Body).Decode(&r)
	return r.State
}

// A one-shot confirm in the style of the Atomikos protocol: try at each
// participant, collect the links, confirm them in one call.
func ExampleClient_Confirm() {
	coordinatorURL, services, stop := sandbox(2)
	defer stop()
	ctx := context.Background()

	var links []client.Link
	for _, svc := range services {
		resp, err := http.Post(svc.URL+"/reservations", "", nil)
		if err != nil {
			log.Fatal(err)
		}
		var answer struct {
			ParticipantLink struct {
				URI     string    `json:"uri"`
				Expires time.Time `json:"expires"`
			} `json:"participantLink"`
		}
		json.NewDecoder(resp.Body).Decode(&answer)
		resp.Body.Close()
		links = append(links, client.Link{URI: answer.ParticipantLink.URI, Expires: answer.ParticipantLink.Expires})
	}

	c, err := client.New(coordinatorURL)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Confirm(ctx, links...); err != nil {
		log.Fatal(err)
	}
	for _, l := range links {
		fmt.Println(reservationState(l.URI))
	}
	// Output:
	// confirmed
	// confirmed
}

// A registered transaction whose participants are enlisted by the
// client's transport: every request made with the transaction in its
// context carries it, and the reservations in the answers are enlisted
// before Do returns.
func ExampleClient_Begin() {
	coordinatorURL, services, stop := sandbox(2)
	defer stop()
	ctx := context.Background()

	c, err := client.New(coordinatorURL)
	if err != nil {
		log.Fatal(err)
	}
	tx, err := c.Begin(ctx, client.WithTimeout(time.Minute), client.WithName("trip-42"))
	if err != nil {
		log.Fatal(err)
	}
	hc := c.WrapHTTPClient(nil)
	for _, svc := range services {
		req, _ := http.NewRequestWithContext(client.NewContext(ctx, tx), "POST", svc.URL+"/reservations", nil)
		resp, err := hc.Do(req)
		if err != nil {
			log.Fatal(err) // the reservation is not covered: cancel
		}
		resp.Body.Close()
	}

	out, err := tx.Confirm(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out.Name, out.State)
	for _, p := range out.Participants {
		fmt.Println(p.State, reservationState(p.URI))
	}
	// Output:
	// trip-42 confirmed
	// confirmed confirmed
	// confirmed confirmed
}

// Branching on the outcome of a confirm.
func ExampleTx_Confirm() {
	coordinatorURL, _, stop := sandbox(0)
	defer stop()
	ctx := context.Background()
	c, _ := client.New(coordinatorURL)

	// A transaction cancelled before it could be confirmed.
	tx, _ := c.Begin(ctx)
	tx.Cancel(ctx)
	_, err := tx.Confirm(ctx)

	var heuristic *client.HeuristicError
	var conflict *client.ConflictError
	switch {
	case err == nil:
		fmt.Println("confirmed")
	case errors.Is(err, client.ErrTimedOut):
		fmt.Println("timed out: everything was cancelled")
	case errors.As(err, &heuristic):
		for _, p := range heuristic.Participants() {
			fmt.Println(p.URI, p.State, p.LastStatus)
		}
	case errors.As(err, &conflict):
		fmt.Println("conflict: the transaction is", conflict.State)
	case errors.Is(err, client.ErrInProgress):
		fmt.Println("decided; the coordinator is still at it")
	default:
		fmt.Println(err)
	}
	// Output:
	// conflict: the transaction is cancelled
}

// A participant that calls another participant on the transaction's
// behalf wraps its handler with Middleware and calls out with a wrapped
// client: the reservation made downstream is reported in its own answer,
// and so reaches the initiator.
func ExampleMiddleware() {
	coordinatorURL, services, stop := sandbox(1)
	defer stop()
	ctx := context.Background()
	downstream := services[0]

	// The participant in the middle. It reserves nothing itself here.
	mc, _ := client.New(coordinatorURL)
	mhc := mc.WrapHTTPClient(nil)
	middle := httptest.NewServer(client.Middleware(mc)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "POST", downstream.URL+"/reservations", nil)
		resp, err := mhc.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		w.WriteHeader(http.StatusNoContent) // the Link of the downstream reservation is added
	})))
	defer middle.Close()

	// The initiator.
	c, _ := client.New(coordinatorURL)
	tx, _ := c.Begin(ctx)
	req, _ := http.NewRequestWithContext(client.NewContext(ctx, tx), "POST", middle.URL, nil)
	resp, err := c.WrapHTTPClient(nil).Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	out, err := tx.Confirm(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(out.Participants), out.State, reservationState(out.Participants[0].URI))
	// Output:
	// 1 confirmed confirmed
}

// A receiver of the coordinator's notifications: it verifies each one
// with the secret tccd signs with (its webhook-secret-file), acts on the
// outcome once per delivery id (deliveries are at least once), and
// answers 2xx — anything else and tccd tries again later.
func ExampleVerifyWebhook() {
	secret := []byte(os.Getenv("TCCD_WEBHOOK_SECRET"))
	var mu sync.Mutex
	seen := map[string]bool{} // a real service keeps these in its database
	http.HandleFunc("POST /tcc-outcome", func(w http.ResponseWriter, r *http.Request) {
		wh, err := client.VerifyWebhook(secret, r)
		if err != nil {
			http.Error(w, "bad signature", http.StatusBadRequest)
			return
		}
		mu.Lock()
		repeat := seen[wh.DeliveryID]
		seen[wh.DeliveryID] = true
		mu.Unlock()
		if !repeat {
			fmt.Printf("transaction %s ended %s\n", wh.Transaction.ID, wh.Transaction.State)
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
