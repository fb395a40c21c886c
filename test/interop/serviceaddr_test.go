package interop

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/espgw/espgw/datapath/serviceaddr"
	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
)

// TestServiceAddressHomeUserspace (issue 15) runs the userspace datapath against strongSwan
// with the service address on lo and on the WAN link: the route to the remote subnet goes
// into the TUN from the service address either way, pings pass both ways as ESP only, the
// running system has no route to the remote subnet through a loopback (LoopbackRoutes and
// `espgw config check` agree), and SIGTERM leaves the namespace as it was. This host's
// kernel has no dummy driver; the dummy home is covered by test/kernel in the VM.
func TestServiceAddressHomeUserspace(t *testing.T) {
	for _, home := range []string{"lo", gwWAN} {
		t.Run(home, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			set := proposalSets[1]
			sw := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
			capture := testutil.StartCapture(t, l.gw, gwWAN, "ip")
			before := netState(t, l.gw)
			c := gwConn(set.ike, set.esp, "always")
			c.Interface = home
			g := espgwtest.Start(t, l.gw, espgwtest.Config{Datapath: "userspace", Connections: []espgwtest.Connection{c}})
			requireInstalled(t, l.gw, "addr "+serviceAddr+"/32 dev "+home)

			sw.WaitInstalled(t, "s2s", negotiationTimeout)
			g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
			requireInstalled(t, l.gw, "route table 220 type 1 dst "+remoteSubnet+" src "+serviceAddr+" gw <nil> dev espgw0")
			if got := l.gw.Exec(t, "ip", "route", "get", hostAddr); !strings.Contains(got, "dev espgw0") || !strings.Contains(got, "src "+serviceAddr) {
				t.Errorf("ip route get %s: %q, want dev espgw0 src %s", hostAddr, got, serviceAddr)
			}
			warnings, err := serviceaddr.LoopbackRoutes(l.gw.NsHandle(), netip.MustParseAddr(serviceAddr), []netip.Prefix{netip.MustParsePrefix(remoteSubnet)})
			if err != nil || len(warnings) != 0 {
				t.Errorf("LoopbackRoutes while espgw runs: %q, %v; want none", warnings, err)
			}
			if out := configCheck(t, l, g); strings.Contains(out, "warning") {
				t.Errorf("espgw config check while espgw runs warns:\n%s", out)
			}

			pingBothWays(t, l)
			requireOnlyIKEAndESP(t, capture.Stop(), true)
			requireCounters(t, g, connName, tunnelName, 2*pings)
			if _, child := sw.WaitInstalled(t, "s2s", negotiationTimeout); child.PacketsIn < 2*pings || child.PacketsOut < 2*pings {
				t.Errorf("strongSwan's child SA counted %d packets in, %d out; want >= %d each way", child.PacketsIn, child.PacketsOut, 2*pings)
			}

			g.Stop(t)
			requireSameNetState(t, l.gw, before, "espgw stopped (SIGTERM)")

			// What the xfrm datapath used to install for `interface: lo`: config check must
			// name it.
			l.gw.AddAddr(t, "lo", serviceAddr+"/32")
			l.gw.Exec(t, "ip", "route", "add", remoteSubnet, "dev", "lo", "src", serviceAddr, "table", "220")
			l.gw.Exec(t, "ip", "rule", "add", "lookup", "220", "pref", "220")
			want := "espgw: warning: connection " + connName + ": route to remote subnet " + remoteSubnet + " from " + serviceAddr + " goes through loopback lo (table 220)"
			if out := configCheck(t, l, g); !strings.Contains(out, want) {
				t.Errorf("espgw config check with a route through lo:\n%s\nwant a line starting %q", out, want)
			}
		})
	}
}

// configCheck runs `espgw config check` on g's configuration in the gateway's namespace.
func configCheck(t *testing.T, l *lab, g *espgwtest.Gateway) string {
	t.Helper()
	out := l.gw.Exec(t, espgwBin, "config", "check", "-c", filepath.Join(g.Dir, "espgw.yaml"))
	if !strings.Contains(out, "configuration OK") {
		t.Errorf("espgw config check: %s", out)
	}
	return out
}
