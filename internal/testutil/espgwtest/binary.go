// Package espgwtest runs the espgw binary under test (`espgw run`) in a test network namespace
// and drives it through its CLI: `espgw up`, `espgw status --json`, SIGTERM.
//
// A test package's TestMain calls Find or Build once; Start then runs that binary.
package espgwtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// BinEnv names a prebuilt espgw binary to test instead of building one.
const BinEnv = "ESPGW_BIN"

// bin is the binary under test, set by Find or Build.
var bin string

// Find makes the binary named by $ESPGW_BIN the one under test and returns its absolute path.
// It fails if BinEnv is unset or names no regular file.
func Find() (string, error) {
	p := os.Getenv(BinEnv)
	if p == "" {
		return "", errors.New(BinEnv + " is not set: want the path of an espgw binary")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s=%q: %w", BinEnv, p, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%s=%q: %w", BinEnv, p, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s=%q: %v, want a regular file", BinEnv, p, fi.Mode())
	}
	bin = abs
	return abs, nil
}

// Build compiles ./cmd/espgw into dir/espgw with the go tool, makes it the binary under test and
// returns its path.
func Build(dir string) (string, error) {
	out := filepath.Join(dir, "espgw")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		gobin = p
	}
	cmd := exec.Command(gobin, "build", "-o", out, "github.com/espgw/espgw/cmd/espgw")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/espgw: %w\n%s", err, b)
	}
	bin = out
	return out, nil
}
