package stomp_test

import (
	"context"
	"errors"
	"log"
	"net/http"
	"strings"
	"sync"

	"github.com/tccd/tccd/stomp"
)

// An application mounts the server at forsrc's endpoint, authenticates
// with a bearer token in the Authorization header or, from a browser, in
// the passcode, takes reports SENT to /app/tccLink/<key>, and publishes
// each outcome on /topic/tccLink/<key>, retained for late subscribers.
func ExampleNewServer() {
	var mu sync.Mutex               // hooks run concurrently
	outcomes := map[string][]byte{} // key → outcome; persistent in a real application
	var srv *stomp.Server
	srv, err := stomp.NewServer(stomp.Config{
		Authenticate: func(ctx context.Context, r *http.Request, login, passcode string) (any, error) {
			token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if token == "" {
				token = passcode
			}
			if token != "a-valid-token" {
				return nil, errors.New("unknown token")
			}
			return "participant", nil
		},
		OnSend: func(ctx context.Context, principal any, dest string, h map[string]string, body []byte) error {
			key, ok := strings.CutPrefix(dest, "/app/tccLink/")
			if !ok {
				return errors.New("unknown destination")
			}
			// Record the report; once every participant has reported,
			// make the outcome visible to OnSubscribe, then publish it.
			outcome := []byte(`{"outcome":"commit"}`)
			mu.Lock()
			outcomes[key] = outcome
			mu.Unlock()
			srv.Publish("/topic/tccLink/"+key, map[string]string{"content-type": "application/json"}, outcome)
			return nil
		},
		OnSubscribe: func(ctx context.Context, principal any, dest string) (*stomp.Message, error) {
			mu.Lock()
			body, ok := outcomes[strings.TrimPrefix(dest, "/topic/tccLink/")]
			mu.Unlock()
			if ok {
				return &stomp.Message{Header: map[string]string{"content-type": "application/json"}, Body: body}, nil
			}
			return nil, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws/tcc", srv)
	// … serve mux; on shutdown: srv.Close(ctx)
}
