package testutil

import (
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// RunTestBinary runs a copy of the running test binary with args (e.g. "-test.run", "^TestX$")
// and returns its combined output and exit error. Its environment is env plus PATH and
// TMPDIR, nothing inherited. With asNobody it runs as user nobody without supplementary
// groups, which needs root: tests use it to prove that other tests need no privileges.
func RunTestBinary(tb testing.TB, asNobody bool, env []string, args ...string) (string, error) {
	tb.Helper()
	dir, err := os.MkdirTemp("", "espgw-testbin-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // MkdirTemp makes it 0700
		tb.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(os.Args[0]))
	copyExecutable(tb, os.Args[0], bin)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR=" + os.TempDir()}, env...)
	if asNobody {
		uid, gid := nobody()
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// nobody returns the uid and gid of user nobody (65534 if the lookup fails).
func nobody() (uid, gid uint32) {
	uid, gid = 65534, 65534
	if u, err := user.Lookup("nobody"); err == nil {
		if id, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			uid = uint32(id)
		}
		if id, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			gid = uint32(id)
		}
	}
	return uid, gid
}

func copyExecutable(tb testing.TB, src, dst string) {
	tb.Helper()
	in, err := os.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
}
