package bench

import (
	"testing"

	"github.com/tccd/tccd/internal/testproc"
)

// bins holds the binaries the tests run, built once by TestMain.
var bins = map[string]string{}

func TestMain(m *testing.M) {
	testproc.Main(m, bins, "github.com/tccd/tccd/cmd/tccd")
}
