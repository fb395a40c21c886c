package xfrm

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/internal/testutil"
)

func testPolicy() datapath.Policy {
	return datapath.Policy{
		Selector: datapath.Selector{
			Local:      netip.MustParsePrefix("10.1.0.0/24"),
			Remote:     netip.MustParsePrefix("10.2.0.0/16"),
			Proto:      6,
			RemotePort: 443,
		},
		TunnelLocal:  netip.MustParseAddr("192.0.2.1"),
		TunnelRemote: netip.MustParseAddr("192.0.2.2"),
		ReqID:        42,
		Priority:     2000,
	}
}

func TestPolicyInstalledAndRemoved(t *testing.T) {
	ns := testutil.NewNetNS(t, "xfrm")
	d := newDatapath(t, ns)
	ctx := context.Background()
	p := testPolicy()
	if err := d.AddPolicy(ctx, p); err != nil {
		t.Fatalf("AddPolicy: %v", err)
	}
	if err := d.AddPolicy(ctx, p); err != nil {
		t.Fatalf("AddPolicy again (must be a no-op): %v", err)
	}

	h := ns.Handle()
	got, err := h.XfrmPolicyList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("XfrmPolicyList: %v", err)
	}
	type want struct {
		src, dst         string
		sport, dport     int
		tmplSrc, tmplDst string
	}
	wants := map[netlink.Dir]want{
		netlink.XFRM_DIR_OUT: {"10.1.0.0/24", "10.2.0.0/16", 0, 443, "192.0.2.1", "192.0.2.2"},
		netlink.XFRM_DIR_IN:  {"10.2.0.0/16", "10.1.0.0/24", 443, 0, "192.0.2.2", "192.0.2.1"},
		netlink.XFRM_DIR_FWD: {"10.2.0.0/16", "10.1.0.0/24", 443, 0, "192.0.2.2", "192.0.2.1"},
	}
	if len(got) != len(wants) {
		t.Fatalf("kernel holds %d policies, want %d: %v", len(got), len(wants), got)
	}
	for _, pol := range got {
		w, ok := wants[pol.Dir]
		if !ok {
			t.Errorf("unexpected policy %v", pol)
			continue
		}
		delete(wants, pol.Dir)
		if pol.Src.String() != w.src || pol.Dst.String() != w.dst || pol.SrcPort != w.sport || pol.DstPort != w.dport || pol.Proto != 6 {
			t.Errorf("%s selector %v:%d -> %v:%d proto %d, want %s:%d -> %s:%d proto 6",
				pol.Dir, pol.Src, pol.SrcPort, pol.Dst, pol.DstPort, pol.Proto, w.src, w.sport, w.dst, w.dport)
		}
		if pol.Priority != 2000 || pol.Action != netlink.XFRM_POLICY_ALLOW {
			t.Errorf("%s priority %d action %v, want 2000 allow", pol.Dir, pol.Priority, pol.Action)
		}
		if len(pol.Tmpls) != 1 {
			t.Errorf("%s has %d templates, want 1", pol.Dir, len(pol.Tmpls))
			continue
		}
		tm := pol.Tmpls[0]
		if tm.Src.String() != w.tmplSrc || tm.Dst.String() != w.tmplDst || tm.Proto != netlink.XFRM_PROTO_ESP ||
			tm.Mode != netlink.XFRM_MODE_TUNNEL || tm.Reqid != 42 || tm.Spi != 0 || tm.Optional != 0 {
			t.Errorf("%s template %v, want esp tunnel %s -> %s reqid 42 required", pol.Dir, tm, w.tmplSrc, w.tmplDst)
		}
	}

	if err := d.DeletePolicy(ctx, p); err != nil {
		t.Fatalf("DeletePolicy: %v", err)
	}
	assertNoXfrm(t, ns)
}

func TestPolicyForeignLeftAlone(t *testing.T) {
	ns := testutil.NewNetNS(t, "xfrm")
	h := ns.Handle()
	foreign, err := policiesFor(testPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.XfrmPolicyAdd(&foreign[0]); err != nil {
		t.Fatalf("add foreign out policy: %v", err)
	}
	t.Cleanup(func() { h.XfrmPolicyDel(&foreign[0]) })

	d, err := New(Options{Netns: ns.NsHandle()})
	if err != nil {
		t.Fatal(err)
	}
	// The same selectors clash with the foreign out policy: all or nothing.
	err = d.AddPolicy(context.Background(), testPolicy())
	if err == nil || !strings.Contains(err.Error(), "dir out") {
		t.Errorf("AddPolicy over a foreign policy: err = %v, want a clash on dir out", err)
	}
	other := testPolicy()
	other.Selector.Remote = netip.MustParsePrefix("10.3.0.0/16")
	if err := d.AddPolicy(context.Background(), other); err != nil {
		t.Fatalf("AddPolicy: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	pols, err := h.XfrmPolicyList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(pols) != 1 || pols[0].Dir != netlink.XFRM_DIR_OUT || pols[0].Dst.String() != "10.2.0.0/16" {
		t.Errorf("after Close the kernel holds %v, want only the foreign out policy", pols)
	}
}

func TestPolicyRejectsBadInput(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*datapath.Policy)
		wantHas string
	}{
		{"no tunnel remote", func(p *datapath.Policy) { p.TunnelRemote = netip.Addr{} }, "tunnel 192.0.2.1 -> invalid IP"},
		{"mixed selector families", func(p *datapath.Policy) { p.Selector.Remote = netip.MustParsePrefix("2001:db8::/32") }, "one family"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			tt.mutate(&p)
			if _, err := policiesFor(p); err == nil || !strings.Contains(err.Error(), tt.wantHas) {
				t.Fatalf("policiesFor error = %v, want one containing %q", err, tt.wantHas)
			}
		})
	}
}
