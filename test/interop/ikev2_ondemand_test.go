package interop

import (
	"fmt"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
)

// TestIKEv2OnDemand: an IKEv2 connection (ike.version: 2) with two tunnels that start on
// demand and no SA at first. A ping into the first tunnel reaches the eBPF classifier, whose
// acquire makes espgw initiate IKE_SA_INIT and IKE_AUTH with that tunnel's child SA; a ping
// into the second tunnel later adds its child SA by CREATE_CHILD_SA (with PFS, which only
// that exchange carries) under the same IKE SA. strongSwan lists the IKEv2 SA ESTABLISHED
// with both CHILD_SAs INSTALLED and counts the pings that followed.
func TestIKEv2OnDemand(t *testing.T) {
	t.Parallel()
	set := v2Sets[0]
	l := newLab(t)
	sw, g := startV2Children(t, l, set, 2, "on-demand", "", espgwtest.Config{Datapath: "auto", Metrics: metricsAddr})
	if st := g.MustStatus(t); !st.EBPF.Loaded || len(st.IKESAs) != 0 || len(st.IPsecSAs) != 0 {
		t.Fatalf("espgw before traffic: eBPF loaded %v (%s), %d IKE SAs, %d IPsec SAs; want loaded, no SAs",
			st.EBPF.Loaded, st.EBPF.Reason, len(st.IKESAs), len(st.IPsecSAs))
	}

	// The first packet of each tunnel asks for it and may be lost while it is negotiated.
	_ = testutil.Ping(l.gw, serviceAddr, childHost(0), 1)
	first := waitChildren(t, sw, 1, negotiationTimeout)
	if first.Version != 2 || first.Initiator || first.Proposal() != set.swanIKE {
		t.Errorf("swanctl IKE_SA: version %d, initiator %v, proposal %s; want 2, false (espgw initiated), %s",
			first.Version, first.Initiator, first.Proposal(), set.swanIKE)
	}
	_ = testutil.Ping(l.gw, serviceAddr, childHost(1), 1)
	both := waitChildren(t, sw, 2, negotiationTimeout)
	if both.UniqueID != first.UniqueID || both.InitiatorSPI != first.InitiatorSPI {
		t.Errorf("strongSwan's IKE_SA #%d %016x became #%d %016x: want the second child under the first IKE SA",
			first.UniqueID, first.InitiatorSPI, both.UniqueID, both.InitiatorSPI)
	}
	for i := range 2 {
		if err := testutil.Ping(l.gw, serviceAddr, childHost(i), 3); err != nil {
			t.Errorf("tunnel t%d: %v", i, err)
		}
	}

	after := waitChildren(t, sw, 2, negotiationTimeout)
	for _, ch := range after.Children {
		t.Logf("strongSwan CHILD_SA %s %s %08x/%08x %s %v <-> %v, in %d out %d packets", ch.Name, ch.State, ch.SPIIn, ch.SPIOut,
			ch.Proposal(), ch.LocalTS, ch.RemoteTS, ch.PacketsIn, ch.PacketsOut)
		if ch.PacketsIn < 3 || ch.PacketsOut < 3 {
			t.Errorf("strongSwan's CHILD_SA %s counted %d packets in, %d out; want at least 3 each way", ch.Name, ch.PacketsIn, ch.PacketsOut)
		}
	}
	// The first tunnel's child SA came with IKE_AUTH, which has no KE (no PFS group); the
	// second's by CREATE_CHILD_SA with the proposal's group.
	want := map[string]string{"s2s": set.swanChild, "s2s-1": set.swanChild + "/MODP_2048"}
	for _, ch := range after.Children {
		if ch.Proposal() != want[ch.Name] {
			t.Errorf("strongSwan CHILD_SA %s: proposal %s, want %s", ch.Name, ch.Proposal(), want[ch.Name])
		}
	}

	s := scrape(t, l.gw)
	for i := range 2 {
		s.require(t, fmt.Sprintf(`espgw_policy_ondemand_events_total{connection="%s",tunnel="t%d"}`, connName, i), atLeast(1))
	}
	g.Stop(t)
}
