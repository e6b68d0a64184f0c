package backoff

import (
	"testing"
	"time"
)

func TestCeiling(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: time.Second}
	tests := []struct {
		n    int
		want time.Duration
	}{
		{0, 100 * time.Millisecond},
		{1, 200 * time.Millisecond},
		{2, 400 * time.Millisecond},
		{3, 800 * time.Millisecond},
		{4, time.Second},
		{100, time.Second},
	}
	for _, tt := range tests {
		if got := p.Ceiling(tt.n); got != tt.want {
			t.Errorf("Ceiling(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

func TestDelayBounds(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: time.Second}
	tests := []struct {
		name string
		n    int
		rnd  float64
		want time.Duration
	}{
		{"zero jitter floors at min/2", 3, 0, 50 * time.Millisecond},
		{"top of range", 3, 0.999999999, 800 * time.Millisecond},
		{"middle", 2, 0.5, 200 * time.Millisecond},
		{"capped", 50, 0.5, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Delay(tt.n, func() float64 { return tt.rnd })
			if diff := got - tt.want; diff > time.Microsecond || diff < -time.Microsecond {
				t.Errorf("Delay(%d, %v) = %v, want %v", tt.n, tt.rnd, got, tt.want)
			}
		})
	}
	for i := 0; i < 1000; i++ {
		if d := p.Delay(i%10, nil); d < 50*time.Millisecond || d > time.Second {
			t.Fatalf("Delay out of bounds: %v", d)
		}
	}
}
