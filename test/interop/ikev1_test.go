package interop

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// proposalSet is one of the two algorithm sets of the acceptance criteria, with what espgw
// and swanctl print once it is negotiated.
type proposalSet struct {
	name, ike, esp string
	gwChild        string // espgw status ipsec_sas[].algorithms
	swanIKE        string // strongswan.IKESA.Proposal()
	swanChild      string // strongswan.ChildSA.Proposal()
}

var proposalSets = []proposalSet{
	{"3des-sha1-modp1024", "3des-sha1-modp1024", "3des-sha1-modp1024", "esp 3des-sha1 pfs modp1024",
		"3DES_CBC/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024", "3DES_CBC/HMAC_SHA1_96/MODP_1024"},
	{"aes256-sha256-modp2048", "aes256-sha256-modp2048", "aes256gcm16-modp2048", "esp aes256gcm16 pfs modp2048",
		"AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048", "AES_GCM_16_256/MODP_2048"},
}

// Who starts the negotiation.
const (
	byEspgwUp     = "espgw-up"     // `espgw up megatelecom/api`
	byEspgwAlways = "espgw-always" // start: always
	byStrongSwan  = "strongswan"   // swanctl --initiate
)

// negotiationTimeout bounds one main mode + quick mode; on the wire it takes ~20 ms.
const negotiationTimeout = 30 * time.Second

// TestIKEv1StrongSwan is the acceptance test of the IKEv1 control plane: espgw negotiates
// main mode and quick mode with strongSwan, as initiator and as responder, and both sides
// agree on SPIs, cookies and keys; tshark decrypts strongSwan's ESP with espgw's keys.
func TestIKEv1StrongSwan(t *testing.T) {
	tests := []struct {
		set       proposalSet
		initiator string
	}{
		{proposalSets[0], byEspgwUp},
		{proposalSets[0], byEspgwAlways},
		{proposalSets[0], byStrongSwan},
		{proposalSets[1], byEspgwUp},
		{proposalSets[1], byEspgwAlways},
		{proposalSets[1], byStrongSwan},
	}
	for _, tt := range tests {
		t.Run(tt.set.name+"/"+tt.initiator, func(t *testing.T) {
			t.Parallel()
			testIKEv1StrongSwan(t, tt.set, tt.initiator)
		})
	}
}

func testIKEv1StrongSwan(t *testing.T, set proposalSet, initiator string) {
	l := newLab(t)
	sw := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
	capture := testutil.StartCapture(t, l.gw, gwWAN, "ip")
	start := "manual"
	if initiator == byEspgwAlways {
		start = "always"
	}
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Datapath: "auto", Connections: []espgwtest.Connection{gwConn(set.ike, set.esp, start)}})

	swIKE, swChild, st, sa := negotiate(t, g, sw, initiator)
	espgwInitiated := initiator != byStrongSwan

	// swanctl --list-sas: an ESTABLISHED IKEv1 SA with the child INSTALLED.
	if swIKE.Version != 1 || swIKE.Initiator == espgwInitiated || swIKE.Proposal() != set.swanIKE {
		t.Errorf("swanctl IKE_SA: version %d, initiator %v, proposal %s; want 1, %v, %s",
			swIKE.Version, swIKE.Initiator, swIKE.Proposal(), !espgwInitiated, set.swanIKE)
	}
	if len(swIKE.Children) != 1 || swChild.Mode != "TUNNEL" || swChild.Protocol != "ESP" || swChild.Proposal() != set.swanChild {
		t.Errorf("swanctl: %d CHILD_SAs, %s %s %s; want 1 TUNNEL ESP %s",
			len(swIKE.Children), swChild.Mode, swChild.Protocol, swChild.Proposal(), set.swanChild)
	}

	// espgw status: the same ISAKMP SA and the same SPIs, crossed.
	ikes := st.ConnectionSAs(connName)
	if len(ikes) != 1 {
		t.Fatalf("espgw status: %d IKE SAs of %s (%+v), want 1", len(ikes), connName, ikes)
	}
	gi := ikes[0]
	if gi.State != "ESTABLISHED" || gi.Initiator != espgwInitiated || gi.Mode != "main" || gi.Algorithms != set.ike || !gi.NATT {
		t.Errorf("espgw IKE SA: state %q initiator %v mode %q algorithms %q nat_t %v; want ESTABLISHED %v main %q true (strongSwan forces NAT-T)",
			gi.State, gi.Initiator, gi.Mode, gi.Algorithms, gi.NATT, espgwInitiated, set.ike)
	}
	if want := fmt.Sprintf("%016x", swIKE.InitiatorSPI); gi.InitiatorCookie != want {
		t.Errorf("espgw initiator cookie %s, strongSwan's %s", gi.InitiatorCookie, want)
	}
	if want := fmt.Sprintf("%016x", swIKE.ResponderSPI); gi.ResponderCookie != want {
		t.Errorf("espgw responder cookie %s, strongSwan's %s", gi.ResponderCookie, want)
	}
	if sa.SPIIn != fmt.Sprintf("%08x", swChild.SPIOut) || sa.SPIOut != fmt.Sprintf("%08x", swChild.SPIIn) {
		t.Errorf("SPIs: espgw in/out %s/%s, strongSwan in/out %08x/%08x; want crossed equal", sa.SPIIn, sa.SPIOut, swChild.SPIIn, swChild.SPIOut)
	}
	if sa.Algorithms != set.gwChild || sa.LocalSelector != localSubnet || sa.RemoteSelector != remoteSubnet ||
		sa.EncapLocalPort != 4500 || sa.EncapRemotePort != 4500 {
		t.Errorf("espgw IPsec SA %+v: want algorithms %q, selectors %s <-> %s, ESP in UDP 4500/4500", sa, set.gwChild, localSubnet, remoteSubnet)
	}

	// Traffic both ways, so that strongSwan sends ESP.
	if err := testutil.Ping(l.gw, serviceAddr, hostAddr, 3); err != nil {
		t.Error(err)
	}
	if err := testutil.Ping(l.host, hostAddr, serviceAddr, 3); err != nil {
		t.Error(err)
	}
	pcap := capture.Stop()

	// espgw's save_keys files hold the keys charon logged.
	gk := g.Keys(t)
	sk, err := sw.Keys()
	if err != nil {
		t.Fatalf("charon key log: %v", err)
	}
	requireSameESPKeys(t, "espgw", gk, "charon", sk.TShark(), sa.SPIIn, sa.SPIOut)
	requireSameIKEKey(t, gk, sk, swIKE.InitiatorSPI)

	// tshark decrypts what strongSwan sent with espgw's keys.
	rows := testutil.ESPRows(t, pcap, gk)
	fromSwan := 0
	for _, r := range rows {
		if r.OuterSrc.String() != partnerAddr {
			continue
		}
		fromSwan++
		if !r.ICVGood || !r.Decrypted || fmt.Sprintf("%08x", r.SPI) != sa.SPIIn {
			t.Errorf("ESP frame %d from strongSwan (SPI %08x seq %d): ICV good %v, decrypted %v; want both, SPI %s",
				r.Frame, r.SPI, r.Seq, r.ICVGood, r.Decrypted, sa.SPIIn)
		}
	}
	t.Logf("espgw IKE SA %s/%s %s, IPsec SA in %s out %s %s; %d ESP packets from strongSwan decrypted",
		gi.InitiatorCookie, gi.ResponderCookie, gi.Algorithms, sa.SPIIn, sa.SPIOut, sa.Algorithms, fromSwan)
	if fromSwan < 6 {
		t.Errorf("%d ESP packets from strongSwan in the capture, want at least 6 (3 echo replies, 3 echo requests)", fromSwan)
	}
}

// negotiate starts the negotiation of the seed's tunnel by initiator (byEspgwUp: `espgw up`;
// byStrongSwan: swanctl --initiate; else it starts by itself) and waits until the partner
// has it INSTALLED and espgw up.
func negotiate(t *testing.T, g *espgwtest.Gateway, sw *strongswan.Charon, initiator string) (strongswan.IKESA, strongswan.ChildSA, espgwtest.Status, espgwtest.IPsecSA) {
	t.Helper()
	switch initiator {
	case byEspgwUp:
		if err := g.Up(connName+"/"+tunnelName, negotiationTimeout); err != nil {
			t.Fatal(err)
		}
	case byStrongSwan:
		if err := sw.Initiate("s2s", negotiationTimeout); err != nil {
			t.Fatal(err)
		}
	}
	swIKE, swChild := sw.WaitInstalled(t, "s2s", negotiationTimeout)
	st, sa := g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
	return swIKE, swChild, st, sa
}

// pskMismatch is what espgw reports when the peers' pre-shared keys differ (ike.ErrPSKMismatch).
const pskMismatch = "pre-shared key mismatch"

// pskFailTimeout is how long a failure may take to show, on both sides.
const pskFailTimeout = 30 * time.Second

// TestIKEv1WrongPSK: with a wrong pre-shared key the negotiation fails cleanly on both sides,
// whoever initiates: espgw says "pre-shared key mismatch", keeps running and its other
// connection still comes up; strongSwan establishes nothing.
func TestIKEv1WrongPSK(t *testing.T) {
	t.Parallel()
	set := proposalSets[0]
	l := newLab(t)
	// A second partner on its own link, for the connection that must keep working.
	other := testutil.NewNetNS(t, "iop-partner2")
	testutil.Veth(t, l.gw, "gw-wan2", "198.51.100.1/24", other, partnerWAN, "198.51.100.2/24")
	// kernel-libipsec installs a CHILD_SA only with a local address inside its traffic selector.
	testutil.Veth(t, other, "p-int", "10.30.0.1/24", other, "p-int-end", "")
	bad := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
	good := startSwan(t, other, "198.51.100.2", "198.51.100.1", labPSK, set, "10.30.0.0/24", "10.10.2.1/32")

	badConn := gwConn(set.ike, set.esp, "manual")
	badConn.Name, badConn.PSK, badConn.ServiceAddress = "wrongkey", "not-the-partners-key", ""
	goodConn := espgwtest.Connection{Name: "goodkey", Local: "198.51.100.1", Remote: "198.51.100.2", PSK: labPSK, IKEProposal: set.ike,
		Tunnels: []espgwtest.Tunnel{{Name: tunnelName, LocalSubnet: "10.10.2.1/32", RemoteSubnet: "10.30.0.0/24", ESPProposal: set.esp, Start: "manual"}}}
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Datapath: "auto", Connections: []espgwtest.Connection{badConn, goodConn}})

	t.Run("espgw initiates", func(t *testing.T) {
		begin := time.Now()
		err := g.Up("wrongkey/"+tunnelName, pskFailTimeout+5*time.Second)
		took := time.Since(begin)
		if err == nil {
			t.Fatalf("espgw up wrongkey/%s succeeded with a wrong pre-shared key", tunnelName)
		}
		if took > pskFailTimeout {
			t.Errorf("espgw up took %v to fail, want at most %v", took.Round(time.Millisecond), pskFailTimeout)
		}
		t.Logf("espgw up failed after %v: %v", took.Round(time.Millisecond), err)
		requirePSKMismatch(t, g, "wrongkey", begin, pskFailTimeout-took)
		requireNotEstablished(t, bad)
	})
	t.Run("strongSwan initiates", func(t *testing.T) {
		begin := time.Now()
		if err := bad.Initiate("s2s", 2*time.Second); err == nil {
			t.Errorf("swanctl --initiate succeeded with a wrong pre-shared key")
		}
		requirePSKMismatch(t, g, "wrongkey", begin, pskFailTimeout)
		requireNotEstablished(t, bad)
	})
	t.Run("other connection works", func(t *testing.T) {
		g.Alive(t)
		if err := g.Up("goodkey/"+tunnelName, negotiationTimeout); err != nil {
			t.Fatal(err)
		}
		_, child := good.WaitInstalled(t, "s2s", negotiationTimeout)
		_, sa := g.WaitTunnelUp(t, "goodkey", tunnelName, negotiationTimeout)
		if sa.SPIIn != fmt.Sprintf("%08x", child.SPIOut) {
			t.Errorf("goodkey: espgw SPI in %s, strongSwan SPI out %08x", sa.SPIIn, child.SPIOut)
		}
		st := g.MustStatus(t)
		if ts, _ := st.Tunnel("wrongkey", tunnelName); ts.State == "up" {
			t.Errorf("wrongkey/%s is up", tunnelName)
		}
		for _, s := range st.ConnectionSAs("wrongkey") {
			if s.State == "ESTABLISHED" {
				t.Errorf("espgw has an ESTABLISHED IKE SA with the wrong key: %+v", s)
			}
		}
	})
	g.Stop(t)
}

// requirePSKMismatch waits up to timeout for espgw's status to report a pre-shared key
// mismatch on conn that happened after since.
func requirePSKMismatch(t *testing.T, g *espgwtest.Gateway, conn string, since time.Time, timeout time.Duration) {
	t.Helper()
	err := testutil.Poll(max(timeout, time.Second), func() (bool, error) {
		st, err := g.Status()
		if err != nil {
			return false, err
		}
		ts, ok := st.Tunnel(conn, tunnelName)
		if !ok {
			return false, fmt.Errorf("no tunnel %s/%s in status", conn, tunnelName)
		}
		if ts.State == "up" || !strings.Contains(ts.LastError, pskMismatch) || ts.LastErrorTime.Before(since.Add(-time.Second)) {
			return false, fmt.Errorf("tunnel %s/%s: state %q, last error %q at %v; want %q after %v",
				conn, tunnelName, ts.State, ts.LastError, ts.LastErrorTime, pskMismatch, since.Format(time.StampMilli))
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("espgw status: %v", err)
	}
	if !strings.Contains(g.Log(), pskMismatch) {
		t.Errorf("espgw log does not say %q", pskMismatch)
	}
	g.Alive(t)
}

// requireNotEstablished fails the test if charon has an ESTABLISHED IKE SA or any CHILD_SA.
func requireNotEstablished(t *testing.T, c *strongswan.Charon) {
	t.Helper()
	sas, err := c.ListSAs()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sas {
		if s.State == "ESTABLISHED" || len(s.Children) > 0 {
			t.Errorf("strongSwan has IKE_SA %s #%d in state %s with %d CHILD_SAs, want nothing established", s.Name, s.UniqueID, s.State, len(s.Children))
		}
	}
}
