package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/pebble"
)

// fill writes n transactions in the given state straight into a data
// directory, as a coordinator would have left them: confirming ones for a
// recovery measurement, confirmed ones for a retention measurement. Links
// point at the benchmark's participants, so recovered transactions really
// get confirmed after the start.
func fill(ctx context.Context, dir string, n int, state tccd.State, parts []string, k int) error {
	s, err := pebble.Open(dir, pebble.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Now()
	for i := 0; i < n; i++ {
		if i%10000 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		id := fmt.Sprintf("fill-%s-%09d", state, i)
		tx := &tccd.Transaction{
			ID: id, Protocol: tccd.ProtocolAtomikos, State: state, Reason: tccd.ReasonRequested,
			CreatedAt: now, UpdatedAt: now, DecidedAt: now, Owner: "tccd",
		}
		if state.Final() {
			tx.FinishedAt = now
		}
		for j := 0; j < k; j++ {
			ps := tccd.ParticipantPending
			if state == tccd.StateConfirmed {
				ps = tccd.ParticipantConfirmed
			}
			tx.Participants = append(tx.Participants, tccd.Participant{
				URI:     parts[j%len(parts)] + "/r/" + id + "-" + strconv.Itoa(j),
				Expires: now.Add(time.Hour), State: ps,
			})
		}
		if err := s.Create(ctx, tx, false); err != nil {
			return err
		}
	}
	return nil
}

// RecoveryReport is the result of the recovery workload.
type RecoveryReport struct {
	Workload     string  `json:"workload"`
	Unfinished   int     `json:"unfinished"`
	Participants int     `json:"participants"`
	ReadyMS      float64 `json:"ready_ms"`   // from process start to /readyz 200
	SettledMS    float64 `json:"settled_ms"` // from process start to nothing left confirming
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
}

// runRecovery fills a data directory with cfg.Fill confirming
// transactions, starts tccd on it, and measures how long it takes to be
// ready and to settle them all.
func runRecovery(ctx context.Context, cfg Config, dataDir string, parts []string) (*RecoveryReport, error) {
	k := cfg.Participants[0]
	fmt.Fprintf(cfg.Err, "writing %d confirming transactions into %s\n", cfg.Fill, dataDir)
	if err := fill(ctx, dataDir, cfg.Fill, tccd.StateConfirming, parts, k); err != nil {
		return nil, fmt.Errorf("fill: %w", err)
	}
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data", dataDir, "--log-format", "json"}, cfg.ServeArgs...)
	start := time.Now()
	p, err := startProc(ctx, "tccd", cfg.Self, args, tccdListening)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if err := waitReadyFast(ctx, p.url()); err != nil {
		return nil, err
	}
	rep := &RecoveryReport{Workload: WorkloadRecovery, Unfinished: cfg.Fill, Participants: k, ReadyMS: ms(time.Since(start))}
	fmt.Fprintf(cfg.Err, "ready after %.0f ms; settling\n", rep.ReadyMS)
	client := newHTTPClient(4)
	for {
		resp, err := client.Get(p.url() + "/api/v1/transactions?state=confirming&limit=1")
		if err != nil {
			return nil, err
		}
		var body [64]byte
		n, _ := resp.Body.Read(body[:])
		resp.Body.Close()
		if string(body[:n]) == "{\"transactions\":[]}\n" {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	rep.SettledMS = ms(time.Since(start))
	rep.PeakRSSBytes, _ = p.peakRSS()
	return rep, nil
}

// waitReadyFast polls /readyz every 2 ms, for a precise ready time.
func waitReadyFast(ctx context.Context, base string) error {
	client := newHTTPClient(1)
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := client.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready", base)
}
