package main

import (
	"strings"
	"testing"
)

// TestTracingConfig: tracing is off unless asked for (or the standard
// variable names otlp), and OTEL_* settings tccd cannot honour stop the
// start with a message instead of being ignored.
func TestTracingConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		on   bool
		err  string
	}{
		{"off by default", nil, nil, false, ""},
		{"the flag", []string{"--tracing"}, nil, true, ""},
		{"the environment", nil, map[string]string{"TCCD_TRACING": "true"}, true, ""},
		{"OTEL_TRACES_EXPORTER=otlp", nil, map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true, ""},
		{"OTEL_SDK_DISABLED wins", []string{"--tracing"}, map[string]string{"OTEL_SDK_DISABLED": "true"}, false, ""},
		{"gRPC is refused", []string{"--tracing"}, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, "http/protobuf"},
		{"gRPC does not matter when off", nil, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, ""},
		{"not a boolean", nil, map[string]string{"TCCD_TRACING": "yes please"}, false, "TCCD_TRACING"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parse(t, tc.args, tc.env)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseFlags: %v, want an error naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if on, _ := m.tracingOn(); on != tc.on {
				t.Errorf("tracing on %v, want %v", on, tc.on)
			}
		})
	}
}
