//go:build vmtest

package kernel

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

const labPSK = "vm-suite-psk-0123456789"

// netSnapshot is what a gateway may change in its namespace besides XFRM: routes and rules.
func netSnapshot(tb testing.TB, s *site) string {
	tb.Helper()
	return s.ns.Exec(tb, "ip", "-4", "route", "show", "table", "all") + s.ns.Exec(tb, "ip", "-4", "rule", "show")
}

// requireClean fails unless s's namespace has no XFRM state or policy and the routes and
// rules it had before the gateway started.
func requireClean(tb testing.TB, s *site, before string) {
	tb.Helper()
	requireNoXfrm(tb, s.ns)
	if after := netSnapshot(tb, s); after != before {
		tb.Errorf("netns %s: routes or rules changed by the gateway:\nbefore:\n%s\nafter:\n%s", s.ns.Name(), before, after)
	}
}

// spi parses the 8-hex-digit SPI of `espgw status --json`.
func spi(tb testing.TB, s string) uint32 {
	tb.Helper()
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		tb.Fatalf("SPI %q in espgw status: %v", s, err)
	}
	return uint32(v)
}

// swanPeer is the strongSwan partner at site b for espgw at site a, speaking IKE version
// with the given proposals and putting its SAs into the kernel (kernel-netlink).
func swanPeer(l *lab, version int, ike, esp string) strongswan.Config {
	return strongswan.Config{Version: version,
		LocalAddr: l.b.outer.String(), RemoteAddr: l.a.outer.String(), PSK: labPSK,
		IKEProposals: ike, ESPProposals: esp, LocalTS: l.b.subnets(), RemoteTS: l.a.subnets(),
		KernelESP: true, LogLevel: 2, // no key dumps: they slow charon down under TCG
	}
}

// requireCrossedSPIs fails unless espgw's SA pair is strongSwan's CHILD_SA seen from the
// other end: espgw's inbound SPI is strongSwan's outbound one and vice versa.
func requireCrossedSPIs(tb testing.TB, sa espgwtest.IPsecSA, child strongswan.ChildSA) {
	tb.Helper()
	if sa.SPIIn != fmt.Sprintf("%08x", child.SPIOut) || sa.SPIOut != fmt.Sprintf("%08x", child.SPIIn) {
		tb.Errorf("SPIs: espgw in/out %s/%s, strongSwan in/out %08x/%08x; want crossed equal", sa.SPIIn, sa.SPIOut, child.SPIIn, child.SPIOut)
	}
}

// countedPings is how many pings the tests send at least per flow they count on an SA.
const countedPings = 3

// pingCounted calls ping, which sends at least want pings through espgw's SA pair sa, and
// requires the kernel's packet counters of both SAs to grow by as much at both sites: each
// SA is the outbound one on one site and the inbound one on the other.
func pingCounted(tb testing.TB, l *lab, sa espgwtest.IPsecSA, want int, ping func()) {
	tb.Helper()
	type counter struct {
		s   *site
		spi uint32
	}
	in, out := spi(tb, sa.SPIIn), spi(tb, sa.SPIOut)
	counters := []counter{{&l.a, in}, {&l.a, out}, {&l.b, in}, {&l.b, out}}
	before := make([]uint64, len(counters))
	for i, c := range counters {
		before[i] = ipXfrmPackets(tb, c.s.ns, c.spi)
	}
	ping()
	for i, c := range counters {
		if n := ipXfrmPackets(tb, c.s.ns, c.spi) - before[i]; n < uint64(want) {
			tb.Errorf("netns %s: SA 0x%08x carried %d packets more, want >= %d", c.s.ns.Name(), c.spi, n, want)
		}
	}
}

// TestGatewayStrongswan (suite case 1, 6): espgw on the xfrm datapath negotiates IKEv1 with
// strongSwan using the kernel's ESP (kernel-netlink), raw and with forced NAT-T; pings cross,
// the kernel SA counters grow on both sides, only ESP is on the wire; SIGTERM leaves nothing.
func TestGatewayStrongswan(t *testing.T) {
	t.Parallel()
	sets := []struct{ name, ike, esp string }{
		{"3des-sha1-modp1024", "3des-sha1-modp1024", "3des-sha1-modp1024"},
		{"aes256gcm16", "aes256-sha256-modp2048", "aes256gcm16-modp2048"},
	}
	for _, set := range sets {
		for _, encap := range []bool{false, true} {
			name := set.name + "/raw"
			natt := "off"
			if encap {
				name, natt = set.name+"/natt", "force"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				l := newLab(t)
				before := netSnapshot(t, &l.a)
				swan := swanPeer(l, 1, set.ike, set.esp)
				if encap {
					swan.ExtraConn = "encap = yes"
				}
				sw := strongswan.Start(t, l.b.ns, swan)
				g := startEspgw(t, gwConfig{PSK: labPSK, IKEProposal: set.ike, ESPProposal: set.esp, NATTraversal: natt}.at(&l.a, &l.b, "always"))
				st, sa := g.WaitTunnelUp(t, connName, tunnelName, 30*time.Second)
				if st.Datapath != "xfrm" {
					t.Fatalf("espgw datapath %q, want xfrm", st.Datapath)
				}
				// espgw is done once it sent the last quick mode message; charon then still
				// installs its SAs and policies.
				_, child := sw.WaitInstalled(t, "s2s", 10*time.Second)
				requireCrossedSPIs(t, sa, child)
				if encap != (sa.EncapLocalPort == 4500) {
					t.Errorf("IPsec SA encap port %d with nat_traversal %s", sa.EncapLocalPort, natt)
				}
				pingCounted(t, l, sa, countedPings, func() { pingOverESP(t, l, encap, countedPings) })
				g.Stop(t)
				requireClean(t, &l.a, before)
			})
		}
	}
}

// TestGatewayPair (suite case 2, 6): two espgw, the initiator on xfrm and the responder on
// xfrm or userspace; ping and a TCP transfer whose hash matches; SIGTERM leaves nothing.
func TestGatewayPair(t *testing.T) {
	t.Parallel()
	for _, peerDP := range []string{"xfrm", "userspace"} {
		t.Run("xfrm-"+peerDP, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			beforeA, beforeB := netSnapshot(t, &l.a), netSnapshot(t, &l.b)
			cfg := gwConfig{PSK: labPSK, IKEProposal: "aes256-sha256-modp2048", ESPProposal: "aes256gcm16-modp2048", NATTraversal: "off"}
			cb := cfg.at(&l.b, &l.a, "on-demand")
			cb.Datapath = peerDP
			gb := startEspgw(t, cb)
			ga := startEspgw(t, cfg.at(&l.a, &l.b, "always"))
			ga.WaitTunnelUp(t, connName, tunnelName, 30*time.Second)
			if st, _ := gb.WaitTunnelUp(t, connName, tunnelName, 10*time.Second); st.Datapath != peerDP {
				t.Fatalf("responder datapath %q, want %s", st.Datapath, peerDP)
			}
			wire := captureWire(t, l)
			if err := testutil.Ping(l.a.ns, l.a.inner.String(), l.b.inner.String(), 3); err != nil {
				t.Fatalf("ping a -> b: %v", err)
			}
			tcpTransfer(t, l.a.ns, l.a.inner, l.b.ns, l.b.inner, 512<<10)
			tcpTransfer(t, l.b.ns, l.b.inner, l.a.ns, l.a.inner, 512<<10)
			wire.requireOnlyESP(t, false, 100)
			ga.Stop(t)
			gb.Stop(t)
			requireClean(t, &l.a, beforeA)
			requireClean(t, &l.b, beforeB)
		})
	}
}

// TestGatewayOnDemand (suite case 3): with start: on-demand nothing is negotiated until the
// first packet; its ACQUIRE brings the tunnel up; after that every ping passes.
func TestGatewayOnDemand(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	before := netSnapshot(t, &l.a)
	cfg := gwConfig{PSK: labPSK, IKEProposal: "aes256-sha256-modp2048", ESPProposal: "aes256-sha256-modp2048", NATTraversal: "off"}
	startEspgw(t, cfg.at(&l.b, &l.a, "on-demand"))
	ga := startEspgw(t, cfg.at(&l.a, &l.b, "on-demand"))

	time.Sleep(2 * time.Second) // an eager daemon would have negotiated by now
	if st := ga.MustStatus(t); len(st.IKESAs) != 0 || len(st.IPsecSAs) != 0 {
		t.Fatalf("before any traffic: status %+v, want no IKE or IPsec SA", st)
	}
	requireNoXfrmState(t, &l.a)

	first := testutil.Ping(l.a.ns, l.a.inner.String(), l.b.inner.String(), 1)
	t.Logf("first ping (may be lost while the tunnel comes up): %v", first)
	ga.WaitTunnelUp(t, connName, tunnelName, 30*time.Second)
	if err := testutil.Ping(l.a.ns, l.a.inner.String(), l.b.inner.String(), 5); err != nil {
		t.Fatalf("after the ACQUIRE brought the tunnel up: %v", err)
	}
	ga.Stop(t)
	requireClean(t, &l.a, before)
}

// TestGatewayExpiry (suite case 4): a short tunnel lifetime makes the kernel report a soft
// expire, espgw rekeys (a new SPI pair while traffic continues), and the hard expire removes
// the old SAs from the kernel.
func TestGatewayExpiry(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	before := netSnapshot(t, &l.a)
	cfg := gwConfig{PSK: labPSK, IKEProposal: "aes256-sha256-modp2048", ESPProposal: "aes256gcm16-modp2048", NATTraversal: "off", Lifetime: "15s"}
	startEspgw(t, cfg.at(&l.b, &l.a, "on-demand"))
	ga := startEspgw(t, cfg.at(&l.a, &l.b, "always"))
	_, sa := ga.WaitTunnelUp(t, connName, tunnelName, 30*time.Second)
	oldIn, oldOut := spi(t, sa.SPIIn), spi(t, sa.SPIOut)

	testutil.WaitFor(t, 25*time.Second, func() (bool, error) {
		st, err := ga.Status()
		if err != nil {
			return false, err
		}
		for _, sa := range st.IPsecSAs {
			if sa.SPIIn != st.IPsecSAs[0].SPIIn || spi(t, sa.SPIIn) != oldIn {
				return true, nil
			}
		}
		return false, nil
	})
	if err := testutil.Ping(l.a.ns, l.a.inner.String(), l.b.inner.String(), 3); err != nil {
		t.Fatalf("after the rekey: %v", err)
	}
	testutil.WaitFor(t, 25*time.Second, func() (bool, error) {
		return !hasXfrmState(t, &l.a, oldIn) && !hasXfrmState(t, &l.a, oldOut), nil
	})
	if err := testutil.Ping(l.a.ns, l.a.inner.String(), l.b.inner.String(), 3); err != nil {
		t.Fatalf("after the old SAs expired: %v", err)
	}
	ga.Stop(t)
	requireClean(t, &l.a, before)
}
