package xfrm

import (
	"crypto/rand"
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// newNetNS creates a uniquely named network namespace with loopback up, removed at cleanup.
// It skips the test when not root.
func newNetNS(tb testing.TB) netns.NsHandle {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: creates network namespaces and XFRM entries")
	}
	name := fmt.Sprintf("espgw-xfrm-%s", rand.Text()[:10])
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		tb.Fatalf("get current netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if err != nil {
		tb.Fatalf("create netns %s: %v", name, err)
	}
	if err := netns.Set(orig); err != nil {
		tb.Fatalf("return to original netns: %v", err)
	}
	tb.Cleanup(func() {
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			tb.Errorf("delete netns %s: %v", name, err)
		}
	})
	h := nsHandle(tb, ns, unix.NETLINK_ROUTE)
	lo, err := h.LinkByName("lo")
	if err != nil {
		tb.Fatalf("find lo in %s: %v", name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		tb.Fatalf("set lo up in %s: %v", name, err)
	}
	return ns
}

// nsHandle opens a netlink handle in ns for the test's own checks.
func nsHandle(tb testing.TB, ns netns.NsHandle, protos ...int) *netlink.Handle {
	tb.Helper()
	h, err := netlink.NewHandleAt(ns, protos...)
	if err != nil {
		tb.Fatalf("netlink handle in netns: %v", err)
	}
	tb.Cleanup(h.Close)
	return h
}

// newDatapath opens a Datapath in ns and closes it at cleanup.
func newDatapath(tb testing.TB, ns netns.NsHandle) *Datapath {
	tb.Helper()
	d, err := New(Options{Netns: ns})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() {
		if err := d.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return d
}

// assertNoXfrm fails if ns holds any XFRM state or policy.
func assertNoXfrm(tb testing.TB, ns netns.NsHandle) {
	tb.Helper()
	h := nsHandle(tb, ns, unix.NETLINK_XFRM)
	states, err := h.XfrmStateList(netlink.FAMILY_ALL)
	if err != nil {
		tb.Fatalf("XfrmStateList: %v", err)
	}
	for _, s := range states {
		tb.Errorf("state left behind: %v", s)
	}
	pols, err := h.XfrmPolicyList(netlink.FAMILY_ALL)
	if err != nil {
		tb.Fatalf("XfrmPolicyList: %v", err)
	}
	for _, p := range pols {
		tb.Errorf("policy left behind: %v", p)
	}
}
