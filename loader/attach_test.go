package loader

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/espgw/espgw/internal/testutil"
)

// attached lists what is attached to dev in ns: TCX programs, cls_bpf filters, clsact
// qdiscs and an XDP program.
func attached(t *testing.T, ns *testutil.NetNS, dev string) (tcx, filters, clsact int, xdp bool) {
	t.Helper()
	ns.In(t, func() error {
		lnk, err := netlink.LinkByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		idx := lnk.Attrs().Index
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: at})
			if err != nil {
				t.Fatalf("query TCX: %v", err)
			}
			tcx += len(res.Programs)
		}
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			fs, err := netlink.FilterList(lnk, parent)
			if err == nil {
				filters += len(fs)
			}
		}
		qs, err := netlink.QdiscList(lnk)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			if q.Type() == "clsact" {
				clsact++
			}
		}
		xdp = lnk.Attrs().Xdp != nil && lnk.Attrs().Xdp.Attached
		return nil
	})
	return
}

func TestAttachDetach(t *testing.T) {
	tests := []struct {
		name        string
		legacy      bool
		preClsact   bool // a clsact qdisc exists before: Close must leave it
		tcx, filter int
	}{
		{name: "tcx", tcx: 2},
		{name: "legacy", legacy: true, filter: 2},
		{name: "legacy with existing clsact", legacy: true, preClsact: true, filter: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := testutil.NewNetNS(t, "espgw-ld-a"), testutil.NewNetNS(t, "espgw-ld-b")
			dev, _ := vethPair(t, a, b, "10.1.0.1/8", "10.2.0.1/8")
			if tt.preClsact {
				a.Exec(t, "ip", "link", "set", dev, "up")
				a.Exec(t, "tc", "qdisc", "add", "dev", dev, "clsact")
			}
			wantClsact := 0
			if tt.preClsact || tt.legacy {
				wantClsact = 1
			}
			l, err := Open(Options{})
			if err != nil {
				t.Fatal(err)
			}
			a.In(t, func() error {
				for _, h := range []Hook{HookEgress, HookIngress} {
					if err := l.AttachTC(dev, h, TCOptions{Legacy: tt.legacy}); err != nil {
						t.Fatal(err)
					}
				}
				if err := l.AttachXDP(dev); err != nil {
					t.Fatal(err)
				}
				if err := l.AttachTC("nonexistent0", HookEgress, TCOptions{}); err == nil {
					t.Error("AttachTC on a missing interface succeeded")
				}
				return nil
			})
			tcx, filters, clsact, xdp := attached(t, a, dev)
			if tcx != tt.tcx || filters != tt.filter || clsact != wantClsact || !xdp {
				t.Errorf("attached: %d TCX, %d filters, %d clsact, XDP %v; want %d, %d, %d, true",
					tcx, filters, clsact, xdp, tt.tcx, tt.filter, wantClsact)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			wantClsact = 0
			if tt.preClsact {
				wantClsact = 1
			}
			tcx, filters, clsact, xdp = attached(t, a, dev)
			if tcx != 0 || filters != 0 || clsact != wantClsact || xdp {
				t.Errorf("after Close: %d TCX, %d filters, %d clsact, XDP %v; want 0, 0, %d, false",
					tcx, filters, clsact, xdp, wantClsact)
			}
		})
	}
}
