package interop

import (
	"fmt"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
)

// TestPartnerLate: espgw starts (start: always) while the partner is down; the partner comes
// up 20 s later. Phase 1 has given up by then (28 s of retransmissions at most), so espgw
// must try again by itself: the child SA is INSTALLED at strongSwan and traffic passes
// within 60 s of the partner's start.
func TestPartnerLate(t *testing.T) {
	set := proposalSets[1]
	l := newLab(t)
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Connections: []espgwtest.Connection{gwConn(set.ike, set.esp, "always")}})
	time.Sleep(20 * time.Second)
	started := time.Now()
	sw := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
	_, child := sw.WaitInstalled(t, "s2s", 60*time.Second)
	_, sa := g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
	if err := testutil.Ping(l.gw, serviceAddr, hostAddr, 3); err != nil {
		t.Error(err)
	}
	took := time.Since(started)
	t.Logf("partner up 20 s after espgw: child SA %08x/%08x INSTALLED at strongSwan and ping through %v after its start",
		child.SPIIn, child.SPIOut, took.Round(time.Millisecond))
	if took > 60*time.Second {
		t.Errorf("traffic passed %v after the partner started, want within 60 s", took.Round(time.Second))
	}
	if sa.SPIOut != fmt.Sprintf("%08x", child.SPIIn) {
		t.Errorf("espgw SPI out %s, strongSwan SPI in %08x", sa.SPIOut, child.SPIIn)
	}
	g.Stop(t)
}
