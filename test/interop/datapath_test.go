package interop

import (
	"fmt"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
)

// pings is how many echo requests each direction sends.
const pings = 3

// TestUserspaceDatapathStrongSwan is the acceptance test of the userspace datapath against
// strongSwan: pings between the service address and a host behind the partner pass both
// ways, only IKE and ESP cross the transit link, tshark decrypts every ESP packet in both
// directions with espgw's save_keys files, and SIGTERM leaves the namespace as it was.
func TestUserspaceDatapathStrongSwan(t *testing.T) {
	for _, set := range proposalSets {
		t.Run(set.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			sw := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
			capture := testutil.StartCapture(t, l.gw, gwWAN, "ip")
			before := netState(t, l.gw)
			g := espgwtest.Start(t, l.gw, espgwtest.Config{Datapath: "userspace", Connections: []espgwtest.Connection{gwConn(set.ike, set.esp, "manual")}})
			requireInstalled(t, l.gw, "addr "+serviceAddr+"/32 dev "+gwWAN, "link espgw0 type tuntap")

			if err := g.Up(connName+"/"+tunnelName, negotiationTimeout); err != nil {
				t.Fatal(err)
			}
			sw.WaitInstalled(t, "s2s", negotiationTimeout)
			_, sa := g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
			requireInstalled(t, l.gw, "route table 220 type 1 dst "+remoteSubnet+" src "+serviceAddr+" gw <nil> dev espgw0", "rule family 2 prio 220 table 220")
			pingBothWays(t, l)
			pcap := capture.Stop()

			requireOnlyIKEAndESP(t, pcap, true)
			keys := g.Keys(t)
			requireESPDecrypts(t, pcap, keys, true,
				flow{gwAddr, partnerAddr, sa.SPIOut, 2 * pings},
				flow{partnerAddr, gwAddr, sa.SPIIn, 2 * pings})
			requireOracleRejectsWrongKey(t, pcap, keys)
			requireCounters(t, g, connName, tunnelName, 2*pings)

			g.Stop(t)
			requireSameNetState(t, l.gw, before, "espgw stopped (SIGTERM)")
			// The daemon deletes its SAs at shutdown and tells the peer.
			err := testutil.Poll(5*time.Second, func() (bool, error) {
				sas, err := sw.ListSAs()
				for _, s := range sas {
					if len(s.Children) > 0 {
						return false, fmt.Errorf("strongSwan still has CHILD_SA %s (SPI in %08x)", s.Children[0].Name, s.Children[0].SPIIn)
					}
				}
				return err == nil, err
			})
			if err != nil {
				t.Errorf("after espgw's SIGTERM: %v", err)
			}
		})
	}
}

// TestUserspaceDatapathEspgwPair runs espgw on both sides with raw ESP (nat_traversal: off):
// the same checks as with strongSwan, plus a 50 MB TCP transfer whose SHA-256 matches.
func TestUserspaceDatapathEspgwPair(t *testing.T) {
	for _, set := range proposalSets {
		t.Run(set.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			capture := testutil.StartCapture(t, l.gw, gwWAN, "ip")
			beforeGW, beforePartner := netState(t, l.gw), netState(t, l.partner)

			pc := espgwtest.Connection{Name: "gw", Local: partnerAddr, Remote: gwAddr, PSK: labPSK, IKEProposal: set.ike, NATTraversal: "off",
				Tunnels: []espgwtest.Tunnel{{Name: tunnelName, LocalSubnet: remoteSubnet, RemoteSubnet: localSubnet, ESPProposal: set.esp, Start: "manual"}}}
			partner := espgwtest.Start(t, l.partner, espgwtest.Config{Datapath: "userspace", Connections: []espgwtest.Connection{pc}})
			gc := gwConn(set.ike, set.esp, "manual")
			gc.NATTraversal = "off"
			g := espgwtest.Start(t, l.gw, espgwtest.Config{Datapath: "userspace", Connections: []espgwtest.Connection{gc}})

			if err := g.Up(connName+"/"+tunnelName, negotiationTimeout); err != nil {
				t.Fatal(err)
			}
			st, sa := g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
			_, psa := partner.WaitTunnelUp(t, "gw", tunnelName, negotiationTimeout)
			if sa.SPIIn != psa.SPIOut || sa.SPIOut != psa.SPIIn {
				t.Errorf("SPIs: gateway in/out %s/%s, partner in/out %s/%s; want crossed equal", sa.SPIIn, sa.SPIOut, psa.SPIIn, psa.SPIOut)
			}
			if ikes := st.ConnectionSAs(connName); len(ikes) != 1 || ikes[0].NATT || sa.EncapLocalPort != 0 || sa.Algorithms != set.gwChild {
				t.Errorf("gateway: IKE SAs %+v, IPsec SA %+v; want one IKE SA without NAT-T, raw ESP, %q", ikes, sa, set.gwChild)
			}
			pingBothWays(t, l)
			pcap := capture.Stop()

			requireOnlyIKEAndESP(t, pcap, false)
			gk, pk := g.Keys(t), partner.Keys(t)
			requireSameESPKeys(t, "gateway", gk, "partner", pk, sa.SPIIn, sa.SPIOut)
			flows := []flow{{gwAddr, partnerAddr, sa.SPIOut, 2 * pings}, {partnerAddr, gwAddr, sa.SPIIn, 2 * pings}}
			requireESPDecrypts(t, pcap, gk, false, flows...)
			requireESPDecrypts(t, pcap, pk, false, flows...)
			requireOracleRejectsWrongKey(t, pcap, gk)

			transferred := tcpTransfer(t, l.gw, serviceAddr, l.host, hostAddr, transferSize)
			requireCounters(t, g, connName, tunnelName, 2*pings)
			if st := g.MustStatus(t).TunnelSAs(connName, tunnelName); len(st) == 0 || st[0].BytesOut < uint64(transferred) {
				t.Errorf("gateway IPsec SAs after sending %d bytes: %+v, want bytes_out at least that", transferred, st)
			}

			g.Stop(t)
			partner.Stop(t)
			requireSameNetState(t, l.gw, beforeGW, "espgw stopped (SIGTERM)")
			requireSameNetState(t, l.partner, beforePartner, "espgw stopped (SIGTERM)")
		})
	}
}

// pingBothWays pings the host behind the partner from the service address and back.
func pingBothWays(t *testing.T, l *lab) {
	t.Helper()
	if err := testutil.Ping(l.gw, serviceAddr, hostAddr, pings); err != nil {
		t.Error(err)
	}
	if err := testutil.Ping(l.host, hostAddr, serviceAddr, pings); err != nil {
		t.Error(err)
	}
}

// requireCounters fails the test unless espgw counts at least n packets each way on the tunnel.
func requireCounters(t *testing.T, g *espgwtest.Gateway, conn, tun string, n uint64) {
	t.Helper()
	sas := g.MustStatus(t).TunnelSAs(conn, tun)
	if len(sas) == 0 {
		t.Errorf("espgw status: no IPsec SA for %s/%s", conn, tun)
		return
	}
	sa := sas[0]
	if sa.CountersError != "" || sa.PacketsIn < n || sa.PacketsOut < n || sa.BytesIn == 0 || sa.BytesOut == 0 {
		t.Errorf("espgw counters of %s/%s: in %d packets/%d bytes, out %d packets/%d bytes, error %q; want at least %d packets each way",
			conn, tun, sa.PacketsIn, sa.BytesIn, sa.PacketsOut, sa.BytesOut, sa.CountersError, n)
	}
}
