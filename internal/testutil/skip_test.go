package testutil

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestNoDirectSkips fails for every test in the module that skips without this package:
// only Skipf and the Require* helpers (and NotApplicable, which never hides a missing
// dependency) may skip, so that ESPGW_REQUIRE_INTEROP=1 turns every skip for a missing tool,
// file or privilege into a failure.
func TestNoDirectSkips(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	allowed := filepath.Join(root, "internal", "testutil", "require.go")
	// A receiver, then a skip method; testutil.Skipf and its aliases are allowed below.
	direct := regexp.MustCompile(`(\w+)\.(Skip|Skipf|SkipNow)\(`)
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || path == allowed {
			return nil
		}
		files++
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for n := 1; s.Scan(); n++ {
			if m := direct.FindStringSubmatch(s.Text()); m != nil && !strings.HasSuffix(m[1], "testutil") {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s:%d skips directly, want testutil.Skipf/RequireRoot/RequireTool/RequireFile (or NotApplicable): %s",
					rel, n, strings.TrimSpace(s.Text()))
			}
		}
		return s.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("scanned %d Go files under %s, want the whole module", files, root)
	}
}

// skipProbeEnv selects the helper TestSkipProbe calls in a child test binary.
const skipProbeEnv = "ESPGW_SKIP_PROBE"

// TestSkipProbe is run by TestRequireInteropFails in a child process; on its own it does
// nothing.
func TestSkipProbe(t *testing.T) {
	switch os.Getenv(skipProbeEnv) {
	case "skipf":
		Skipf(t, "probe")
	case "root":
		RequireRoot(t)
	case "tool":
		RequireTool(t, "espgw-no-such-tool", "no-such-package")
	case "file":
		RequireFile(t, "/nonexistent/espgw-probe", "a probe file", "no-such-package")
	case "notapplicable":
		NotApplicable(t, "probe")
	}
}

// TestRequireInteropFails runs each skipping helper in a child test binary, with and
// without ESPGW_REQUIRE_INTEROP=1: each skips without it and fails with it, except
// NotApplicable, which always skips. RequireRoot runs as nobody, which needs root here.
func TestRequireInteropFails(t *testing.T) {
	RequireRoot(t)
	for _, probe := range []string{"skipf", "root", "tool", "file", "notapplicable"} {
		for _, require := range []bool{false, true} {
			env := []string{skipProbeEnv + "=" + probe}
			if require {
				env = append(env, RequireInteropEnv+"=1")
			}
			out, err := RunTestBinary(t, probe == "root", env, "-test.run", "^TestSkipProbe$", "-test.v")
			want := "--- SKIP: TestSkipProbe"
			if require && probe != "notapplicable" {
				want = "--- FAIL: TestSkipProbe"
			}
			if !strings.Contains(out, want) || (err != nil) != strings.Contains(want, "FAIL") {
				t.Errorf("%s with %v: exit %v, want %q in:\n%s", probe, env, err, want, out)
			}
		}
	}
}
