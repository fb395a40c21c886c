package userspace

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: creates network namespaces, veth pairs and TUN devices")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("needs iproute2 (ip) to set up namespaces")
	}
}

// newNetNS creates a uniquely named namespace with lo up and deletes it at cleanup.
func newNetNS(tb testing.TB, prefix string) string {
	tb.Helper()
	var r [3]byte
	rand.Read(r[:])
	name := prefix + "-" + hex.EncodeToString(r[:])
	run(tb, "", "ip", "netns", "add", name)
	tb.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(tb, name, "ip", "link", "set", "lo", "up")
	return name
}

// run executes a command, inside namespace ns unless ns is empty, and returns its output.
func run(tb testing.TB, ns string, args ...string) string {
	tb.Helper()
	out, err := command(ns, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func command(ns string, args ...string) *exec.Cmd {
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	return exec.Command(args[0], args[1:]...)
}

// inNetNS runs f on an OS thread switched into namespace ns, for anything that opens
// sockets or devices there.
func inNetNS(tb testing.TB, ns string, f func() error) {
	tb.Helper()
	done := make(chan struct{})
	var failure any
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is never unlocked: it dies with the goroutine instead of returning to
		// the pool in the wrong namespace.
		h, err := netns.GetFromName(ns)
		if err != nil {
			failure = err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			failure = err
			return
		}
		if err := f(); err != nil {
			failure = err
		}
	}()
	<-done
	if failure != nil {
		tb.Fatalf("in netns %s: %v", ns, failure)
	}
}
