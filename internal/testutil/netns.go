package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NetNS is a named network namespace (visible in `ip netns list`) owned by one test.
type NetNS struct {
	name   string
	handle *netlink.Handle
	ns     netns.NsHandle
}

// NewNetNS creates the namespace prefix-XXXXXXXX (random suffix), brings lo up and deletes the
// namespace in tb.Cleanup. It skips the test unless running as root with `ip` (iproute2).
func NewNetNS(tb testing.TB, prefix string) *NetNS {
	tb.Helper()
	RequireRoot(tb)
	RequireTool(tb, "ip", "iproute2")
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		tb.Fatalf("netns name suffix: %v", err)
	}
	name := prefix + "-" + hex.EncodeToString(suffix[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n := &NetNS{name: name, ns: -1}
	tb.Cleanup(func() { n.remove(tb) })

	h, err := netns.GetFromName(name)
	if err != nil {
		tb.Fatalf("open netns %s: %v", name, err)
	}
	n.ns = h
	n.handle, err = netlink.NewHandleAt(h)
	if err != nil {
		tb.Fatalf("netlink handle in netns %s: %v", name, err)
	}
	lo, err := n.handle.LinkByName("lo")
	if err == nil {
		err = n.handle.LinkSetUp(lo)
	}
	if err != nil {
		tb.Fatalf("set lo up in netns %s: %v", name, err)
	}
	return n
}

func (n *NetNS) remove(tb testing.TB) {
	if n.handle != nil {
		n.handle.Close()
	}
	if n.ns >= 0 {
		n.ns.Close()
	}
	if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
		tb.Errorf("ip netns del %s: %v: %s", n.name, err, out)
	}
}

// Name is the namespace name, as used by `ip netns exec NAME`.
func (n *NetNS) Name() string { return n.name }

// String returns Name.
func (n *NetNS) String() string { return n.name }

// Handle is a netlink handle bound to the namespace; it is closed in tb.Cleanup.
func (n *NetNS) Handle() *netlink.Handle { return n.handle }

// NsHandle is the namespace file descriptor (e.g. for netlink.NewHandleAt or nl.SubscribeAt);
// it is closed in tb.Cleanup.
func (n *NetNS) NsHandle() netns.NsHandle { return n.ns }

// Do runs f on a dedicated OS thread switched into the namespace and returns its error.
// Sockets, TUN devices and BPF links created by f stay in the namespace after Do returns.
// If the thread cannot be switched back it is discarded instead of being reused.
func (n *NetNS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.ns); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.name, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime terminates it when this goroutine exits.
			errc <- fmt.Errorf("leave netns %s: %w (after f returned %v)", n.name, err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// In runs f on the calling goroutine with its OS thread switched into the namespace, and
// fails the test if f returns an error; unlike Do, f may call tb.Fatal. Sockets, TUN
// devices and BPF links created by f stay in the namespace after In returns. If the thread
// cannot be switched back, it stays locked and ends with the goroutine.
func (n *NetNS) In(tb testing.TB, f func() error) {
	tb.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		tb.Fatalf("get current netns: %v", err)
	}
	defer orig.Close()
	if err := netns.Set(n.ns); err != nil {
		runtime.UnlockOSThread()
		tb.Fatalf("enter netns %s: %v", n.name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			tb.Errorf("leave netns %s: %v", n.name, err)
			return
		}
		runtime.UnlockOSThread()
	}()
	if err := f(); err != nil {
		tb.Fatalf("in netns %s: %v", n.name, err)
	}
}

// Command returns an *exec.Cmd that runs argv inside the namespace via `ip netns exec`.
// `ip netns exec` execs argv in place, so the command's PID is argv's PID.
func (n *NetNS) Command(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.name}, argv...)...)
}

// Exec runs argv inside the namespace, fails the test if it fails, and returns its stdout+stderr.
func (n *NetNS) Exec(tb testing.TB, argv ...string) string {
	tb.Helper()
	out, err := n.Command(argv...).CombinedOutput()
	if err != nil {
		tb.Fatalf("netns %s: %s: %v: %s", n.name, strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// Sysctl writes value to /proc/sys/<key> (key with dots or slashes) inside the namespace,
// e.g. n.Sysctl(tb, "net.ipv4.ip_forward", "1").
func (n *NetNS) Sysctl(tb testing.TB, key, value string) {
	tb.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	if err := n.Do(func() error { return os.WriteFile(path, []byte(value), 0o644) }); err != nil {
		tb.Fatalf("netns %s: sysctl %s=%s: %v", n.name, key, value, err)
	}
}

// AddAddr adds cidr (e.g. "10.10.1.1/32") to device dev inside the namespace.
// The address disappears with the namespace.
func (n *NetNS) AddAddr(tb testing.TB, dev, cidr string) {
	tb.Helper()
	link := n.link(tb, dev)
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		tb.Fatalf("netns %s: address %q: %v", n.name, cidr, err)
	}
	if err := n.handle.AddrAdd(link, addr); err != nil {
		tb.Fatalf("netns %s: add address %s to %s: %v", n.name, cidr, dev, err)
	}
}

// AddRoute adds a route to dst (a prefix, or "default") via gateway gw (may be "") out of
// device dev (may be "" when gw is given) inside the namespace.
func (n *NetNS) AddRoute(tb testing.TB, dst, gw, dev string) {
	tb.Helper()
	r := &netlink.Route{}
	if dst == "default" {
		dst = "0.0.0.0/0"
	}
	p, err := netip.ParsePrefix(dst)
	if err != nil {
		tb.Fatalf("netns %s: route destination %q: %v", n.name, dst, err)
	}
	r.Dst = prefixToIPNet(p)
	if gw != "" {
		a, err := netip.ParseAddr(gw)
		if err != nil {
			tb.Fatalf("netns %s: route gateway %q: %v", n.name, gw, err)
		}
		r.Gw = a.AsSlice()
	}
	if dev != "" {
		r.LinkIndex = n.link(tb, dev).Attrs().Index
	}
	if err := n.handle.RouteAdd(r); err != nil {
		tb.Fatalf("netns %s: add route %s via %q dev %q: %v", n.name, dst, gw, dev, err)
	}
}

// DisableTxOffload turns TX checksum offload off on dev (ethtool -K dev tx off), so captured
// outgoing packets carry final checksums. It only logs when ethtool is missing or fails.
func (n *NetNS) DisableTxOffload(tb testing.TB, dev string) {
	tb.Helper()
	if out, err := n.Command("ethtool", "-K", dev, "tx", "off").CombinedOutput(); err != nil {
		tb.Logf("netns %s: ethtool -K %s tx off (apt: ethtool): %v: %s", n.name, dev, err, out)
	}
}

func (n *NetNS) link(tb testing.TB, dev string) netlink.Link {
	tb.Helper()
	link, err := n.handle.LinkByName(dev)
	if err != nil {
		tb.Fatalf("netns %s: link %q: %v", n.name, dev, err)
	}
	return link
}
