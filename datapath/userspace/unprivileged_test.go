package userspace

import (
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// TestUnprivilegedInMemory runs this package's TestInMemory* tests again, from a copy of
// this test binary, as user nobody with no capabilities: whole tunnels must need neither
// root nor devices. A skip there fails too (ESPGW_REQUIRE_INTEROP=1 in its environment).
func TestUnprivilegedInMemory(t *testing.T) {
	testutil.RequireRoot(t) // to switch to nobody
	uid, gid := uint32(65534), uint32(65534)
	if u, err := user.Lookup("nobody"); err == nil {
		if id, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			uid = uint32(id)
		}
		if id, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			gid = uint32(id)
		}
	}
	dir, err := os.MkdirTemp("", "espgw-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "userspace.test")
	copyFile(t, os.Args[0], bin, 0o755)

	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=/usr/bin:/bin", "TMPDIR=" + os.TempDir(), testutil.RequireInteropEnv + "=1"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("as uid %d: %s %s: %v\n%s", uid, bin, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	var tests []string
	for _, l := range strings.Split(run("-test.list", "^TestInMemory"), "\n") {
		if strings.HasPrefix(l, "TestInMemory") {
			tests = append(tests, l)
		}
	}
	if len(tests) < 4 {
		t.Fatalf("found tests %q, want the in-memory tunnel tests", tests)
	}
	out := run("-test.run", "^TestInMemory", "-test.v", "-test.count=1")
	for _, name := range tests {
		if !regexp.MustCompile(`(?m)^--- PASS: ` + name + ` `).MatchString(out) {
			t.Errorf("%s did not pass as uid %d:\n%s", name, uid, out)
		}
	}
	if strings.Contains(out, "--- SKIP") {
		t.Errorf("a test skipped as uid %d:\n%s", uid, out)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
