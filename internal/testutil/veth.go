package testutil

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
)

// Veth creates a veth pair with end aName in namespace a and end bName in namespace b, adds
// aAddr/bAddr (CIDR, "" for none) and sets both ends up. The pair is created directly inside
// the namespaces, so names only need to be unique per namespace. It is deleted in tb.Cleanup
// (deleting one end removes both).
func Veth(tb testing.TB, a *NetNS, aName, aAddr string, b *NetNS, bName, bAddr string) {
	tb.Helper()
	la := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(int(b.ns)),
	}
	if err := a.handle.LinkAdd(la); err != nil {
		tb.Fatalf("veth %s(%s) <-> %s(%s): %v", aName, a.name, bName, b.name, err)
	}
	tb.Cleanup(func() {
		if l, err := a.handle.LinkByName(aName); err == nil {
			_ = a.handle.LinkDel(l)
		}
	})
	for _, end := range []struct {
		ns         *NetNS
		name, addr string
	}{{a, aName, aAddr}, {b, bName, bAddr}} {
		if end.addr != "" {
			end.ns.AddAddr(tb, end.name, end.addr)
		}
		if err := end.ns.handle.LinkSetUp(end.ns.link(tb, end.name)); err != nil {
			tb.Fatalf("netns %s: set %s up: %v", end.ns.name, end.name, err)
		}
	}
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
