package serviceaddr

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/internal/testutil"
)

// newNetNS creates a namespace holding veth0 (192.0.2.1/24 and 2001:db8:f::1/64, up), its
// peer veth1, and a route to 198.51.100.0/24 via 192.0.2.254 (a peer behind a gateway);
// everything goes away with the namespace at cleanup. It skips the test when not root.
func newNetNS(tb testing.TB) *testutil.NetNS {
	tb.Helper()
	ns := testutil.NewNetNS(tb, "svc")
	ns.Sysctl(tb, "net.ipv6.conf.default.accept_dad", "0") // no tentative addresses coming and going
	testutil.Veth(tb, ns, "veth0", "", ns, "veth1", "")
	mustAddAddr(tb, ns.Handle(), "veth0", "192.0.2.1/24")
	mustAddAddr(tb, ns.Handle(), "veth0", "2001:db8:f::1/64")
	ns.AddRoute(tb, "198.51.100.0/24", "192.0.2.254", "veth0")
	return ns
}

func mustAddAddr(tb testing.TB, h *netlink.Handle, dev, cidr string) {
	tb.Helper()
	l, err := h.LinkByName(dev)
	if err != nil {
		tb.Fatal(err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		tb.Fatal(err)
	}
	a.Flags = unix.IFA_F_NODAD
	if err := h.AddrAdd(l, a); err != nil {
		tb.Fatalf("add %s to %s: %v", cidr, dev, err)
	}
}

// routing is what `ip` shows of the namespace's routing: every table and the rules, both
// families. Removing a service address must bring it back to exactly this.
func routing(tb testing.TB, ns *testutil.NetNS) string {
	tb.Helper()
	var b strings.Builder
	for _, argv := range [][]string{
		{"ip", "-4", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
		{"ip", "-4", "rule"}, {"ip", "-6", "rule"}, {"ip", "-br", "addr"},
	} {
		fmt.Fprintf(&b, "$ %s\n%s", strings.Join(argv, " "), ns.Exec(tb, argv...))
	}
	return b.String()
}

// settledRouting is routing once the kernel has added the local route of every address:
// it adds IPv6 ones from a work queue, late on a loaded machine, and a snapshot taken before
// would differ from one taken after for no fault of the code under test.
func settledRouting(tb testing.TB, ns *testutil.NetNS) string {
	tb.Helper()
	var r string
	testutil.WaitFor(tb, 10*time.Second, func() (bool, error) {
		r = routing(tb, ns)
		for _, line := range strings.Split(ns.Exec(tb, "ip", "-br", "addr"), "\n") {
			f := strings.Fields(line)
			for i := 2; i < len(f); i++ {
				addr, _, _ := strings.Cut(f[i], "/")
				if !strings.Contains(r, "local "+addr+" ") {
					return false, nil
				}
			}
		}
		return true, nil
	})
	return r
}

// tableRoutes returns "dst dev via src" of each route in table.
func tableRoutes(tb testing.TB, h *netlink.Handle, fam, table int) []string {
	tb.Helper()
	routes, err := h.RouteListFiltered(fam, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, r := range routes {
		l, err := h.LinkByIndex(r.LinkIndex)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%v dev %s via %v src %v", r.Dst, l.Attrs().Name, r.Gw, r.Src))
	}
	return out
}

// routeGet asks the kernel where it sends dst (ip route get): "dev via src".
func routeGet(tb testing.TB, h *netlink.Handle, dst string) string {
	tb.Helper()
	rs, err := h.RouteGet(net.ParseIP(dst))
	if err != nil {
		tb.Fatalf("route get %s: %v", dst, err)
	}
	l, err := h.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("dev %s via %v src %v", l.Attrs().Name, rs[0].Gw, rs[0].Src)
}

func TestApplyAndRemove(t *testing.T) {
	tests := []struct {
		name       string
		spec       Spec
		probe      string // a destination behind Routes
		wantRoutes []string
		wantGet    string
	}{
		{
			name: "IPv4 on the WAN link, on-link peer",
			spec: Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "veth0", Peer: netip.MustParseAddr("192.0.2.2"),
				Routes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("10.30.0.0/24")}},
			probe:      "10.20.3.4",
			wantRoutes: []string{"10.20.0.0/16 dev veth0 via <nil> src 10.9.0.1", "10.30.0.0/24 dev veth0 via <nil> src 10.9.0.1"},
			wantGet:    "dev veth0 via <nil> src 10.9.0.1",
		},
		{
			name: "IPv4 on lo, peer behind a gateway, own table and priority",
			spec: Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "lo",
				Peer: netip.MustParseAddr("198.51.100.7"), Local: netip.MustParseAddr("192.0.2.1"),
				Routes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}, Table: 1000, Priority: 900},
			probe:      "10.20.3.4",
			wantRoutes: []string{"10.20.0.0/16 dev veth0 via 192.0.2.254 src 10.9.0.1"},
			wantGet:    "dev veth0 via 192.0.2.254 src 10.9.0.1",
		},
		{
			name: "IPv6 on lo",
			spec: Spec{Address: netip.MustParsePrefix("2001:db8:9::1/128"), Interface: "lo", Peer: netip.MustParseAddr("2001:db8:f::2"),
				Routes: []netip.Prefix{netip.MustParsePrefix("2001:db8:20::/48")}},
			probe:      "2001:db8:20::4",
			wantRoutes: []string{"2001:db8:20::/48 dev veth0 via <nil> src 2001:db8:9::1"},
			wantGet:    "dev veth0 via <nil> src 2001:db8:9::1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := newNetNS(t)
			h := ns.Handle()
			before := settledRouting(t, ns)
			table := tt.spec.Table
			if table == 0 {
				table = DefaultTable
			}
			fam := family(tt.spec.Address.Addr())
			a, err := Apply(context.Background(), ns.NsHandle(), tt.spec, nil)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if got := tableRoutes(t, h, fam, table); strings.Join(got, ",") != strings.Join(tt.wantRoutes, ",") {
				t.Fatalf("table %d after Apply: %q, want %q", table, got, tt.wantRoutes)
			}
			if got := routeGet(t, h, tt.probe); got != tt.wantGet {
				t.Errorf("kernel sends %s %s, want %s (the way to the peer, from the service address)", tt.probe, got, tt.wantGet)
			}

			again, err := Apply(context.Background(), ns.NsHandle(), tt.spec, nil)
			if err != nil {
				t.Fatalf("Apply again: %v", err)
			}
			if err := again.Remove(); err != nil {
				t.Fatalf("Remove of the second Apply: %v", err)
			}
			if got := tableRoutes(t, h, fam, table); len(got) != len(tt.wantRoutes) {
				t.Fatalf("the second Apply removed what the first added: table %d holds %q", table, got)
			}

			if err := a.Remove(); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if err := a.Remove(); err != nil {
				t.Fatalf("Remove again: %v", err)
			}
			if after := routing(t, ns); after != before {
				t.Fatalf("routing after Remove differs from before Apply:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestFollowsPeerRoute moves the route to the peer to another link and gateway, then takes
// that link down (the kernel flushes routes through it without telling anyone), and checks
// that the routes to the remote subnets follow each time.
func TestFollowsPeerRoute(t *testing.T) {
	ns := newNetNS(t)
	h := ns.Handle()
	testutil.Veth(t, ns, "wan2", "203.0.113.1/24", ns, "wan2p", "")
	before := settledRouting(t, ns)
	spec := Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "lo", Peer: netip.MustParseAddr("198.51.100.7"),
		Routes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}}
	a, err := Apply(context.Background(), ns.NsHandle(), spec, nil)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	defer a.Remove()
	wantTable := func(want string) {
		t.Helper()
		testutil.WaitFor(t, 5*time.Second, func() (bool, error) {
			got := tableRoutes(t, h, netlink.FAMILY_V4, DefaultTable)
			if len(got) != 1 || got[0] != want {
				return false, fmt.Errorf("table 220 holds %q, want %q", got, want)
			}
			return true, nil
		})
	}
	wantTable("10.20.0.0/16 dev veth0 via 192.0.2.254 src 10.9.0.1")

	ns.Exec(t, "ip", "route", "replace", "198.51.100.0/24", "via", "203.0.113.254", "dev", "wan2")
	wantTable("10.20.0.0/16 dev wan2 via 203.0.113.254 src 10.9.0.1")

	// wan2 down flushes the peer route and ours; the peer is unreachable, nothing to follow.
	ns.Exec(t, "ip", "link", "set", "wan2", "down")
	ns.Exec(t, "ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.254", "dev", "veth0")
	wantTable("10.20.0.0/16 dev veth0 via 192.0.2.254 src 10.9.0.1")
	if got := routeGet(t, h, "10.20.3.4"); got != "dev veth0 via 192.0.2.254 src 10.9.0.1" {
		t.Errorf("kernel sends 10.20.3.4 %s, want it via the peer's new way", got)
	}

	ns.Exec(t, "ip", "link", "set", "wan2", "up")
	if err := a.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	// The peer route is back where the namespace had it; wan2's own routes came back with it.
	if after := routing(t, ns); after != before {
		t.Fatalf("routing after Remove differs from before Apply:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestApplyKeepsExistingAddress(t *testing.T) {
	ns := newNetNS(t)
	before := settledRouting(t, ns)
	spec := Spec{Address: netip.MustParsePrefix("192.0.2.1/32"), Interface: "veth0", Peer: netip.MustParseAddr("192.0.2.2"),
		Routes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}}
	a, err := Apply(context.Background(), ns.NsHandle(), spec, nil)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := a.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if after := routing(t, ns); after != before {
		t.Fatalf("routing after Remove differs (want the pre-existing address kept and nothing else):\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestApplyErrors(t *testing.T) {
	ns := newNetNS(t)
	h := ns.Handle()
	link, err := h.LinkByName("veth0")
	if err != nil {
		t.Fatal(err)
	}
	// A foreign route to 10.40.0.0/16 in table 220 that Apply must not take over.
	_, foreign, _ := net.ParseCIDR("10.40.0.0/16")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: foreign, Table: DefaultTable, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	before := settledRouting(t, ns)
	peer := netip.MustParseAddr("192.0.2.2")
	tests := []struct {
		name    string
		spec    Spec
		wantHas string
	}{
		{"unknown interface", Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "nosuch0"}, `interface "nosuch0"`},
		{"no address", Spec{Interface: "veth0"}, "want an address with prefix length"},
		{"family mix", Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "veth0", Peer: peer,
			Routes: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}}, "route 2001:db8::/32"},
		{"routes without peer", Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "lo",
			Routes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}}, "peer invalid IP: want the tunnel's remote endpoint"},
		{"unreachable peer", Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "lo", Peer: netip.MustParseAddr("203.0.113.9"),
			Routes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}}, "route to peer 203.0.113.9"},
		{"peer on this host", Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "lo", Peer: netip.MustParseAddr("192.0.2.1"),
			Routes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}}, "goes through loopback lo"},
		{"conflicting route", Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "veth0", Peer: peer,
			Routes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("10.40.0.0/16")}},
			"route to 10.40.0.0/16 in table 220 exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Apply(context.Background(), ns.NsHandle(), tt.spec, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantHas) {
				t.Fatalf("Apply error = %v, want one containing %q", err, tt.wantHas)
			}
			if after := routing(t, ns); after != before {
				t.Fatalf("a failed Apply left changes behind:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestLoopbackRoutes(t *testing.T) {
	ns := newNetNS(t)
	service := netip.MustParseAddr("10.9.0.1")
	remotes := []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("10.30.0.0/24")}
	check := func(want ...string) {
		t.Helper()
		got, err := LoopbackRoutes(ns.NsHandle(), service, remotes)
		if err != nil {
			t.Fatalf("LoopbackRoutes: %v", err)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("LoopbackRoutes = %q, want %q", got, want)
		}
	}
	check() // no address, no route: nothing to report

	// What the seed's config did with `interface: lo` before routes followed the peer.
	ns.AddAddr(t, "lo", "10.9.0.1/32")
	ns.Exec(t, "ip", "route", "add", "10.20.0.0/16", "dev", "lo", "src", "10.9.0.1", "table", "220")
	ns.Exec(t, "ip", "rule", "add", "lookup", "220", "pref", "220")
	check("route to remote subnet 10.20.0.0/16 from 10.9.0.1 goes through loopback lo (table 220): its packets loop back into this host instead of entering the tunnel")

	ns.Exec(t, "ip", "route", "del", "10.20.0.0/16", "table", "220")
	a, err := Apply(context.Background(), ns.NsHandle(), Spec{Address: netip.MustParsePrefix("10.9.0.1/32"), Interface: "lo",
		Peer: netip.MustParseAddr("198.51.100.7"), Routes: remotes}, nil)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	defer a.Remove()
	check()
}
