package pebble_test

import (
	"testing"

	"github.com/tccd/tccd"
	"github.com/tccd/tccd/pebble"
	"github.com/tccd/tccd/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dir := t.TempDir()
		return func() (tccd.Store, error) { return pebble.Open(dir, pebble.Options{CacheSize: 8 << 20}) }
	})
}

// TestCloseTwice: a second Close does nothing (it panicked) and returns
// the first one's answer.
func TestCloseTwice(t *testing.T) {
	s, err := pebble.Open(t.TempDir(), pebble.Options{CacheSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
