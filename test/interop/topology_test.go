package interop

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
)

// Addresses of the lab, as in the shared strongSwan lab (strongswan-pair.sh) and the seed's
// example:
//
//	gw: gw-wan 192.0.2.1/24 (+ service address 10.10.1.1/32, added by espgw)
//	  === partner: p-wan 192.0.2.2/24, p-int 10.20.0.1/24 (forwarding)
//	    === host: h-eth0 10.20.0.10/24, default via 10.20.0.1
const (
	gwWAN, gwAddr           = "gw-wan", "192.0.2.1"
	partnerWAN, partnerAddr = "p-wan", "192.0.2.2"
	serviceAddr             = "10.10.1.1"
	hostAddr                = "10.20.0.10"
	localSubnet             = "10.10.1.1/32"
	remoteSubnet            = "10.20.0.0/24"
	connName, tunnelName    = "megatelecom", "api"
	labPSK                  = "interop-preshared-key-5f1c2a"
)

// lab is three network namespaces: espgw's gateway, the partner and a host behind it.
type lab struct {
	gw, partner, host *testutil.NetNS
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{
		gw:      testutil.NewNetNS(t, "iop-gw"),
		partner: testutil.NewNetNS(t, "iop-partner"),
		host:    testutil.NewNetNS(t, "iop-host"),
	}
	testutil.Veth(t, l.gw, gwWAN, gwAddr+"/24", l.partner, partnerWAN, partnerAddr+"/24")
	testutil.Veth(t, l.partner, "p-int", "10.20.0.1/24", l.host, "h-eth0", hostAddr+"/24")
	// Captured packets then carry final checksums.
	l.gw.DisableTxOffload(t, gwWAN)
	l.partner.DisableTxOffload(t, partnerWAN)
	l.host.AddRoute(t, "default", "10.20.0.1", "")
	l.partner.Sysctl(t, "net.ipv4.ip_forward", "1")
	return l
}

// applyNFT loads an nftables ruleset (nft -f syntax) into ns: the lab's faults on purpose.
func applyNFT(t *testing.T, ns *testutil.NetNS, rules string) {
	t.Helper()
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in netns %s: %v\n%s", ns.Name(), err, out)
	}
}

// gwConn is espgw's side of the seed's connection in the lab.
func gwConn(ikeProp, espProp, start string) espgwtest.Connection {
	return espgwtest.Connection{
		Name: connName, Local: gwAddr, Remote: partnerAddr, PSK: labPSK, IKEProposal: ikeProp,
		ServiceAddress: serviceAddr + "/32", Interface: gwWAN,
		Tunnels: []espgwtest.Tunnel{{Name: tunnelName, LocalSubnet: localSubnet, RemoteSubnet: remoteSubnet,
			ESPProposal: espProp, Start: start}},
	}
}

// netState lists what a network namespace has: links with their XDP and TCX programs, qdiscs
// (classic tc programs hang off clsact), addresses, routes of every table, policy rules, XFRM policies
// and states, one line each, sorted; IPv6 link-local and
// multicast addresses and routes are left out (see kernelIPv6).
func netState(t *testing.T, ns *testutil.NetNS) []string {
	t.Helper()
	h := ns.Handle()
	var out []string
	links, err := h.LinkList()
	if err != nil {
		t.Fatalf("netns %s: list links: %v", ns.Name(), err)
	}
	names := map[int]string{}
	for _, l := range links {
		a := l.Attrs()
		names[a.Index] = a.Name
		out = append(out, fmt.Sprintf("link %s type %s", a.Name, l.Type()))
		if a.Xdp != nil && a.Xdp.Attached {
			out = append(out, fmt.Sprintf("xdp dev %s prog %d mode %d", a.Name, a.Xdp.ProgId, a.Xdp.AttachMode))
		}
	}
	out = append(out, tcxPrograms(t, ns, names)...)
	qdiscs, err := h.QdiscList(nil)
	if err != nil {
		t.Fatalf("netns %s: list qdiscs: %v", ns.Name(), err)
	}
	for _, q := range qdiscs {
		out = append(out, fmt.Sprintf("qdisc %s dev %s parent %x", q.Type(), names[q.Attrs().LinkIndex], q.Attrs().Parent))
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("netns %s: list addresses: %v", ns.Name(), err)
	}
	for _, a := range addrs {
		if kernelIPv6(a.IPNet) {
			continue
		}
		out = append(out, fmt.Sprintf("addr %s dev %s", a.IPNet, names[a.LinkIndex]))
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatalf("netns %s: list routes: %v", ns.Name(), err)
	}
	for _, r := range routes {
		if kernelIPv6(r.Dst) {
			continue
		}
		out = append(out, fmt.Sprintf("route table %d type %d dst %v src %v gw %v dev %s", r.Table, r.Type, r.Dst, r.Src, r.Gw, names[r.LinkIndex]))
	}
	rules, err := h.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("netns %s: list rules: %v", ns.Name(), err)
	}
	for _, r := range rules {
		out = append(out, fmt.Sprintf("rule family %d prio %d table %d src %v dst %v iif %q oif %q mark %v", r.Family, r.Priority, r.Table, r.Src, r.Dst, r.IifName, r.OifName, r.Mark))
	}
	pols, err := h.XfrmPolicyList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("netns %s: list XFRM policies: %v", ns.Name(), err)
	}
	for _, p := range pols {
		out = append(out, fmt.Sprintf("xfrm policy %v -> %v dir %v reqid-templates %d", p.Src, p.Dst, p.Dir, len(p.Tmpls)))
	}
	states, err := h.XfrmStateList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("netns %s: list XFRM states: %v", ns.Name(), err)
	}
	for _, s := range states {
		out = append(out, fmt.Sprintf("xfrm state %v -> %v proto %v spi %08x", s.Src, s.Dst, s.Proto, s.Spi))
	}
	slices.Sort(out)
	return out
}

// tcxPrograms lists the tc programs attached with TCX to the links (by ifindex) of ns.
func tcxPrograms(t *testing.T, ns *testutil.NetNS, links map[int]string) []string {
	t.Helper()
	var out []string
	err := ns.Do(func() error { // BPF_PROG_QUERY resolves the ifindex in the caller's netns
		for index, name := range links {
			for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
				r, err := link.QueryPrograms(link.QueryOptions{Target: index, Attach: at})
				if err != nil {
					return fmt.Errorf("query %v programs of %s: %w", at, name, err)
				}
				for _, p := range r.Programs {
					out = append(out, fmt.Sprintf("tcx %v dev %s prog %d", at, name, p.ID))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("netns %s: %v", ns.Name(), err)
	}
	return out
}

// kernelIPv6 reports whether p is an IPv6 link-local or multicast prefix: the kernel adds
// those (and their routes) to every link on its own, some only after DAD, so they are not
// compared.
func kernelIPv6(p *net.IPNet) bool {
	return p != nil && p.IP.To4() == nil && (p.IP.IsLinkLocalUnicast() || p.IP.IsMulticast())
}

// requireSameNetState fails the test if ns now has anything that was not in before, or lacks
// anything that was.
func requireSameNetState(t *testing.T, ns *testutil.NetNS, before []string, what string) {
	t.Helper()
	after := netState(t, ns)
	var extra, missing []string
	for _, l := range after {
		if !slices.Contains(before, l) {
			extra = append(extra, l)
		}
	}
	for _, l := range before {
		if !slices.Contains(after, l) {
			missing = append(missing, l)
		}
	}
	if len(extra) > 0 {
		t.Errorf("netns %s after %s, left behind:\n  %s", ns.Name(), what, strings.Join(extra, "\n  "))
	}
	if len(missing) > 0 {
		t.Errorf("netns %s after %s, gone although there before:\n  %s", ns.Name(), what, strings.Join(missing, "\n  "))
	}
}

// requireInstalled checks that the running espgw did install what the teardown check expects
// to disappear (so that check cannot pass vacuously): want are prefixes of netState lines.
func requireInstalled(t *testing.T, ns *testutil.NetNS, want ...string) {
	t.Helper()
	st := netState(t, ns)
	for _, w := range want {
		if !slices.ContainsFunc(st, func(l string) bool { return strings.HasPrefix(l, w) }) {
			t.Errorf("netns %s while espgw runs: nothing starts with %q in\n  %s", ns.Name(), w, strings.Join(st, "\n  "))
		}
	}
}
