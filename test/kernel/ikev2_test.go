//go:build vmtest

package kernel

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// TestGatewayStrongswanIKEv2 (issue 14): espgw on the xfrm datapath negotiates IKEv2 with
// strongSwan on kernel ESP (kernel-netlink), in both roles. strongSwan lists the IKE_SA
// ESTABLISHED (version 2) and the CHILD_SA INSTALLED with espgw's SPIs; the kernel states in
// espgw's namespace carry the negotiated algorithms; pings cross as ESP only and both kernels'
// and strongSwan's counters grow. The initiator then also rekeys the CHILD_SA
// (CREATE_CHILD_SA with PFS): espgw when a short tunnel lifetime runs out, strongSwan when
// told to (swanctl --rekey). Pings pass on the new SAs under the same IKE_SA, the old ones
// are gone. SIGTERM deletes the IKE_SA at strongSwan and leaves no XFRM state or policy at
// either site.
func TestGatewayStrongswanIKEv2(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, ike, esp string
		espgwInitiates bool     // espgw or strongSwan starts the IKE_SA and rekeys the CHILD_SA
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
			before := netSnapshot(t, &l.a)
			// espgw rekeys at 85–90 % of the lifetime: after the first SAs have been
			// checked (under TCG on a busy host that has taken 50 s), with ~9 s left for
			// the rekey (PFS: a DH under TCG) and ~80 s for checking the new SAs.
			gwc := gwConfig{IKEVersion: 2, PSK: labPSK, IKEProposal: c.ike, ESPProposal: c.esp, NoEBPF: true}
			start := "manual"
			if c.espgwInitiates {
				start, gwc.Lifetime = "always", "90s"
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
			requireXfrmAlgs(t, &l.a, sa, c.xfrm)
			pingCountedByPeer(t, l, sw, sa, func() { pingOverESP(t, l, false, countedPings) })

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
			pingCountedByPeer(t, l, sw, next, func() {
				if err := testutil.Ping(l.a.ns, l.a.inner.String(), l.b.inner.String(), countedPings); err != nil {
					t.Errorf("after the rekey: %v", err)
				}
			})

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
func pingCountedByPeer(tb testing.TB, l *lab, sw *strongswan.Charon, sa espgwtest.IPsecSA, ping func()) {
	tb.Helper()
	child := func() strongswan.ChildSA {
		_, ch, err := sw.InstalledChild(spi(tb, sa.SPIOut))
		if err != nil {
			tb.Fatal(err)
		}
		return ch
	}
	b := child()
	pingCounted(tb, l, sa, ping)
	a := child()
	if a.PacketsIn-b.PacketsIn < countedPings || a.PacketsOut-b.PacketsOut < countedPings {
		tb.Errorf("strongSwan's CHILD_SA %08x counted %d packets in, %d out during the pings; want >= %d each",
			a.SPIIn, a.PacketsIn-b.PacketsIn, a.PacketsOut-b.PacketsOut, countedPings)
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
