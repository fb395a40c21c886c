// Package testutil is the harness shared by espgw's interop and datapath tests: network
// namespaces, veth links, background processes, packet capture and the tshark wire oracle.
//
// Every helper takes a testing.TB, calls tb.Helper and undoes what it created in tb.Cleanup.
// Helpers that need root or an external tool skip the test with a message naming what is
// missing; with ESPGW_REQUIRE_INTEROP=1 in the environment they fail it instead, so a CI run
// cannot pass by skipping.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// RequireInteropEnv is the environment variable that turns skips into failures when set to "1".
const RequireInteropEnv = "ESPGW_REQUIRE_INTEROP"

// Skipf skips the test with the formatted reason, or fails it when ESPGW_REQUIRE_INTEROP=1.
func Skipf(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(RequireInteropEnv) == "1" {
		tb.Fatalf("%s (failing instead of skipping because %s=1)", msg, RequireInteropEnv)
	}
	tb.Skipf("%s", msg)
}

// NotApplicable skips a test that does not apply here, which no install can change: it
// covers a condition this machine lacks (a kernel without ESP where ESP is present, two
// CPUs on one), runs only on request (a manual lab, or not under -short). It skips even with
// ESPGW_REQUIRE_INTEROP=1; a missing tool, file or privilege is Skipf's.
func NotApplicable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	tb.Skipf("not applicable: "+format, args...)
}

// RequireRoot skips the test unless it runs as root (uid 0).
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Skipf(tb, "needs root: creates network namespaces and runs tools inside them (euid %d)", os.Geteuid())
	}
}

// RequireTool skips the test unless tool (a name looked up in PATH, or an absolute path) exists.
// aptPackage names the Debian package that provides it, for the skip message.
func RequireTool(tb testing.TB, tool, aptPackage string) string {
	tb.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		Skipf(tb, "needs %s: not found (%v); install it with: apt-get install %s", tool, err, aptPackage)
	}
	return path
}

// RequireFile skips the test unless path exists; what and aptPackage name it in the skip message.
func RequireFile(tb testing.TB, path, what, aptPackage string) {
	tb.Helper()
	if _, err := os.Stat(path); err != nil {
		Skipf(tb, "needs %s (%s): %v; install it with: apt-get install %s", what, path, err, aptPackage)
	}
}
