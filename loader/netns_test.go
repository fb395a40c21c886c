package loader

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// testNS is a named network namespace that the test removes.
type testNS struct {
	name   string
	handle netns.NsHandle
}

func randomSuffix(tb testing.TB) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func newNetNS(tb testing.TB, suffix, role string) *testNS {
	tb.Helper()
	requireRoot(tb)
	name := "espgw-ld-" + role + "-" + suffix
	mustRun(tb, "ip", "netns", "add", name)
	tb.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		tb.Fatalf("open namespace %s: %v", name, err)
	}
	tb.Cleanup(func() { h.Close() })
	mustRun(tb, "ip", "-n", name, "link", "set", "lo", "up")
	return &testNS{name: name, handle: h}
}

// do runs f on an OS thread inside the namespace; sockets and attachments made there stay
// in the namespace.
func (n *testNS) do(tb testing.TB, f func()) {
	tb.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		tb.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(n.handle); err != nil {
		tb.Fatalf("enter %s: %v", n.name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(fmt.Sprintf("cannot return to the original network namespace: %v", err))
		}
	}()
	f()
}

// exec runs a command inside the namespace.
func (n *testNS) exec(tb testing.TB, args ...string) {
	tb.Helper()
	mustRun(tb, "ip", append([]string{"netns", "exec", n.name}, args...)...)
}

func mustRun(tb testing.TB, name string, args ...string) {
	tb.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func requireTool(tb testing.TB, name string) {
	tb.Helper()
	if _, err := exec.LookPath(name); err != nil {
		tb.Skipf("needs %s: %v", name, err)
	}
}

// vethPair connects a and b with a veth pair, addresses aAddr/bAddr (CIDR), and returns the
// interface names. Transmit checksum offload is off on both ends so every TCP segment crosses
// with a full checksum that the receiver verifies.
func vethPair(tb testing.TB, suffix string, a, b *testNS, aAddr, bAddr string) (string, string) {
	tb.Helper()
	requireTool(tb, "ethtool")
	an, bn := "va-"+suffix, "vb-"+suffix
	mustRun(tb, "ip", "link", "add", an, "netns", a.name, "type", "veth", "peer", "name", bn, "netns", b.name)
	for _, e := range []struct {
		ns        *testNS
		dev, addr string
	}{{a, an, aAddr}, {b, bn, bAddr}} {
		mustRun(tb, "ip", "-n", e.ns.name, "addr", "add", e.addr, "dev", e.dev)
		mustRun(tb, "ip", "-n", e.ns.name, "link", "set", e.dev, "up")
		e.ns.exec(tb, "ethtool", "-K", e.dev, "tx", "off")
	}
	return an, bn
}

// tcpCounter reads one Tcp counter of /proc/net/snmp as seen from inside the namespace.
func (n *testNS) tcpCounter(tb testing.TB, field string) uint64 {
	tb.Helper()
	var v uint64
	n.do(tb, func() {
		f, err := os.Open("/proc/thread-self/net/snmp")
		if err != nil {
			tb.Fatal(err)
		}
		defer f.Close()
		var names []string
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) == 0 || fields[0] != "Tcp:" {
				continue
			}
			if names == nil {
				names = fields
				continue
			}
			for i, name := range names {
				if name == field && i < len(fields) {
					v, err = strconv.ParseUint(fields[i], 10, 64)
					if err != nil {
						tb.Fatalf("Tcp %s = %q: %v", field, fields[i], err)
					}
					return
				}
			}
		}
		tb.Fatalf("no Tcp %s in /proc/net/snmp of %s", field, n.name)
	})
	return v
}
