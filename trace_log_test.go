package tccd

import (
	"reflect"
	"testing"
)

func TestLogTx(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name        string
		traceparent string
		args        []any
		want        []any
	}{
		{"traced", tp, []any{"state", StateConfirmed}, []any{"id", "T1", "trace_id", "4bf92f3577b34da6a3ce929d0e0e4736", "state", StateConfirmed}},
		{"no trace", "", []any{"err", "x"}, []any{"id", "T1", "err", "x"}},
		{"a malformed traceparent is left out", "00-abc-01", nil, []any{"id", "T1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := logTx("T1", tc.traceparent, tc.args...); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("logTx = %v, want %v", got, tc.want)
			}
		})
	}
}
