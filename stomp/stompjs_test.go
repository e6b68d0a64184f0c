package stomp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/stompjs"
)

// stompjsDir is the fixture with @stomp/stompjs, ws and the script.
const stompjsDir = "testdata/stompjs"

// TestStompJS runs a STOMP client nobody here wrote, @stomp/stompjs on
// Node, against the server: connect with a passcode, subscribe, send
// with a receipt, receive a published message, exchange heart-beats,
// receive a retained message, disconnect cleanly.
func TestStompJS(t *testing.T) {
	node := stompjs.Need(t, stompjsDir)

	type send struct {
		principal any
		dest      string
		ctype     string
		body      string
	}
	sends := make(chan send, 4)
	var srv *Server
	ts := newTestServer(t, Config{
		HeartBeat:      200 * time.Millisecond,
		HeartBeatGrace: 2 * time.Second,
		Authenticate: func(ctx context.Context, r *http.Request, login, passcode string) (any, error) {
			if passcode != "s3cret:\\pass" {
				return nil, errors.New("wrong passcode")
			}
			return login, nil
		},
		OnSend: func(ctx context.Context, principal any, dest string, h map[string]string, body []byte) error {
			sends <- send{principal, dest, h["content-type"], string(body)}
			key := strings.TrimPrefix(dest, "/app/tccLink/")
			srv.Publish("/topic/tccLink/"+key, map[string]string{"content-type": "application/json"}, []byte(`{"outcome":"commit"}`))
			return nil
		},
		OnSubscribe: func(ctx context.Context, principal any, dest string) (*Message, error) {
			if dest == "/topic/tccLink/retained" {
				return &Message{Header: map[string]string{"content-type": "application/json"}, Body: []byte(`{"outcome":"abort"}`)}, nil
			}
			return nil, nil
		},
	}, &srv)

	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs", ts.url, `s3cret:\pass`)
	cmd.Dir = stompjsDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node client.mjs: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}

	var events []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("script printed %q: %v", line, err)
		}
		events = append(events, e)
	}
	byName := map[string]map[string]any{}
	var order []string
	for _, e := range events {
		name := e["event"].(string)
		byName[name] = e
		order = append(order, name)
	}
	t.Logf("stompjs events: %v", order)
	for name, want := range map[string]map[string]any{
		"connected": {"event": "connected", "version": "1.2", "heartBeat": "200,200", "server": "tccd", "subprotocol": "v12.stomp"},
		"message":   {"event": "message", "destination": "/topic/tccLink/k1", "contentType": "application/json", "body": `{"outcome":"commit"}`},
		"receipt":   {"event": "receipt", "receiptId": "r-send"},
		"retained":  {"event": "retained", "destination": "/topic/tccLink/retained", "body": `{"outcome":"abort"}`},
		// 3: the socket is CLOSED once deactivate resolves.
		"disconnected": {"event": "disconnected", "readyState": float64(3)},
	} {
		if got := byName[name]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	if e := byName["disconnect-receipt"]; e == nil || !strings.HasPrefix(e["receiptId"].(string), "close-") {
		t.Errorf("no RECEIPT for the DISCONNECT: %v", e)
	}
	if e := byName["heartbeats"]; e == nil {
		t.Error("no heart-beats exchanged")
	}

	s := <-sends
	if s != (send{"node", "/app/tccLink/k1", "application/json", `{"status":"confirmed"}`}) {
		t.Fatalf("OnSend got %+v", s)
	}
	waitFor(t, "the connection gone", func() bool { return ts.Stats().Connections == 0 })
	if st := ts.Stats(); st.Refused != 0 || st.Dropped != 0 || st.TimedOut != 0 || st.Accepted != 1 {
		t.Fatalf("stats %+v", st)
	}
}
