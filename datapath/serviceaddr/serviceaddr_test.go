package serviceaddr

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/internal/testutil"
)

// newNetNS creates a namespace holding veth0 (192.0.2.1/24 and 2001:db8:f::1/64, up) and
// its peer veth1; both go away with the namespace at cleanup. It skips the test when not root.
func newNetNS(tb testing.TB) (netns.NsHandle, *netlink.Handle) {
	tb.Helper()
	ns := testutil.NewNetNS(tb, "svc")
	testutil.Veth(tb, ns, "veth0", "", ns, "veth1", "")
	mustAddAddr(tb, ns.Handle(), "192.0.2.1/24")
	mustAddAddr(tb, ns.Handle(), "2001:db8:f::1/64")
	return ns.NsHandle(), ns.Handle()
}

func mustAddAddr(tb testing.TB, h *netlink.Handle, cidr string) {
	tb.Helper()
	l, err := h.LinkByName("veth0")
	if err != nil {
		tb.Fatal(err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		tb.Fatal(err)
	}
	a.Flags = unix.IFA_F_NODAD
	if err := h.AddrAdd(l, a); err != nil {
		tb.Fatalf("add %s: %v", cidr, err)
	}
}

// state is what the test reads back from the kernel.
type state struct {
	hasAddr bool
	routes  []string // "dst src gw" of the table
	rule    bool
}

func readState(tb testing.TB, h *netlink.Handle, addr netip.Addr, table, priority int) state {
	tb.Helper()
	fam := netlink.FAMILY_V4
	if addr.Is6() {
		fam = netlink.FAMILY_V6
	}
	var s state
	addrs, err := h.AddrList(nil, fam)
	if err != nil {
		tb.Fatal(err)
	}
	for _, a := range addrs {
		if a.IP.Equal(net.IP(addr.AsSlice())) {
			s.hasAddr = true
		}
	}
	routes, err := h.RouteListFiltered(fam, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range routes {
		s.routes = append(s.routes, fmt.Sprintf("%v %v %v", r.Dst, r.Src, r.Gw))
	}
	rules, err := h.RuleListFiltered(fam, &netlink.Rule{Table: table, Priority: priority}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PRIORITY)
	if err != nil {
		tb.Fatal(err)
	}
	s.rule = len(rules) > 0
	return s
}

// routeSource asks the kernel which source it picks for dst (ip route get).
func routeSource(tb testing.TB, h *netlink.Handle, dst string) string {
	tb.Helper()
	rs, err := h.RouteGet(net.ParseIP(dst))
	if err != nil {
		tb.Fatalf("route get %s: %v", dst, err)
	}
	return rs[0].Src.String()
}

func TestApplyAndRemove(t *testing.T) {
	tests := []struct {
		name       string
		spec       Spec
		probe      string // a destination behind Routes
		wantRoutes []string
	}{
		{
			name: "IPv4 on-link",
			spec: Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "veth0",
				Routes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("10.30.0.0/24")}},
			probe:      "10.20.3.4",
			wantRoutes: []string{"10.20.0.0/16 10.9.0.1 <nil>", "10.30.0.0/24 10.9.0.1 <nil>"},
		},
		{
			name: "IPv4 via gateway, own table and priority",
			spec: Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "veth0", Gateway: netip.MustParseAddr("192.0.2.254"),
				Routes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}, Table: 1000, Priority: 900},
			probe:      "10.20.3.4",
			wantRoutes: []string{"10.20.0.0/16 10.9.0.1 192.0.2.254"},
		},
		{
			name: "IPv6",
			spec: Spec{Address: netip.MustParsePrefix("2001:db8:9::1/128"), Interface: "veth0",
				Routes: []netip.Prefix{netip.MustParsePrefix("2001:db8:20::/48")}},
			probe:      "2001:db8:20::4",
			wantRoutes: []string{"2001:db8:20::/48 2001:db8:9::1 <nil>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, h := newNetNS(t)
			table, prio := tt.spec.Table, tt.spec.Priority
			if table == 0 {
				table, prio = DefaultTable, DefaultPriority
			}
			addr := tt.spec.Address.Addr()
			a, err := Apply(context.Background(), ns, tt.spec)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			got := readState(t, h, addr, table, prio)
			if !got.hasAddr || !got.rule || strings.Join(got.routes, ",") != strings.Join(tt.wantRoutes, ",") {
				t.Fatalf("after Apply: %+v, want address, rule and routes %v", got, tt.wantRoutes)
			}
			if src := routeSource(t, h, tt.probe); src != addr.String() {
				t.Errorf("kernel picks source %s for %s, want the service address %s", src, tt.probe, addr)
			}

			again, err := Apply(context.Background(), ns, tt.spec)
			if err != nil {
				t.Fatalf("Apply again: %v", err)
			}
			if err := again.Remove(); err != nil {
				t.Fatalf("Remove of the second Apply: %v", err)
			}
			if after := readState(t, h, addr, table, prio); !after.hasAddr || !after.rule || len(after.routes) != len(tt.wantRoutes) {
				t.Fatalf("the second Apply removed what the first added: %+v", after)
			}

			if err := a.Remove(); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if err := a.Remove(); err != nil {
				t.Fatalf("Remove again: %v", err)
			}
			if after := readState(t, h, addr, table, prio); after.hasAddr || after.rule || len(after.routes) != 0 {
				t.Fatalf("after Remove: %+v, want nothing left", after)
			}
		})
	}
}

func TestApplyKeepsExistingAddress(t *testing.T) {
	ns, h := newNetNS(t)
	spec := Spec{Address: netip.MustParsePrefix("192.0.2.1/32"), Interface: "veth0",
		Routes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}}
	a, err := Apply(context.Background(), ns, spec)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := a.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	got := readState(t, h, spec.Address.Addr(), DefaultTable, DefaultPriority)
	if !got.hasAddr || got.rule || len(got.routes) != 0 {
		t.Fatalf("after Remove: %+v, want the pre-existing address kept and nothing else", got)
	}
}

func TestApplyErrors(t *testing.T) {
	ns, h := newNetNS(t)
	link, err := h.LinkByName("veth0")
	if err != nil {
		t.Fatal(err)
	}
	// A foreign route to 10.40.0.0/16 in table 220 that Apply must not take over.
	_, foreign, _ := net.ParseCIDR("10.40.0.0/16")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: foreign, Table: DefaultTable, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		spec    Spec
		wantHas string
	}{
		{"unknown interface", Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "nosuch0"}, `interface "nosuch0"`},
		{"no address", Spec{Interface: "veth0"}, "want an address with prefix length"},
		{"family mix", Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "veth0",
			Routes: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}}, "route 2001:db8::/32"},
		{"conflicting route", Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "veth0",
			Routes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("10.40.0.0/16")}},
			"route to 10.40.0.0/16 in table 220 exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Apply(context.Background(), ns, tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.wantHas) {
				t.Fatalf("Apply error = %v, want one containing %q", err, tt.wantHas)
			}
			// A failed Apply rolls back: only the foreign route remains.
			got := readState(t, h, netip.MustParseAddr("10.9.0.1"), DefaultTable, DefaultPriority)
			if got.hasAddr || got.rule || len(got.routes) != 1 {
				t.Fatalf("after failed Apply: %+v, want only the foreign route", got)
			}
		})
	}
}
