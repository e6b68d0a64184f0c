package main

import (
	"os"
	"reflect"
	"testing"

	"github.com/BurntSushi/toml"
)

// TestExampleConfigInSync keeps tccd.example.toml true: it names every
// option, nothing else, and its values are the defaults.
func TestExampleConfigInSync(t *testing.T) {
	const path = "../../tccd.example.toml"
	raw := map[string]any{}
	if _, err := toml.DecodeFile(path, &raw); err != nil {
		t.Fatal(err)
	}
	def := DefaultConfig()
	for _, o := range def.options() {
		if _, ok := raw[o.name]; !ok {
			t.Errorf("example config lacks %q", o.name)
		}
	}
	if len(raw) != len(def.options()) {
		t.Errorf("example config has %d keys, there are %d options", len(raw), len(def.options()))
	}
	got := DefaultConfig()
	if err := got.Load(path, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, def) {
		t.Errorf("example values differ from the defaults:\n got  %+v\n want %+v", got, def)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}
