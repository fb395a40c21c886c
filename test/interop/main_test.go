package interop

import (
	"fmt"
	"os"
	"testing"

	"github.com/espgw/espgw/internal/testutil/espgwtest"
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// espgwBin is the binary under test, for commands that need no running daemon.
var espgwBin string

// run tests the binary named by ESPGW_BIN, or else one built from ./cmd/espgw.
func run(m *testing.M) int {
	var err error
	if os.Getenv(espgwtest.BinEnv) != "" {
		if espgwBin, err = espgwtest.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
			return 2
		}
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "espgw-interop-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "build espgw: %v\n", err)
		return 2
	}
	defer os.RemoveAll(dir)
	if espgwBin, err = espgwtest.Build(dir); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	return m.Run()
}
