// Package natstest gives tests a JetStream stream of their own on the NATS
// server named by TCCD_TEST_NATS, deleted when the test ends, and reads
// back what was stored through a durable consumer. Creating the stream is
// the test acting as the operator: the code under test never creates one.
package natstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Env names the server, e.g. nats://127.0.0.1:4222; it must have
// JetStream enabled (nats-server -js).
const Env = "TCCD_TEST_NATS"

// URL returns the server's URL from Env. Unset, it skips the test —
// except under CI=true, where it fails it: there the NATS tests must run.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(Env)
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: under CI=true the tests against NATS JetStream must run (see README, \"Set-up\")", Env)
		}
		t.Skipf("%s is not set (e.g. %s=nats://127.0.0.1:4222, a server with JetStream): skipping a test against NATS", Env, Env)
	}
	return u
}

var seq atomic.Int64

// Stream is a stream made for one test, capturing Prefix+".>".
type Stream struct {
	Name   string
	Prefix string
	t      testing.TB
	js     jetstream.JetStream
	s      jetstream.Stream
}

// NewStream creates a file-backed stream with a unique name on the server
// at url, capturing the subjects under a unique prefix, with the given
// duplicate window (zero: the server's default, two minutes). The stream
// and the test's connection go when the test ends.
func NewStream(t testing.TB, url string, duplicates time.Duration) *Stream {
	t.Helper()
	nc, err := natsgo.Connect(url, natsgo.Name("tccd-test-operator"), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(200*time.Millisecond))
	if err != nil {
		t.Fatalf("%s=%s: %v", Env, url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	tag := fmt.Sprintf("%d_%d_%s", os.Getpid(), seq.Add(1), hex.EncodeToString(b[:]))
	st := &Stream{Name: "TCCD_TEST_" + tag, Prefix: "tccdtest." + tag, t: t, js: js}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st.s, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name: st.Name, Subjects: []string{st.Prefix + ".>"}, Storage: jetstream.FileStorage, Duplicates: duplicates,
	})
	if err != nil {
		t.Fatalf("create stream %s: %v", st.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, st.Name); err != nil {
			t.Errorf("delete stream %s: %v", st.Name, err)
		}
	})
	return st
}

// Subject is a subject the stream captures: Prefix.name.
func (s *Stream) Subject(name string) string { return s.Prefix + "." + name }

// Stored returns the number of messages the stream holds.
func (s *Stream) Stored() uint64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := s.s.Info(ctx)
	if err != nil {
		s.t.Fatalf("stream %s: %v", s.Name, err)
	}
	return info.State.Msgs
}

// Msg is a message read back.
type Msg struct {
	Subject string
	ID      string // its Nats-Msg-Id
	Data    string
	Header  natsgo.Header
}

// ReadAll reads every message of the stream through a new durable pull
// consumer named durable, acknowledging each, until the consumer has
// nothing pending and nothing unacknowledged. Once publishing is over, it
// returns what a subscriber would have received, each delivery once.
func (s *Stream) ReadAll(durable string) []Msg {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := s.js.CreateOrUpdateConsumer(ctx, s.Name, jetstream.ConsumerConfig{Durable: durable, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		s.t.Fatalf("consumer %s on %s: %v", durable, s.Name, err)
	}
	var out []Msg
	for {
		info, err := c.Info(ctx)
		if err != nil {
			s.t.Fatalf("consumer %s: %v", durable, err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return out
		}
		// As many as are pending, so that Fetch returns as soon as they
		// are here; unacknowledged ones come again after AckWait.
		batch, err := c.Fetch(int(max(min(info.NumPending, 100), 1)), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			s.t.Fatalf("fetch from %s: %v", durable, err)
		}
		for m := range batch.Messages() {
			out = append(out, Msg{Subject: m.Subject(), ID: m.Headers().Get(jetstream.MsgIDHeader), Data: string(m.Data()), Header: m.Headers()})
			if err := m.DoubleAck(ctx); err != nil {
				s.t.Fatalf("ack: %v", err)
			}
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil {
			s.t.Logf("fetch from %s: %v (fetching again)", durable, err)
		}
		if ctx.Err() != nil {
			s.t.Fatalf("consumer %s: not drained within a minute (%d read)", durable, len(out))
		}
	}
}
