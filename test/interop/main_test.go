package interop

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// binEnv names a prebuilt espgw binary to test instead of building one.
const binEnv = "ESPGW_BIN"

// espgwBin is the binary under test, set by TestMain.
var espgwBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if p := os.Getenv(binEnv); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s=%q: %v\n", binEnv, p, err)
			return 2
		}
		espgwBin = abs
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "espgw-interop-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "build espgw: %v\n", err)
		return 2
	}
	defer os.RemoveAll(dir)
	espgwBin = filepath.Join(dir, "espgw")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		gobin = p
	}
	cmd := exec.Command(gobin, "build", "-o", espgwBin, "github.com/espgw/espgw/cmd/espgw")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: go build ./cmd/espgw: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}
