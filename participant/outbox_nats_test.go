package participant_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tccd/tccd/internal/natstest"
	"github.com/tccd/tccd/nats"
	"github.com/tccd/tccd/participant"
)

// The JetStream publisher is a Publisher of the kit.
var _ participant.Publisher = (*nats.Publisher)(nil)

// countingPublisher records the ids it is asked to publish.
type countingPublisher struct {
	participant.Publisher
	mu  sync.Mutex
	ids []string
}

func (c *countingPublisher) Publish(ctx context.Context, subject, msgID string, data []byte, headers map[string][]string) error {
	c.mu.Lock()
	c.ids = append(c.ids, msgID)
	c.mu.Unlock()
	return c.Publisher.Publish(ctx, subject, msgID, data, headers)
}

func (c *countingPublisher) called(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.ids, id)
}

func openNATS(t *testing.T, url string) *nats.Publisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := nats.Open(ctx, nats.Config{URL: url, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestOutboxNATS runs the outbox end to end against the real NATS
// server: a confirmed reservation's messages reach a durable consumer
// exactly once, a cancelled or expired one's never — also when a relay,
// in a process of its own, is killed after JetStream stored a message and
// before the relay marked it published: another relay publishes it again
// once the dead one's lease has run out, and JetStream drops the repeat
// by its Nats-Msg-Id.
func TestOutboxNATS(t *testing.T) {
	url := natstest.URL(t)
	forEachBackend(t, func(t *testing.T, s *server) {
		st := natstest.NewStream(t, url, 0)
		pub := &countingPublisher{Publisher: openNATS(t, url)}
		k := newOutboxKit(t, s, func(c *participant.OutboxConfig) { c.Publisher = pub })
		subj := st.Subject("order.placed")
		confirmed := k.mustTry("?msg="+subj+"&msg="+subj, "")
		late := k.mustTry("?msg="+subj, "")
		cancelled := k.mustTry("?msg="+subj, "")
		expired := k.mustTry("?msg="+subj+"&ttl=30s", "")
		for _, l := range []tryLink{confirmed, late} {
			wantStatus(t, "confirm", k.confirm(l.uri), http.StatusNoContent)
		}
		wantStatus(t, "cancel", k.cancel(cancelled.uri), http.StatusNoContent)
		k.clock.Advance(45 * time.Second)
		if n, err := k.p.Sweep(context.Background()); err != nil || n != 1 {
			t.Fatalf("sweep: %d, %v", n, err)
		}

		killed := runDyingRelay(t, k, url)
		t.Logf("the relay process was killed after JetStream stored %s", killed)
		res, n, _ := strings.Cut(killed, "/")
		idx, _ := strconv.Atoi(n)
		if ms := k.messages(res); len(ms) < idx || ms[idx-1].State != participant.MessageDue {
			t.Fatalf("after the kill, the messages of %s are %+v: want %s still due", res, ms, killed)
		}
		if got := st.Stored(); got != 1 {
			t.Fatalf("the stream holds %d messages after the dead relay's publish, want 1", got)
		}

		// The dead relay's lease keeps the others off its reservation
		// until it runs out; then its message goes again.
		n1, err := k.relay(k.ob)
		if err != nil {
			t.Fatal(err)
		}
		if pub.called(killed) {
			t.Fatalf("%s was published again under the dead relay's lease", killed)
		}
		k.clock.Advance(participant.DefaultRelayLease)
		n2, err := k.relay(k.ob)
		if err != nil {
			t.Fatal(err)
		}
		if n1+n2 != 3 || !pub.called(killed) {
			t.Fatalf("published %d then %d, want the 3 messages, %s among them", n1, n2, killed)
		}
		k.mustRelay(0)

		want := []string{confirmed.id + "/1", confirmed.id + "/2", late.id + "/1"}
		if got := st.Stored(); got != uint64(len(want)) {
			t.Fatalf("the stream holds %d messages, want %d: the repeat of %s was not dropped", got, len(want), killed)
		}
		var got []string
		for _, m := range st.ReadAll("shipping") {
			got = append(got, m.ID)
			if m.Subject != subj || m.Header.Get("X-Seq") == "" || !strings.HasPrefix(m.Data, subj+"#") {
				t.Errorf("delivered %+v", m)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("delivered %v, want %v, each once", got, want)
		}
		for _, id := range []string{confirmed.id, late.id} {
			for _, m := range k.messages(id) {
				if m.State != participant.MessagePublished {
					t.Errorf("message %s is %s", m.ID, m.State)
				}
			}
		}
		for _, id := range []string{cancelled.id, expired.id} {
			if ms := k.messages(id); len(ms) != 0 {
				t.Errorf("reservation %s keeps messages %+v", id, ms)
			}
		}
	})
}

// Variables of the relay process of runDyingRelay.
const (
	envChild        = "TCCD_TEST_OUTBOX_CHILD"
	childPublished  = "outbox-child: published "
	childStuckAfter = 10 * time.Minute
)

// runDyingRelay runs a relay over k's tables in a process of its own
// (this test binary, running TestOutboxRelayChild), waits until it says
// JetStream acknowledged a message, kills it with SIGKILL before it can
// mark the message published, and returns the message's id.
func runDyingRelay(t *testing.T, k *obKit, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestOutboxRelayChild$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		envChild+"=1",
		envChild+"_DRIVER="+k.sp.driver,
		envChild+"_DSN="+k.sp.dsn,
		envChild+"_DIALECT="+strconv.Itoa(int(k.sp.d)),
		envChild+"_TABLE="+k.table,
		envChild+"_NOW="+strconv.FormatInt(k.clock.Now().UnixMilli(), 10),
		envChild+"_NATS="+url,
	)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var id string
	var seen []string
	for sc.Scan() {
		if after, ok := strings.CutPrefix(sc.Text(), childPublished); ok {
			id = after
			break
		}
		seen = append(seen, sc.Text())
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if id == "" {
		t.Fatalf("the relay process published nothing before it ended\nstdout:\n%s\nstderr:\n%s", strings.Join(seen, "\n"), stderr.String())
	}
	return id
}

// stopAfterPublish is the dying relay's publisher: after JetStream's
// acknowledgement it says so and hangs, so that it can be killed there.
type stopAfterPublish struct{ participant.Publisher }

func (s stopAfterPublish) Publish(ctx context.Context, subject, msgID string, data []byte, headers map[string][]string) error {
	if err := s.Publisher.Publish(ctx, subject, msgID, data, headers); err != nil {
		return err
	}
	fmt.Println(childPublished + msgID)
	<-time.After(childStuckAfter) // killed long before
	return fmt.Errorf("still alive %v after publishing", childStuckAfter)
}

// TestOutboxRelayChild is the relay process of TestOutboxNATS; it does
// nothing unless started by it.
func TestOutboxRelayChild(t *testing.T) {
	if os.Getenv(envChild) != "1" {
		t.Skip("the relay process of TestOutboxNATS, started by it")
	}
	env := func(k string) string { return os.Getenv(envChild + "_" + k) }
	d, _ := strconv.Atoi(env("DIALECT"))
	nowMs, _ := strconv.ParseInt(env("NOW"), 10, 64)
	db, err := sql.Open(env("DRIVER"), env("DSN"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	ob, err := participant.NewOutbox(ctx, participant.OutboxConfig{
		DB: db, Dialect: participant.Dialect(d), Table: env("TABLE"),
		Publisher: stopAfterPublish{openNATS(t, env("NATS"))},
		Now:       func() time.Time { return time.UnixMilli(nowMs) },
		Logger:    testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := ob.Relay(ctx)
	t.Fatalf("the relay returned (%d, %v) instead of hanging after its first publish", n, err)
}
