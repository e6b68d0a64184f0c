package trip_test

import (
	"testing"

	"github.com/tccd/tccd/examples/trip"
)

func TestParseLeg(t *testing.T) {
	tests := []struct {
		in             string
		airline, url   string
		flight, errMsg string
	}{
		{in: "swiss=http://127.0.0.1:9101/flights/LX318", airline: "swiss", url: "http://127.0.0.1:9101/flights/LX318", flight: "LX318"},
		{in: "easyjet=https://ej.example/api/flights/U2-5201/", airline: "easyjet", url: "https://ej.example/api/flights/U2-5201", flight: "U2-5201"},
		{in: "swiss", errMsg: "want"},
		{in: "=http://127.0.0.1:9101/flights/LX318", errMsg: "want"},
		{in: "swiss=ftp://127.0.0.1/flights/LX318", errMsg: "want"},
		{in: "swiss=http://127.0.0.1:9101/LX318", errMsg: "want"},
	}
	for _, tt := range tests {
		leg, err := trip.ParseLeg(tt.in)
		if tt.errMsg != "" {
			if err == nil {
				t.Errorf("ParseLeg(%q) accepted: %+v", tt.in, leg)
			}
			continue
		}
		if err != nil || leg.Airline != tt.airline || leg.URL != tt.url || leg.Flight() != tt.flight {
			t.Errorf("ParseLeg(%q) = %+v (flight %q), %v", tt.in, leg, leg.Flight(), err)
		}
	}
}
