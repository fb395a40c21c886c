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

// run tests the binary named by ESPGW_BIN, or else one built from ./cmd/espgw.
func run(m *testing.M) int {
	if os.Getenv(espgwtest.BinEnv) != "" {
		if _, err := espgwtest.Find(); err != nil {
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
	if _, err := espgwtest.Build(dir); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	return m.Run()
}
