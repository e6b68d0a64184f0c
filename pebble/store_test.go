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
