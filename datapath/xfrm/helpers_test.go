package xfrm

import (
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/espgw/espgw/internal/testutil"
)

// newDatapath opens a Datapath in ns and closes it at cleanup.
func newDatapath(tb testing.TB, ns *testutil.NetNS) *Datapath {
	tb.Helper()
	d, err := New(Options{Netns: ns.NsHandle()})
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
func assertNoXfrm(tb testing.TB, ns *testutil.NetNS) {
	tb.Helper()
	states, err := ns.Handle().XfrmStateList(netlink.FAMILY_ALL)
	if err != nil {
		tb.Fatalf("XfrmStateList: %v", err)
	}
	for _, s := range states {
		tb.Errorf("state left behind: %v", s)
	}
	pols, err := ns.Handle().XfrmPolicyList(netlink.FAMILY_ALL)
	if err != nil {
		tb.Fatalf("XfrmPolicyList: %v", err)
	}
	for _, p := range pols {
		tb.Errorf("policy left behind: %v", p)
	}
}
