package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Figures are one system's results.
type Figures struct {
	Transactions int            `json:"transactions"`
	TxPerS       float64        `json:"tx_per_s"`
	P50MS        float64        `json:"p50_ms"`
	P90MS        float64        `json:"p90_ms"`
	P99MS        float64        `json:"p99_ms"`
	MaxMS        float64        `json:"max_ms"`
	Errors       int            `json:"errors"`
	ErrorsByKind map[string]int `json:"errors_by_kind"`
	// CPUPerTxUS is the coordinator process's CPU time per transaction,
	// PeakRSSBytes its peak resident memory during the phases; both 0 when
	// the process was not started by the benchmark.
	CPUPerTxUS   float64 `json:"cpu_us_per_tx,omitempty"`
	PeakRSSBytes int64   `json:"peak_rss_bytes,omitempty"`
	// SSEEvents is how many events the event-stream subscribers read
	// (--sse), SSELagged how many of them were dropped as too slow.
	SSEEvents int64 `json:"sse_events,omitempty"`
	SSELagged int64 `json:"sse_lagged,omitempty"`
}

// CurvePoint is the cost at one number of participants per transaction.
type CurvePoint struct {
	Participants   int     `json:"participants"`
	TxPerS         float64 `json:"tx_per_s"`
	BaselineTxPerS float64 `json:"baseline_tx_per_s"`
	Ratio          float64 `json:"ratio"`
	P50MS          float64 `json:"p50_ms"`
	BaselineP50MS  float64 `json:"baseline_p50_ms"`
	CPUPerTxUS     float64 `json:"cpu_us_per_tx,omitempty"`
}

// Report is the result of a run; --json prints it.
type Report struct {
	Workload             string  `json:"workload"`
	Participants         int     `json:"participants"`
	Concurrency          int     `json:"concurrency"`
	Rounds               int     `json:"rounds"`
	PhaseSeconds         float64 `json:"phase_seconds,omitempty"`
	ParticipantLatencyMS float64 `json:"participant_latency_ms"`
	Coordinator          string  `json:"coordinator,omitempty"`
	// Store is "postgres" when the started coordinators share a
	// PostgreSQL database; Nodes then has the figures of each cluster
	// size, and the headline figures are the first size's.
	Store string        `json:"store,omitempty"`
	Nodes []NodeFigures `json:"nodes,omitempty"`
	Figures
	Baseline Figures `json:"baseline"`
	// BaselineName names the baseline: "null coordinator", or for the
	// barrier workload "tccd one-shot" (the one-shot workload on the same
	// coordinator, measured in alternating phases).
	BaselineName string `json:"baseline_name"`
	// Ratio is tccd's throughput divided by the baseline's.
	Ratio float64 `json:"ratio"`
	// P99Ratio is tccd's p99 latency divided by the baseline's.
	P99Ratio float64 `json:"p99_ratio"`
	// P50DeltaMS is tccd's p50 latency minus the baseline's.
	P50DeltaMS float64 `json:"p50_delta_ms"`
	// LogBaseline is the null coordinator with a log (decision synced,
	// outcome not, on Pebble): what the log alone costs. LogBaselineRatio
	// is its throughput over the null coordinator's — a bound for any
	// durable coordinator on this machine — and RatioToLog tccd's over it.
	LogBaseline      *Figures     `json:"log_baseline,omitempty"`
	LogBaselineRatio float64      `json:"log_baseline_ratio,omitempty"`
	RatioToLog       float64      `json:"ratio_to_log_baseline,omitempty"`
	FsyncPerS        float64      `json:"fsync_per_s"`
	Curve            []CurvePoint `json:"curve,omitempty"`
}

func (r Report) writeJSON(w io.Writer) error { return writeJSON(w, r) }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (r Report) writeTable(w io.Writer, chart string) {
	fmt.Fprintf(w, "\nworkload %s, %d participants per transaction, %d concurrent initiators, %d rounds",
		r.Workload, r.Participants, r.Concurrency, r.Rounds)
	if r.ParticipantLatencyMS > 0 {
		fmt.Fprintf(w, ", participant latency %.1fms", r.ParticipantLatencyMS)
	}
	fmt.Fprintf(w, "\nraw fsync rate of the data dir: %.0f/s\n\n", r.FsyncPerS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\ttx/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\terrors\tCPU µs/tx\tpeak RSS MiB\t")
	row := func(name string, f Figures) {
		cpu, rss := "n/a", "n/a"
		if f.CPUPerTxUS > 0 {
			cpu = fmt.Sprintf("%.0f", f.CPUPerTxUS)
			rss = fmt.Sprintf("%.1f", float64(f.PeakRSSBytes)/(1<<20))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%s\t%s\t\n", name, f.TxPerS, f.P50MS, f.P90MS, f.P99MS, f.MaxMS, f.Errors, cpu, rss)
	}
	name := "tccd"
	if r.Workload == WorkloadBarrier {
		name = "tccd barrier"
	}
	row(name, r.Figures)
	row(r.BaselineName, r.Baseline)
	all := []Figures{r.Figures, r.Baseline}
	if r.LogBaseline != nil {
		row("null + log", *r.LogBaseline)
		all = append(all, *r.LogBaseline)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nthroughput ratio (%s / %s): %.3f   p99 ratio: %.2f   p50 difference: %+.2fms\n", name, r.BaselineName, r.Ratio, r.P99Ratio, r.P50DeltaMS)
	if r.SSEEvents > 0 || r.SSELagged > 0 {
		fmt.Fprintf(w, "event-stream subscribers read %d events (%.1f per transaction); %d dropped as too slow\n",
			r.SSEEvents, float64(r.SSEEvents)/float64(max(1, r.Transactions)), r.SSELagged)
	}
	if r.LogBaseline != nil {
		fmt.Fprintf(w, "the log alone (null+log / null): %.3f   tccd / null+log: %.3f\n", r.LogBaselineRatio, r.RatioToLog)
	}
	for _, f := range all {
		if f.Errors > 0 {
			kinds := make([]string, 0, len(f.ErrorsByKind))
			for k, v := range f.ErrorsByKind {
				kinds = append(kinds, fmt.Sprintf("%s=%d", k, v))
			}
			sort.Strings(kinds)
			fmt.Fprintf(w, "errors: %s\n", strings.Join(kinds, " "))
		}
	}
	if len(r.Curve) > 0 {
		fmt.Fprintln(w, "\ncost by participants per transaction:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "participants\ttccd tx/s\tnull tx/s\tratio\ttccd p50 ms\tnull p50 ms\tCPU µs/tx\t")
		for _, c := range r.Curve {
			fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.3f\t%.2f\t%.2f\t%.0f\t\n", c.Participants, c.TxPerS, c.BaselineTxPerS, c.Ratio, c.P50MS, c.BaselineP50MS, c.CPUPerTxUS)
		}
		tw.Flush()
	}
	if chart != "" {
		fmt.Fprintf(w, "\nlatency chart: %s\n", chart)
	}
}

// latencyChart draws the latency distributions of both systems as an SVG:
// latency (ms) against percentile, on a scale that spreads the tail.
func latencyChart(r Report, aggs []*aggregate) []byte {
	const W, H, left, right, top, bottom = 760.0, 420.0, 70.0, 20.0, 40.0, 60.0
	pw, ph := W-left-right, H-top-bottom
	// x: percentile on a "nines" scale: 0 → 0, 90 → 1, 99 → 2, 99.9 → 3.
	qs := []float64{0, .25, .5, .75, .9, .95, .99, .995, .999}
	nines := func(q float64) float64 {
		if q >= .999 {
			return 3
		}
		return -log10(1 - q)
	}
	series := []struct {
		name, color string
		lat         []time.Duration
	}{{"tccd", "#d62728", nil}, {"null coordinator", "#1f77b4", nil}, {"null + log", "#2ca02c", nil}}
	series = series[:len(aggs)]
	if r.Workload == WorkloadBarrier {
		series[0].name = "tccd barrier"
	}
	if len(series) > 1 && r.BaselineName != "" {
		series[1].name = r.BaselineName
	}
	for i, a := range aggs {
		series[i].lat = a.lat
	}
	maxMS := 0.0
	for _, q := range qs {
		for _, s := range series {
			maxMS = max(maxMS, ms(percentile(s.lat, q)))
		}
	}
	if maxMS == 0 {
		maxMS = 1
	}
	x := func(q float64) float64 { return left + nines(q)/3*pw }
	y := func(v float64) float64 { return top + ph - v/maxMS*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15">Latency by percentile: %s, %d participants, %d concurrent</text>`+"\n", left, r.Workload, r.Participants, r.Concurrency)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, top+ph, left+pw, top+ph)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, top, left, top+ph)
	for _, q := range qs {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">p%s</text>`+"\n", x(q), top+ph+18, strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", q*100), "0"), "."))
	}
	for i := 0; i <= 4; i++ {
		v := maxMS * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%.2f</text>`+"\n", left-6, y(v)+4, v)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(v), left+pw, y(v))
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">percentile</text>`+"\n", left+pw/2, H-15)
	fmt.Fprintf(&b, `<text x="16" y="%.0f" transform="rotate(-90 16 %.0f)" text-anchor="middle">latency (ms)</text>`+"\n", top+ph/2, top+ph/2)
	for i, s := range series {
		var pts []string
		for j := 0; j <= 300; j++ {
			q := 1 - pow10(-3*float64(j)/300)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(q), y(ms(percentile(s.lat, q)))))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="14" height="4" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n", left+20, top+12+float64(i)*18, s.color, left+40, top+17+float64(i)*18, s.name)
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func log10(v float64) float64 { return math.Log10(v) }
func pow10(v float64) float64 { return math.Pow(10, v) }
