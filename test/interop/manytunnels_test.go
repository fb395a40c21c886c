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

// TestManyTunnels is the partner with a sheet of subnet pairs: one connection, n tunnels
// (one quick mode each under one ISAKMP SA). strongSwan keeps the CBC IV state of only
// charon.max_ikev1_exchanges (3) phase-2 exchanges per IKE SA and may process a QM3 after
// the QM1 sent behind it, so an initiator with several quick modes in flight sends QM3s
// charon cannot decrypt ("decryption failed?") and believes in child SAs charon never
// installed (before ike.quick_modes: 0 of 5, 8 or 100 INSTALLED). Every child must be
// INSTALLED at strongSwan, whoever initiates, and a sample of them must carry traffic.
func TestManyTunnels(t *testing.T) {
	for _, n := range []int{8, 100} {
		for _, initiator := range []string{byEspgwAlways, byStrongSwan} {
			t.Run(fmt.Sprintf("%d/%s", n, initiator), func(t *testing.T) {
				testManyTunnels(t, n, initiator)
			})
		}
	}
}

// Tunnel i (1-based) of the many-tunnels lab: espgw's 10.100.i.1/32 === strongSwan's 10.20.i.0/24.
func manyLocal(i int) string  { return fmt.Sprintf("10.100.%d.1", i) }
func manyRemote(i int) string { return fmt.Sprintf("10.20.%d.1", i) }
func manyChild(i int) string  { return fmt.Sprintf("c%03d", i) }
func manyNet(i int) string    { return fmt.Sprintf("10.20.%d.0/24", i) }

func testManyTunnels(t *testing.T, n int, initiator string) {
	set := proposalSets[1]
	gw := testutil.NewNetNS(t, "iop-gw")
	partner := testutil.NewNetNS(t, "iop-partner")
	testutil.Veth(t, gw, gwWAN, gwAddr+"/24", partner, partnerWAN, partnerAddr+"/24")
	// kernel-libipsec installs a CHILD_SA only with a local address inside its traffic selector.
	testutil.Veth(t, partner, "p-int", "", partner, "p-int-end", "")
	for i := 1; i <= n; i++ {
		partner.AddAddr(t, "p-int", manyRemote(i)+"/24")
		gw.AddAddr(t, "lo", manyLocal(i)+"/32")
	}

	// strongSwan: child c001 is the harness's own, the others are added beside it.
	start := "none"
	if initiator == byStrongSwan {
		start = "start"
	}
	var extra strings.Builder
	extra.WriteString("children {\n")
	for i := 2; i <= n; i++ {
		fmt.Fprintf(&extra, "%s {\nmode = tunnel\nlocal_ts = %s\nremote_ts = %s/32\nesp_proposals = %s\nstart_action = %s\n}\n",
			manyChild(i), manyNet(i), manyLocal(i), set.esp, start)
	}
	extra.WriteString("}\n")

	gwStart := "always"
	if initiator == byStrongSwan {
		gwStart = "manual"
	}
	c := espgwtest.Connection{Name: connName, Local: gwAddr, Remote: partnerAddr, PSK: labPSK, IKEProposal: set.ike}
	for i := 1; i <= n; i++ {
		c.Tunnels = append(c.Tunnels, espgwtest.Tunnel{Name: manyChild(i), LocalSubnet: manyLocal(i) + "/32",
			RemoteSubnet: manyNet(i), ESPProposal: set.esp, Start: gwStart})
	}
	g := espgwtest.Start(t, gw, espgwtest.Config{Datapath: "auto", Connections: []espgwtest.Connection{c}})
	sw := strongswan.Start(t, partner, strongswan.Config{
		Name: manyChild(1), LocalAddr: partnerAddr, RemoteAddr: gwAddr, PSK: labPSK,
		IKEProposals: set.ike, ESPProposals: set.esp, LocalTS: manyNet(1), RemoteTS: manyLocal(1) + "/32",
		StartAction: start, ExtraConn: extra.String(), LogLevel: 1,
	})
	begin := time.Now()

	// All n children INSTALLED at strongSwan, under one IKE SA.
	timeout := negotiationTimeout + time.Duration(n)*200*time.Millisecond
	var installed int
	err := testutil.Poll(timeout, func() (bool, error) {
		sas, err := sw.ListSAs()
		if err != nil {
			return false, err
		}
		installed = 0
		names := map[string]bool{}
		for _, s := range sas {
			for _, ch := range s.Children {
				if s.State == "ESTABLISHED" && ch.State == "INSTALLED" && !names[ch.Name] {
					names[ch.Name] = true
					installed++
				}
			}
		}
		if installed < n {
			return false, fmt.Errorf("%d of %d CHILD_SAs INSTALLED at strongSwan", installed, n)
		}
		return true, nil
	})
	took := time.Since(begin)
	if err != nil {
		t.Fatalf("after %v: %v; charon says %d times %q", took.Round(time.Millisecond), err,
			strings.Count(sw.Log(), "decryption failed?"), "decryption failed?")
	}
	t.Logf("%d of %d CHILD_SAs INSTALLED at strongSwan %v after charon started", installed, n, took.Round(time.Millisecond))
	if got := strings.Count(sw.Log(), "decryption failed?"); got != 0 {
		t.Errorf("charon failed to decrypt %d messages", got)
	}

	// espgw shows every tunnel up; a sample carries traffic both ways.
	for i := 1; i <= n; i++ {
		g.WaitTunnelUp(t, connName, manyChild(i), negotiationTimeout)
	}
	for _, i := range []int{1, (n + 1) / 2, n} {
		if err := testutil.Ping(gw, manyLocal(i), manyRemote(i), 2); err != nil {
			t.Errorf("tunnel %s: %v", manyChild(i), err)
		}
	}
	sas, err := sw.ListSAs()
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 1 {
		t.Errorf("strongSwan has %d IKE_SAs, want 1", len(sas))
	}
	g.Stop(t)
}
