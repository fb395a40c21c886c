//go:build vmtest

package kernel

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// TestGatewayStrongswanIKEv2 (issue 14): espgw on the xfrm datapath negotiates IKEv2 with
// strongSwan on kernel ESP (kernel-netlink), in both roles, for a tunnel with two subnets
// per side (local_subnet: "a,b"). strongSwan lists the IKE_SA ESTABLISHED (version 2) and ONE
// CHILD_SA INSTALLED with espgw's SPIs and both subnets per side; both kernels hold one out,
// in and fwd policy per (local, remote) combination, all with the reqid of the SA's states,
// and espgw's states carry the negotiated algorithms. Pings for all four combinations cross
// as ESP only and both kernels' and strongSwan's counters of that one SA pair grow by them.
// The initiator then rekeys the CHILD_SA (CREATE_CHILD_SA with PFS): espgw when a short
// tunnel lifetime runs out, strongSwan when told to (swanctl --rekey). Pings pass on the new
// SAs under the same IKE_SA, the old ones are gone. Then the IKE_SA is rekeyed the same way
// (ike.lifetime, swanctl --rekey --ike): strongSwan lists the new IKE_SA with the same
// CHILD_SA, whose SAs carry the pings on. SIGTERM deletes the IKE_SA at strongSwan and leaves
// no XFRM state or policy at either site.
func TestGatewayStrongswanIKEv2(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, ike, esp string
		espgwInitiates bool     // espgw or strongSwan starts the IKE_SA and rekeys the SAs
		swIKE, swPFS   string   // swanctl's IKE proposal, and its CHILD_SA's DH group after the rekey
		xfrm           []string // ipXfrmAlgs of each of espgw's SAs
	}{
		{"espgw-initiates/aes256-sha256-modp2048", "aes256-sha256-modp2048", "aes256-sha256-modp2048", true,
			"AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048", "MODP_2048",
			[]string{"auth-trunc hmac(sha256) 256/128", "enc cbc(aes) 256"}},
		{"strongswan-initiates/aes128gcm16-prfsha256-ecp256", "aes128gcm16-prfsha256-ecp256", "aes128gcm16-ecp256", false,
			"AES_GCM_16_128/PRF_HMAC_SHA2_256/ECP_256", "ECP_256",
			[]string{"aead rfc4106(gcm(aes)) 160/128"}}, // 128-bit key + 32-bit salt
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			addSecondSubnets(t, l)
			before := netSnapshot(t, &l.a)
			// espgw rekeys the CHILD_SA at 85–90 % of the tunnel lifetime: after the first SAs
			// have been checked (under TCG on a busy host that has taken 50 s), with ~9 s left
			// for the rekey (PFS: a DH under TCG) and ~80 s for checking the new SAs. The IKE_SA
			// follows at 85–90 % of ike.lifetime (102–108 s), once the new CHILD_SA has been
			// checked under the first IKE_SA.
			gwc := gwConfig{IKEVersion: 2, PSK: labPSK, IKEProposal: c.ike, ESPProposal: c.esp, NoEBPF: true}
			start := "manual"
			if c.espgwInitiates {
				start, gwc.Lifetime, gwc.IKELifetime = "always", "90s", "120s"
			}
			sw := strongswan.Start(t, l.b.ns, swanPeer(l, 2, c.ike, c.esp))
			g := startEspgw(t, gwc.at(&l.a, &l.b, start))
			if !c.espgwInitiates {
				if err := sw.Initiate("s2s", 30*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			st, sa := g.WaitTunnelUp(t, connName, tunnelName, 30*time.Second)
			if st.Datapath != "xfrm" {
				t.Fatalf("espgw datapath %q, want xfrm", st.Datapath)
			}
			swIKE, child := sw.WaitInstalled(t, "s2s", 10*time.Second)
			if swIKE.Version != 2 || swIKE.Initiator == c.espgwInitiates || swIKE.Proposal() != c.swIKE {
				t.Errorf("swanctl IKE_SA: version %d, initiator %v, proposal %s; want 2, %v, %s",
					swIKE.Version, swIKE.Initiator, swIKE.Proposal(), !c.espgwInitiates, c.swIKE)
			}
			requireCrossedSPIs(t, sa, child)
			if sa.EncapLocalPort != 0 {
				t.Errorf("IPsec SA encapsulated (port %d), want raw ESP: there is no NAT", sa.EncapLocalPort)
			}
			requireOneChildBothSubnets(t, l, swIKE, sa)
			requireXfrmAlgs(t, &l.a, sa, c.xfrm)
			requirePolicyPerPair(t, l)
			pairs := l.pairs()
			pingCountedByPeer(t, l, sw, sa, len(pairs)*countedPings, func() { pingPairsOverESP(t, l, false, countedPings, pairs) })

			if !c.espgwInitiates {
				if out, err := sw.Swanctl("--rekey", "--child", "s2s"); err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
			}
			next, rekeyed := waitChildRekeyed(t, l, g, sw, sa, swIKE.UniqueID)
			if rekeyed.DHGroup != c.swPFS {
				t.Errorf("strongSwan's rekeyed CHILD_SA: DH group %q, want %s (PFS)", rekeyed.DHGroup, c.swPFS)
			}
			requireXfrmAlgs(t, &l.a, next, c.xfrm)
			// Not captured this time: tcpdump's start under TCG is slow.
			pingCountedByPeer(t, l, sw, next, len(pairs)*countedPings, func() { pingPairs(t, l, pairs) })

			if !c.espgwInitiates {
				if out, err := sw.Swanctl("--rekey", "--ike", "s2s"); err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
			}
			waitIKERekeyed(t, sw, swIKE, rekeyed, !c.espgwInitiates)
			pingCountedByPeer(t, l, sw, next, len(pairs)*countedPings, func() { pingPairs(t, l, pairs) })
			requirePolicyPerPair(t, l)

			g.Stop(t)
			requireClean(t, &l.a, before)
			// espgw's shutdown deleted the IKE_SA at strongSwan, which then removes its own.
			testutil.WaitFor(t, 10*time.Second, func() (bool, error) {
				sas, err := sw.ListSAs()
				if err == nil && len(sas) > 0 {
					err = fmt.Errorf("strongSwan still has %d IKE_SAs (%s) after espgw stopped", len(sas), sas[0].State)
				}
				return err == nil, err
			})
			requireNoXfrm(t, l.b.ns)
		})
	}
}

// TestGatewayStrongswanIKEv2Narrowed: espgw's tunnel has a's two subnets and b's two,
// strongSwan's child only b's first one on its side. strongSwan narrows (RFC 7296 2.9):
// the one CHILD_SA has a's two subnets and b's first, and espgw lists that narrowed set.
// Pings from both of a's hosts to b's first subnet pass over ESP and are counted on the SA
// pair at both ends; pings to b's second subnet, which espgw's policies cover but the
// CHILD_SA does not, do not pass, never leave in clear (the wire holds only ESP and IKE),
// and are not carried by espgw's outbound SA either.
func TestGatewayStrongswanIKEv2Narrowed(t *testing.T) {
	t.Parallel()
	const ike, esp = "aes128gcm16-prfsha256-ecp256", "aes128gcm16-ecp256"
	l := newLab(t)
	addSecondSubnets(t, l)
	swc := swanPeer(l, 2, ike, esp)
	swc.LocalTS = l.b.protect.String()
	sw := strongswan.Start(t, l.b.ns, swc)
	g := startEspgw(t, gwConfig{IKEVersion: 2, PSK: labPSK, IKEProposal: ike, ESPProposal: esp, NoEBPF: true}.at(&l.a, &l.b, "always"))
	_, sa := g.WaitTunnelUp(t, connName, tunnelName, 30*time.Second)
	swIKE, child := sw.WaitInstalled(t, "s2s", 10*time.Second)
	requireCrossedSPIs(t, sa, child)
	wantA := strings.Split(l.a.subnets(), ",")
	if len(swIKE.Children) != 1 || !sameSet(child.LocalTS, []string{l.b.protect.String()}) || !sameSet(child.RemoteTS, wantA) {
		t.Errorf("strongSwan: %d CHILD_SAs, local ts %v, remote ts %v; want 1 with [%s] and %v",
			len(swIKE.Children), child.LocalTS, child.RemoteTS, l.b.protect, wantA)
	}
	if sa.LocalSelector != l.a.subnets() || sa.RemoteSelector != l.b.protect.String() {
		t.Errorf("espgw status: SA pair %s <-> %s, want the narrowed %s <-> %s", sa.LocalSelector, sa.RemoteSelector, l.a.subnets(), l.b.protect)
	}
	var inside, outside []hostPair
	for _, p := range l.pairs() {
		if p.b == l.b.inner {
			inside = append(inside, p)
		} else {
			outside = append(outside, p)
		}
	}
	pingCountedByPeer(t, l, sw, sa, len(inside)*countedPings, func() { pingPairsOverESP(t, l, false, countedPings, inside) })

	// Pings inside the CHILD_SA before and after the ones outside it: once the capture has
	// the ESP of both, it recorded what went between (tcpdump can miss packets for a while
	// after it reports "listening").
	wire := captureWire(t, l)
	pingInside := func() {
		if err := testutil.Ping(l.a.ns, inside[0].a.String(), inside[0].b.String(), 1); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 30*time.Second, func() (bool, error) {
		pingInside()
		return wire.espCount(t, false) > 0, nil
	})
	out := spi(t, sa.SPIOut)
	carried := ipXfrmPackets(t, l.a.ns, out)
	for _, p := range outside {
		if err := testutil.Ping(l.a.ns, p.a.String(), p.b.String(), 2); err == nil {
			t.Errorf("%s passed, want it dropped: the CHILD_SA does not carry it", p)
		}
	}
	if n := ipXfrmPackets(t, l.a.ns, out) - carried; n != 0 {
		t.Errorf("espgw's outbound SA 0x%s carried %d packets to %s, outside its traffic selectors", sa.SPIOut, n, l.b.protect2)
	}
	seen := wire.espCount(t, false)
	pingInside()
	wire.requireOnlyESPAnd(t, false, seen+2, "udp port 500")
}

// pingPairs pings countedPings times for each of pairs, from a.
func pingPairs(tb testing.TB, l *lab, pairs []hostPair) {
	tb.Helper()
	for _, p := range pairs {
		if err := testutil.Ping(l.a.ns, p.a.String(), p.b.String(), countedPings); err != nil {
			tb.Errorf("%s: %v", p, err)
		}
	}
}

// requireOneChildBothSubnets fails unless strongSwan's IKE_SA ike has one CHILD_SA, with
// all of b's subnets as its local and all of a's as its remote traffic selectors, and espgw
// lists its SA pair sa with the same lists from its side.
func requireOneChildBothSubnets(tb testing.TB, l *lab, ike strongswan.IKESA, sa espgwtest.IPsecSA) {
	tb.Helper()
	if len(ike.Children) != 1 {
		tb.Errorf("strongSwan's IKE_SA has %d CHILD_SAs, want 1 for all the subnets", len(ike.Children))
	}
	wantA, wantB := strings.Split(l.a.subnets(), ","), strings.Split(l.b.subnets(), ",")
	for _, ch := range ike.Children {
		if !sameSet(ch.LocalTS, wantB) || !sameSet(ch.RemoteTS, wantA) {
			tb.Errorf("strongSwan's CHILD_SA %08x: local ts %v, remote ts %v; want %v and %v", ch.SPIIn, ch.LocalTS, ch.RemoteTS, wantB, wantA)
		}
	}
	if sa.LocalSelector != l.a.subnets() || sa.RemoteSelector != l.b.subnets() {
		tb.Errorf("espgw status: SA pair %s <-> %s, want %s <-> %s", sa.LocalSelector, sa.RemoteSelector, l.a.subnets(), l.b.subnets())
	}
}

// sameSet tells whether two lists of prefixes hold the same ones, in any order.
func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// requirePolicyPerPair fails unless each site's kernel has, for each (local, remote)
// combination of the lab's subnets, one out policy and one in and one fwd policy for the
// way back, with nothing else in the SPD, all with one reqid, the reqid of every ESP state
// there: what makes the kernel put all of them through that one SA pair.
func requirePolicyPerPair(tb testing.TB, l *lab) {
	tb.Helper()
	for _, s := range []struct{ me, peer *site }{{&l.a, &l.b}, {&l.b, &l.a}} {
		var want []string
		for _, local := range strings.Split(s.me.subnets(), ",") {
			for _, remote := range strings.Split(s.peer.subnets(), ",") {
				want = append(want, "out "+local+" -> "+remote, "in "+remote+" -> "+local, "fwd "+remote+" -> "+local)
			}
		}
		var got []string
		reqids := map[int]bool{}
		for _, p := range ipXfrmPolicies(tb, s.me.ns) {
			got = append(got, p.dir+" "+p.src+" -> "+p.dst)
			reqids[p.reqid] = true
		}
		for _, st := range xfrmStates(tb, s.me) {
			reqids[st.Reqid] = true
		}
		if !sameSet(got, want) || len(reqids) != 1 {
			tb.Errorf("netns %s: `ip xfrm policy` has %q with reqids %v (with the states'); want %q, all with one reqid",
				s.me.ns.Name(), got, slices.Collect(maps.Keys(reqids)), want)
		}
	}
}

// requireXfrmAlgs fails unless both of espgw's states of sa in site a's kernel show the
// algorithms want (see ipXfrmAlgs).
func requireXfrmAlgs(tb testing.TB, a *site, sa espgwtest.IPsecSA, want []string) {
	tb.Helper()
	for _, s := range []string{sa.SPIIn, sa.SPIOut} {
		if got := ipXfrmAlgs(tb, a.ns, spi(tb, s)); !slices.Equal(got, want) {
			tb.Errorf("netns %s: `ip xfrm state` spi 0x%s has %q, want %q", a.ns.Name(), s, got, want)
		}
	}
}

// pingCountedByPeer is pingCounted, and also requires strongSwan's own view of the CHILD_SA
// (swanctl's counters) to have grown by the pings in both directions.
func pingCountedByPeer(tb testing.TB, l *lab, sw *strongswan.Charon, sa espgwtest.IPsecSA, want int, ping func()) {
	tb.Helper()
	child := func() strongswan.ChildSA {
		_, ch, err := sw.InstalledChild(spi(tb, sa.SPIOut))
		if err != nil {
			tb.Fatal(err)
		}
		return ch
	}
	b := child()
	pingCounted(tb, l, sa, want, ping)
	a := child()
	if a.PacketsIn-b.PacketsIn < uint64(want) || a.PacketsOut-b.PacketsOut < uint64(want) {
		tb.Errorf("strongSwan's CHILD_SA %08x counted %d packets in, %d out during the pings; want >= %d each",
			a.SPIIn, a.PacketsIn-b.PacketsIn, a.PacketsOut-b.PacketsOut, want)
	}
}

// waitChildRekeyed waits until espgw replaced the SA pair old of the lab tunnel with a new
// one, strongSwan has the new CHILD_SA INSTALLED under the same IKE_SA (unique id ike) and
// nothing else, and espgw's kernel no longer holds old's states. It returns the new pair and
// strongSwan's CHILD_SA.
func waitChildRekeyed(tb testing.TB, l *lab, g *espgwtest.Gateway, sw *strongswan.Charon, old espgwtest.IPsecSA, ike int) (espgwtest.IPsecSA, strongswan.ChildSA) {
	tb.Helper()
	var next espgwtest.IPsecSA
	var child strongswan.ChildSA
	testutil.WaitFor(tb, 100*time.Second, func() (bool, error) { // a 90 s lifetime: up to 81 s
		st, err := g.Status()
		if err != nil {
			return false, err
		}
		for _, sa := range st.TunnelSAs(connName, tunnelName) {
			if sa.SPIIn != old.SPIIn {
				next = sa
				return true, nil
			}
		}
		return false, fmt.Errorf("espgw's tunnel still has only SPI pair %s/%s", old.SPIIn, old.SPIOut)
	})
	// espgw keeps a child SA it replaced for a while (ike.replacedChildDelay, 5 s).
	testutil.WaitFor(tb, 30*time.Second, func() (bool, error) {
		sas, err := sw.ListSAs()
		if err != nil {
			return false, err
		}
		if len(sas) != 1 || sas[0].UniqueID != ike || len(sas[0].Children) != 1 {
			var got []string
			for _, s := range sas {
				got = append(got, fmt.Sprintf("#%d %s with %d CHILD_SAs", s.UniqueID, s.State, len(s.Children)))
			}
			return false, fmt.Errorf("strongSwan has IKE_SAs %q, want only #%d with one CHILD_SA, the rekeyed one", got, ike)
		}
		child = sas[0].Children[0]
		if child.State != "INSTALLED" || child.SPIIn != spi(tb, next.SPIOut) {
			return false, fmt.Errorf("strongSwan's CHILD_SA %08x/%08x %s, want %s/%s INSTALLED", child.SPIIn, child.SPIOut, child.State, next.SPIOut, next.SPIIn)
		}
		if hasXfrmState(tb, &l.a, spi(tb, old.SPIIn)) || hasXfrmState(tb, &l.a, spi(tb, old.SPIOut)) {
			return false, fmt.Errorf("netns %s still holds the old states %s/%s", l.a.ns.Name(), old.SPIIn, old.SPIOut)
		}
		return true, nil
	})
	requireCrossedSPIs(tb, next, child)
	return next, child
}

// waitIKERekeyed waits until strongSwan has replaced its IKE_SA old with a new one (other
// SPIs, strongSwan the rekey's initiator as swInitiates says) that holds exactly the
// CHILD_SA child, INSTALLED with the same SPIs, and no other IKE_SA; it returns the new one.
func waitIKERekeyed(tb testing.TB, sw *strongswan.Charon, old strongswan.IKESA, child strongswan.ChildSA, swInitiates bool) strongswan.IKESA {
	tb.Helper()
	var ike strongswan.IKESA
	testutil.WaitFor(tb, 60*time.Second, func() (bool, error) { // ike.lifetime 120 s: 102–108 s
		sas, err := sw.ListSAs()
		if err != nil {
			return false, err
		}
		if len(sas) != 1 || sas[0].InitiatorSPI == old.InitiatorSPI || sas[0].State != "ESTABLISHED" {
			var got []string
			for _, s := range sas {
				got = append(got, fmt.Sprintf("%016x_i %016x_r %s", s.InitiatorSPI, s.ResponderSPI, s.State))
			}
			return false, fmt.Errorf("strongSwan has IKE_SAs %q, want one ESTABLISHED in place of %016x_i", got, old.InitiatorSPI)
		}
		ike = sas[0]
		return true, nil
	})
	if ike.Initiator != swInitiates {
		tb.Errorf("strongSwan's rekeyed IKE_SA: initiator %v, want %v", ike.Initiator, swInitiates)
	}
	if len(ike.Children) != 1 || ike.Children[0].State != "INSTALLED" || ike.Children[0].SPIIn != child.SPIIn || ike.Children[0].SPIOut != child.SPIOut {
		var got []string
		for _, ch := range ike.Children {
			got = append(got, fmt.Sprintf("%08x/%08x %s", ch.SPIIn, ch.SPIOut, ch.State))
		}
		tb.Errorf("strongSwan's rekeyed IKE_SA has CHILD_SAs %q, want only %08x/%08x INSTALLED", got, child.SPIIn, child.SPIOut)
	}
	return ike
}
