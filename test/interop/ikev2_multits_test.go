package interop

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// A tunnel with two subnets per side. espgw's second local subnet is one more address of
// the gateway (the first is the service address); the partner's second subnet is an address
// of its own, beside the host in the first (kernel-libipsec installs a CHILD_SA only with a
// local address in each of its traffic selectors).
const (
	secondLocal      = "10.10.2.1"
	secondLocalNet   = secondLocal + "/32"
	secondRemote     = "10.21.0.1"
	secondRemoteNet  = "10.21.0.0/24"
	bothLocalSubnets = localSubnet + "," + secondLocalNet
	bothRemoteNets   = remoteSubnet + "," + secondRemoteNet
)

// startMultiTS starts a lab whose espgw tunnel lists both subnets per side and starts by
// start, and whose strongSwan child lists swLocal and swRemote (its own side first),
// capturing gw-wan.
func startMultiTS(t *testing.T, start, swLocal, swRemote string) (*lab, *testutil.Capture, *strongswan.Charon, *espgwtest.Gateway) {
	t.Helper()
	l := newLab(t)
	l.gw.AddAddr(t, gwWAN, secondLocalNet)
	l.partner.AddAddr(t, "p-int", secondRemote+"/24")
	capture := testutil.StartCapture(t, l.gw, gwWAN, "ip")
	sw, g := startV2(t, l, v2Sets[0], labPSK, start, func(s *strongswan.Config, c *espgwtest.Connection) {
		s.LocalTS, s.RemoteTS = swLocal, swRemote
		c.Tunnels[0].LocalSubnet, c.Tunnels[0].RemoteSubnet = bothLocalSubnets, bothRemoteNets
	})
	return l, capture, sw, g
}

// pair is one (local, remote) combination of inner addresses.
type pair struct{ local, remote string }

var allPairs = []pair{{serviceAddr, hostAddr}, {serviceAddr, secondRemote}, {secondLocal, hostAddr}, {secondLocal, secondRemote}}

// TestIKEv2SeveralSubnets: espgw's tunnel has 2 local × 2 remote subnets (local_subnet and
// remote_subnet comma-separated), strongSwan's child the same. Whoever initiates, strongSwan
// lists ONE CHILD_SA INSTALLED with both selectors per side, a ping passes for each of the
// four combinations, and every ESP packet on the wire, decrypted with the exported keys,
// carries one of them under that child's SPIs; strongSwan's counters of the child count them.
// espgw ping reaches the second remote subnet and espgw doctor finds every remote subnet
// routed from the service address.
func TestIKEv2SeveralSubnets(t *testing.T) {
	for _, initiator := range []string{byEspgwUp, byStrongSwan} {
		t.Run(initiator, func(t *testing.T) {
			t.Parallel()
			l, capture, sw, g := startMultiTS(t, "manual", bothRemoteNets, bothLocalSubnets)
			swIKE, swChild, _, sa := negotiate(t, g, sw, initiator)
			if len(swIKE.Children) != 1 {
				t.Errorf("strongSwan has %d CHILD_SAs, want 1 for both pairs of subnets", len(swIKE.Children))
			}
			wantL, wantR := []string{remoteSubnet, secondRemoteNet}, []string{localSubnet, secondLocalNet}
			if !sameSet(swChild.LocalTS, wantL) || !sameSet(swChild.RemoteTS, wantR) {
				t.Errorf("strongSwan's CHILD_SA %s: local ts %v, remote ts %v; want %v and %v", swChild.State, swChild.LocalTS, swChild.RemoteTS, wantL, wantR)
			}
			if sa.LocalSelector != bothLocalSubnets || sa.RemoteSelector != bothRemoteNets {
				t.Errorf("espgw status: child SA %s <-> %s, want %s <-> %s", sa.LocalSelector, sa.RemoteSelector, bothLocalSubnets, bothRemoteNets)
			}
			const pings = 3
			for _, p := range allPairs {
				if err := testutil.Ping(l.gw, p.local, p.remote, pings); err != nil {
					t.Errorf("%s -> %s: %v", p.local, p.remote, err)
				}
			}
			if err := testutil.Ping(l.host, hostAddr, secondLocal, pings); err != nil {
				t.Errorf("from the partner's side: %v", err)
			}
			// espgw's own tools take the lists: ping into the second remote subnet, and
			// doctor routes every remote subnet from the service address.
			if r := gwRun(t, g, "ping", connName+"/"+tunnelName, secondRemote, "-c", "2"); r.Code != 0 {
				t.Errorf("espgw ping %s exited %d:\n%s%s", secondRemote, r.Code, r.Stdout, r.Stderr)
			}
			requireLines(t, "espgw doctor", gwRun(t, g, "doctor", "-c", g.ConfigPath()).Stdout,
				`^OK +service_address +megatelecom: 10\.10\.1\.1/32 is on gw-wan and the tunnels' traffic leaves from it`,
				`^OK +tunnel +megatelecom/api: up, `)
			pcap := capture.Stop()
			seen := innerPairs(t, pcap, g.Keys(t), sa)
			for _, p := range allPairs {
				if seen[p] < pings || seen[pair{p.remote, p.local}] < pings {
					t.Errorf("%s <-> %s: %d ESP packets out, %d in under SPIs %s/%s; want at least %d each",
						p.local, p.remote, seen[p], seen[pair{p.remote, p.local}], sa.SPIOut, sa.SPIIn, pings)
				}
			}
			_, swChild = sw.WaitInstalled(t, "s2s", negotiationTimeout)
			if want := uint64(len(allPairs)+1) * pings; swChild.PacketsIn < want || swChild.PacketsOut < want {
				t.Errorf("strongSwan's CHILD_SA %08x/%08x counted %d packets in, %d out; want at least %d each",
					swChild.SPIIn, swChild.SPIOut, swChild.PacketsIn, swChild.PacketsOut, want)
			}
			t.Logf("strongSwan CHILD_SA %s %08x/%08x %v <-> %v, %d packets in, %d out; ESP per inner pair: %v",
				swChild.State, swChild.SPIIn, swChild.SPIOut, swChild.LocalTS, swChild.RemoteTS, swChild.PacketsIn, swChild.PacketsOut, seen)
		})
	}
}

// TestIKEv2SeveralSubnetsNarrowed: espgw offers 2 × 2 subnets, strongSwan's child has only
// the first remote subnet on its side. strongSwan narrows (RFC 7296 2.9): the one CHILD_SA
// has espgw's two local subnets and strongSwan's one, espgw installs that narrowed set,
// pings inside it pass, and pings to the partner's second subnet, which espgw's policy
// covers but the child SA does not, neither pass nor leave in clear (the wire holds only
// IKE and ESP, and no ESP packet carries them).
func TestIKEv2SeveralSubnetsNarrowed(t *testing.T) {
	t.Parallel()
	l, capture, sw, g := startMultiTS(t, "manual", remoteSubnet, bothLocalSubnets)
	_, swChild, _, sa := negotiate(t, g, sw, byEspgwUp)
	if !sameSet(swChild.LocalTS, []string{remoteSubnet}) || !sameSet(swChild.RemoteTS, []string{localSubnet, secondLocalNet}) {
		t.Errorf("strongSwan's CHILD_SA %s: local ts %v, remote ts %v; want [%s] and [%s %s]",
			swChild.State, swChild.LocalTS, swChild.RemoteTS, remoteSubnet, localSubnet, secondLocalNet)
	}
	if sa.LocalSelector != bothLocalSubnets || sa.RemoteSelector != remoteSubnet {
		t.Errorf("espgw installed %s <-> %s, want the narrowed %s <-> %s", sa.LocalSelector, sa.RemoteSelector, bothLocalSubnets, remoteSubnet)
	}
	for _, local := range []string{serviceAddr, secondLocal} {
		if err := testutil.Ping(l.gw, local, hostAddr, 3); err != nil {
			t.Errorf("%s -> %s (inside the narrowed child SA): %v", local, hostAddr, err)
		}
		if err := testutil.Ping(l.gw, local, secondRemote, 2); err == nil {
			t.Errorf("%s -> %s passed, want it dropped: the child SA does not carry it", local, secondRemote)
		}
	}
	pcap := capture.Stop()
	requireOnlyIKEAndESP(t, pcap, true)
	seen := innerPairs(t, pcap, g.Keys(t), sa)
	for p, n := range seen {
		if p.remote == secondRemote || p.local == secondRemote {
			t.Errorf("%d ESP packets carry %s -> %s, outside the narrowed child SA", n, p.local, p.remote)
		}
	}
	t.Logf("strongSwan CHILD_SA %v <-> %v; ESP per inner pair: %v", swChild.LocalTS, swChild.RemoteTS, seen)
}

// TestIKEv2SeveralSubnetsOnDemand: the tunnel starts on demand; a ping from espgw's second
// local subnet to the partner's second remote subnet brings it up, and espgw's IKE_AUTH
// offers that packet's addresses first in TSi and TSr (RFC 7296 2.9), as strongSwan's log of
// the selectors it received shows; the child SA still carries both subnets per side.
func TestIKEv2SeveralSubnetsOnDemand(t *testing.T) {
	t.Parallel()
	l, _, sw, _ := startMultiTS(t, "on-demand", bothRemoteNets, bothLocalSubnets)
	_ = testutil.Ping(l.gw, secondLocal, secondRemote, 1) // asks for the tunnel; may be lost meanwhile
	_, swChild := sw.WaitInstalled(t, "s2s", negotiationTimeout)
	if !sameSet(swChild.LocalTS, []string{remoteSubnet, secondRemoteNet}) || !sameSet(swChild.RemoteTS, []string{localSubnet, secondLocalNet}) {
		t.Errorf("strongSwan's CHILD_SA %s: local ts %v, remote ts %v; want both subnets per side", swChild.State, swChild.LocalTS, swChild.RemoteTS)
	}
	// charon names what it received, its own side (our TSr) first.
	received := "looking for a child config for " + secondRemote + "/32 " + strings.ReplaceAll(bothRemoteNets, ",", " ") +
		" === " + secondLocal + "/32 " + strings.ReplaceAll(bothLocalSubnets, ",", " ")
	if !sw.LogContains(received) {
		t.Errorf("charon log lacks %q: espgw did not offer the triggering packet first", received)
	}
	if err := testutil.Ping(l.gw, secondLocal, secondRemote, 3); err != nil {
		t.Error(err)
	}
}

// innerPairs decrypts the ESP of pcap and counts the inner (source, destination) pairs of
// the packets under sa's SPIs; ESP under any other SPI or not decrypting fails the test.
func innerPairs(t *testing.T, pcap string, keys testutil.Keys, sa espgwtest.IPsecSA) map[pair]int {
	t.Helper()
	seen := map[pair]int{}
	for _, r := range testutil.ESPRows(t, pcap, keys) {
		spi := fmt.Sprintf("%08x", r.SPI)
		if spi != sa.SPIIn && spi != sa.SPIOut || !r.ICVGood || !r.Decrypted {
			t.Errorf("ESP frame %d %v -> %v SPI %s: ICV good %v, decrypted %v; want both, SPI %s or %s",
				r.Frame, r.OuterSrc, r.OuterDst, spi, r.ICVGood, r.Decrypted, sa.SPIOut, sa.SPIIn)
			continue
		}
		seen[pair{r.InnerSrc.String(), r.InnerDst.String()}]++
	}
	return seen
}

// sameSet reports whether two lists of prefixes hold the same ones, in any order.
func sameSet(a, b []string) bool {
	norm := func(l []string) []string {
		out := make([]string, 0, len(l))
		for _, s := range l {
			if p, err := netip.ParsePrefix(s); err == nil {
				s = p.Masked().String()
			}
			out = append(out, s)
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(norm(a), norm(b))
}
