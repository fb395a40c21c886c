package userspace

import (
	"regexp"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// TestUnprivilegedInMemory runs this package's TestInMemory* tests again, from a copy of
// this test binary, as user nobody with no capabilities: whole tunnels must need neither
// root nor devices. A skip there fails too (ESPGW_REQUIRE_INTEROP=1 in its environment).
func TestUnprivilegedInMemory(t *testing.T) {
	testutil.RequireRoot(t) // to switch to nobody
	env := []string{testutil.RequireInteropEnv + "=1"}
	list, err := testutil.RunTestBinary(t, true, env, "-test.list", "^TestInMemory")
	if err != nil {
		t.Fatalf("list the tests as nobody: %v\n%s", err, list)
	}
	var tests []string
	for _, l := range strings.Split(list, "\n") {
		if strings.HasPrefix(l, "TestInMemory") {
			tests = append(tests, l)
		}
	}
	if len(tests) < 4 {
		t.Fatalf("found tests %q, want the in-memory tunnel tests", tests)
	}
	out, err := testutil.RunTestBinary(t, true, env, "-test.run", "^TestInMemory", "-test.v", "-test.count=1")
	if err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	for _, name := range tests {
		if !regexp.MustCompile(`(?m)^--- PASS: ` + name + ` `).MatchString(out) {
			t.Errorf("%s did not pass as nobody:\n%s", name, out)
		}
	}
	if strings.Contains(out, "--- SKIP") {
		t.Errorf("a test skipped as nobody:\n%s", out)
	}
}
