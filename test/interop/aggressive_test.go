package interop

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// idPair is the two identities of an aggressive-mode scenario: espgw's and the partner's,
// in espgw's syntax (config.ParseIdentity) and in swanctl's.
type idPair struct {
	name                string
	kind                string // ID payload type on the wire (RFC 2407 4.6.2.1)
	gw, partner         string // espgw local_id / remote_id
	swanGW, swanPartner string // swanctl remote.id / local.id
	wireGW, wirePartner string // what tshark shows as the ID payload's data
	wireField           string // the tshark field holding it
}

var aggressiveIDs = []idPair{
	{name: "FQDN", kind: "2", gw: "gw.example.net", partner: "vpn.bank.example",
		swanGW: "fqdn:gw.example.net", swanPartner: "fqdn:vpn.bank.example",
		wireGW: "gw.example.net", wirePartner: "vpn.bank.example", wireField: "isakmp.id.data.fqdn"},
	{name: "KEY-ID", kind: "11", gw: "keyid:espgw-branch-7", partner: "keyid:bank-hq",
		swanGW: "keyid:espgw-branch-7", swanPartner: "keyid:bank-hq",
		wireGW: hex.EncodeToString([]byte("espgw-branch-7")), wirePartner: hex.EncodeToString([]byte("bank-hq")), wireField: "isakmp.id.data.key_id"},
}

// TestAggressiveModeIdentities: aggressive mode with a PSK chosen by identity, both peers
// named by FQDN or by KEY-ID rather than by address, espgw initiating and strongSwan
// initiating. strongSwan lists the IKE SA ESTABLISHED with both identities and the child
// INSTALLED under espgw's SPIs; the wire shows an aggressive exchange (type 4) carrying the
// identities in its ID payloads and no main mode; traffic passes both ways.
func TestAggressiveModeIdentities(t *testing.T) {
	for _, ids := range aggressiveIDs {
		for _, initiator := range []string{byEspgwUp, byStrongSwan} {
			t.Run(ids.name+"/"+initiator, func(t *testing.T) {
				t.Parallel()
				testAggressiveMode(t, ids, initiator)
			})
		}
	}
}

func testAggressiveMode(t *testing.T, ids idPair, initiator string) {
	set := proposalSets[1] // aggressive mode offers one DH group
	l := newLab(t)
	sw := strongswan.Start(t, l.partner, strongswan.Config{
		LocalAddr: partnerAddr, RemoteAddr: gwAddr, LocalID: ids.swanPartner, RemoteID: ids.swanGW, PSK: labPSK,
		IKEProposals: set.ike, ESPProposals: set.esp, LocalTS: remoteSubnet, RemoteTS: localSubnet, Aggressive: true,
	})
	capture := testutil.StartCapture(t, l.gw, gwWAN, "udp")
	c := gwConn(set.ike, set.esp, "manual")
	c.Mode, c.LocalID, c.RemoteID = "aggressive", ids.gw, ids.partner
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Connections: []espgwtest.Connection{c}})
	espgwInitiates := initiator == byEspgwUp
	if espgwInitiates {
		if err := g.Up(connName+"/"+tunnelName, negotiationTimeout); err != nil {
			t.Fatal(err)
		}
	} else if err := sw.Initiate("s2s", negotiationTimeout); err != nil {
		t.Fatal(err)
	}
	swIKE, child := sw.WaitInstalled(t, "s2s", negotiationTimeout)
	var err error
	st, sa := g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
	pingBothWays(t, l)
	pcap := capture.Stop()

	if swIKE.Initiator == espgwInitiates {
		t.Errorf("swanctl IKE_SA: initiator %v, want %v", swIKE.Initiator, !espgwInitiates)
	}
	if !sameID(swIKE.LocalID, ids.swanPartner) || !sameID(swIKE.RemoteID, ids.swanGW) {
		t.Errorf("swanctl IKE_SA identities local %q remote %q, want %q and %q", swIKE.LocalID, swIKE.RemoteID, ids.swanPartner, ids.swanGW)
	}
	if sa.SPIOut != fmt.Sprintf("%08x", child.SPIIn) || sa.SPIIn != fmt.Sprintf("%08x", child.SPIOut) {
		t.Errorf("SPIs: espgw in/out %s/%s, strongSwan in/out %08x/%08x; want crossed equal", sa.SPIIn, sa.SPIOut, child.SPIIn, child.SPIOut)
	}
	if ikes := st.ConnectionSAs(connName); len(ikes) != 1 || ikes[0].Mode != "aggressive" || ikes[0].Initiator != espgwInitiates {
		t.Errorf("espgw IKE SAs %+v, want one in aggressive mode, initiator %v", ikes, espgwInitiates)
	}
	if _, child, err = sw.InstalledChild(child.SPIIn); err != nil {
		t.Fatal(err)
	}
	if child.PacketsIn < 2*pings || child.PacketsOut < 2*pings {
		t.Errorf("strongSwan CHILD_SA counters in %d out %d packets, want at least %d each way", child.PacketsIn, child.PacketsOut, 2*pings)
	}
	requireAggressiveOnWire(t, pcap, ids)
}

// sameID compares an identity as swanctl lists it with the one configured: swanctl drops
// the type prefix ("fqdn:x" and a printable "keyid:x" list as "x"; the wire check sees the type).
func sameID(listed, configured string) bool {
	_, v, _ := strings.Cut(configured, ":")
	return listed == v
}

// requireAggressiveOnWire fails the test unless the capture holds an aggressive exchange whose
// first two messages carry both identities as ID payloads of the expected type, and no main mode.
func requireAggressiveOnWire(t *testing.T, pcap string, ids idPair) {
	t.Helper()
	rows := testutil.TShark(t, pcap, testutil.Keys{}, "isakmp.exchangetype == 2 || isakmp.exchangetype == 4",
		"isakmp.exchangetype", "isakmp.id.type", ids.wireField)
	var sawIDs []string
	for _, r := range rows {
		if r.First("isakmp.exchangetype") != "4" {
			t.Errorf("a main-mode message (exchange type %s) on the wire, want aggressive mode only", r.First("isakmp.exchangetype"))
			continue
		}
		for i, typ := range r["isakmp.id.type"] {
			if typ != ids.kind {
				t.Errorf("ID payload type %s, want %s (%s)", typ, ids.kind, ids.name)
			}
			if v := r[ids.wireField]; i < len(v) {
				sawIDs = append(sawIDs, strings.ReplaceAll(v[i], ":", ""))
			}
		}
	}
	for _, want := range []string{ids.wireGW, ids.wirePartner} {
		if !slices.Contains(sawIDs, want) {
			t.Errorf("ID payloads on the wire %q, want %q among them", sawIDs, want)
		}
	}
	t.Logf("aggressive mode on the wire, %d messages, %s identities %q", len(rows), ids.name, sawIDs)
}
