//go:build vmtest

package kernel

import (
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// TestServiceAddressHome (issue 15): espgw on the xfrm datapath (and, for the dummy, the
// userspace one) adds site a's protected
// address itself as its service address, held on lo, on a dummy interface or on the WAN
// link, and strongSwan (kernel-netlink) is the partner. Site a has no route of its own to
// b's subnet: traffic passes only if espgw's route leaves the way the ESP does (the WAN
// link), whatever interface holds the address. Pings cross both ways as ESP; stopping
// espgw leaves a's routes, rules and addresses as they were.
func TestServiceAddressHome(t *testing.T) {
	t.Parallel()
	// dummy-userspace: this host's kernel has no dummy driver, so the userspace datapath's
	// dummy case runs here; its lo and WAN cases run in test/interop.
	for _, home := range []string{"lo", "dummy", "wan", "dummy-userspace"} {
		t.Run(home, func(t *testing.T) { // one at a time: three espgw and charons starting at once overload TCG
			home, datapath, _ := strings.Cut(home, "-")
			if datapath == "" {
				datapath = "xfrm"
			}
			l := newLab(t)
			a := &l.a
			out := map[string]string{"xfrm": a.dev, "userspace": "espgw0"}[datapath] // where b's subnet leaves
			a.ns.Exec(t, "ip", "addr", "del", a.inner.String()+"/32", "dev", "lo")
			a.ns.Exec(t, "ip", "route", "del", l.b.protect.String())
			iface := map[string]string{"lo": "lo", "dummy": "svc0", "wan": a.dev}[home]
			if home == "dummy" {
				a.ns.Exec(t, "ip", "link", "add", iface, "type", "dummy")
				a.ns.Exec(t, "ip", "link", "set", iface, "up")
			}
			before := netSnapshot(t, a)
			beforeAddrs := a.ns.Exec(t, "ip", "-4", "-br", "addr")

			sw := strongswan.Start(t, l.b.ns, strongswan.Config{
				LocalAddr: l.b.outer.String(), RemoteAddr: a.outer.String(), PSK: labPSK,
				IKEProposals: "aes128-sha256-modp2048", ESPProposals: "aes128-sha256-modp2048",
				LocalTS: l.b.protect.String(), RemoteTS: a.protect.String(), KernelESP: true, LogLevel: 2,
			})
			g := espgwtest.Start(t, a.ns, espgwtest.Config{
				Datapath: datapath,
				Connections: []espgwtest.Connection{{
					Name: connName, Local: a.outer.String(), Remote: l.b.outer.String(), PSK: labPSK,
					IKEProposal: "aes128-sha256-modp2048", NATTraversal: "off",
					ServiceAddress: a.inner.String() + "/32", Interface: iface,
					Tunnels: []espgwtest.Tunnel{{
						Name: tunnelName, LocalSubnet: a.protect.String(), RemoteSubnet: l.b.protect.String(),
						ESPProposal: "aes128-sha256-modp2048", Start: "always",
					}},
				}},
			})
			g.WaitTunnelUp(t, connName, tunnelName, 30*time.Second)
			sw.WaitInstalled(t, "s2s", 10*time.Second)

			// The kernel's own answer: to b's subnet from the service address, out of the WAN
			// (xfrm) or into espgw's TUN (userspace).
			if got := a.ns.Exec(t, "ip", "route", "get", l.b.inner.String()); !strings.Contains(got, "dev "+out) || !strings.Contains(got, "src "+a.inner.String()) {
				t.Errorf("ip route get %s in a: %q, want dev %s src %s", l.b.inner, got, out, a.inner)
			}
			if got := a.ns.Exec(t, "ip", "-4", "addr", "show", "dev", iface); !strings.Contains(got, "inet "+a.inner.String()+"/32") {
				t.Errorf("service address not on %s:\n%s", iface, got)
			}
			sent := pingOverESP(t, l, false, 3)
			wire := captureWire(t, l)
			if err := testutil.Ping(l.b.ns, l.b.inner.String(), a.inner.String(), 3); err != nil {
				t.Fatalf("b -> a's service address: %v", err)
			}
			wire.requireOnlyESP(t, false, 2)
			if _, child := sw.WaitInstalled(t, "s2s", time.Second); child.PacketsIn < uint64(sent+3) || child.PacketsOut < uint64(sent+3) {
				t.Errorf("strongSwan's child SA counted %d packets in, %d out; want >= %d each way (both pings)", child.PacketsIn, child.PacketsOut, sent+3)
			}

			g.Stop(t)
			requireClean(t, a, before)
			if after := a.ns.Exec(t, "ip", "-4", "-br", "addr"); after != beforeAddrs {
				t.Errorf("addresses changed by espgw:\nbefore:\n%s\nafter:\n%s", beforeAddrs, after)
			}
		})
	}
}
