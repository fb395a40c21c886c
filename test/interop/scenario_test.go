package interop

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
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

// TestQM3DroppedOnce: the partner's firewall drops espgw's first QM3 (the only small quick-
// mode message espgw sends). strongSwan retransmits QM2; espgw, which has installed its side
// already, answers with the same QM3 (RFC 2409 5.5) and the child SA is INSTALLED at
// strongSwan too: no black hole.
func TestQM3DroppedOnce(t *testing.T) {
	testutil.RequireTool(t, "nft", "nftables")
	set := proposalSets[1]
	l := newLab(t)
	// IKE on 4500 (strongSwan forces NAT-T) is marker(4) + ISAKMP header, whose exchange
	// type is at byte 18: bit (8+4+18)*8 of the transport header. QM1 and QM2 carry a KE
	// (PFS, modp2048) and are far larger than 200 bytes; "quota until 150 bytes" matches
	// only the first such packet (about 110 bytes).
	const rules = `table inet qm3 {
	chain in {
		type filter hook input priority -10;
		udp dport 4500 @th,240,8 32 meta length < 200 quota until 150 bytes counter drop
	}
}
`
	applyNFT(t, l.partner, rules)
	sw := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Connections: []espgwtest.Connection{gwConn(set.ike, set.esp, "always")}})
	_, child := sw.WaitInstalled(t, "s2s", negotiationTimeout)
	_, sa := g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
	if sa.SPIOut != fmt.Sprintf("%08x", child.SPIIn) {
		t.Errorf("espgw SPI out %s, strongSwan SPI in %08x", sa.SPIOut, child.SPIIn)
	}
	if err := testutil.Ping(l.gw, serviceAddr, hostAddr, 3); err != nil {
		t.Error(err)
	}
	out := l.partner.Exec(t, "nft", "list", "table", "inet", "qm3")
	if !strings.Contains(out, "counter packets 1 ") {
		t.Errorf("the rule did not drop exactly one QM3:\n%s", out)
	}
	if !sw.LogContains("sending retransmit 1 of response message ID") {
		t.Errorf("charon did not retransmit QM2")
	}
	l.partner.Exec(t, "nft", "delete", "table", "inet", "qm3")
	g.Stop(t)
}

// TestOneSidedTunnel: the partner's firewall drops the ESP espgw sends (IKE passes), so
// espgw's pings go out and nothing comes back while strongSwan answers DPD. espgw must
// notice within a few DPD rounds and re-key the tunnel: strongSwan gets a new CHILD_SA
// (new SPIs) without anyone deleting the old one first. strongSwan itself never notices.
// While the fault lasts the new pair is one-sided too: status and /metrics say so until
// traffic flows both ways again.
func TestOneSidedTunnel(t *testing.T) {
	testutil.RequireTool(t, "nft", "nftables")
	set := proposalSets[1]
	l := newLab(t)
	sw := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
	c := gwConn(set.ike, set.esp, "always")
	c.DPDDelay = "2s"
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Metrics: metricsAddr, Connections: []espgwtest.Connection{c}})
	_, first := sw.WaitInstalled(t, "s2s", negotiationTimeout)
	g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
	if err := testutil.Ping(l.gw, serviceAddr, hostAddr, 2); err != nil {
		t.Fatalf("before the fault: %v", err)
	}
	oneSided := "espgw_tunnel_one_sided{" + fmt.Sprintf(`connection="%s",tunnel="%s"`, connName, tunnelName) + "}"
	scrape(t, l.gw).require(t, oneSided, eq(0))

	// ESP in UDP has a non-zero SPI where IKE on 4500 has the zero non-ESP marker.
	applyNFT(t, l.partner, "table inet oneway {\n\tchain in {\n\t\ttype filter hook input priority -10;\n"+
		"\t\tudp dport 4500 @th,64,32 != 0 counter drop\n\t}\n}\n")
	begin := time.Now()
	pinging := make(chan struct{})
	go func() {
		defer close(pinging)
		testutil.Ping(l.gw, serviceAddr, hostAddr, 12) // fails: that is the fault
	}()
	var rekeyed time.Duration
	err := testutil.Poll(30*time.Second, func() (bool, error) {
		sas, err := sw.ListSAs()
		if err != nil {
			return false, err
		}
		for _, s := range sas {
			for _, ch := range s.Children {
				if ch.State == "INSTALLED" && ch.SPIIn != first.SPIIn {
					rekeyed = time.Since(begin)
					return true, nil
				}
			}
		}
		return false, fmt.Errorf("strongSwan still has only CHILD_SA %08x/%08x", first.SPIIn, first.SPIOut)
	})
	<-pinging
	if err != nil {
		t.Fatalf("one-sided tunnel not re-keyed: %v", err)
	}
	t.Logf("one-sided tunnel re-keyed at strongSwan %v after the fault began (DPD every 2 s)", rekeyed.Round(100*time.Millisecond))
	if !strings.Contains(g.Log(), "one-sided tunnel: re-keying") {
		t.Errorf("espgw log does not say why it re-keyed")
	}
	// The new pair goes one-sided too; the 10-minute back-off keeps it, and says so.
	pinging = make(chan struct{})
	go func() {
		defer close(pinging)
		testutil.Ping(l.gw, serviceAddr, hostAddr, 12)
	}()
	err = testutil.Poll(30*time.Second, func() (bool, error) {
		ts, _ := g.MustStatus(t).Tunnel(connName, tunnelName)
		s := scrape(t, l.gw)
		if ts.OneSidedSince.IsZero() || s.value(t, oneSided) != 1 {
			return false, fmt.Errorf("status one-sided since %v, %s %v", ts.OneSidedSince, oneSided, s.value(t, oneSided))
		}
		return true, nil
	})
	<-pinging
	if err != nil {
		t.Errorf("the re-keyed pair, still one-sided, is not reported: %v", err)
	}
	l.partner.Exec(t, "nft", "delete", "table", "inet", "oneway")
	if err := testutil.Ping(l.gw, serviceAddr, hostAddr, 2); err != nil {
		t.Errorf("after the fault: %v", err)
	}
	err = testutil.Poll(20*time.Second, func() (bool, error) {
		testutil.Ping(l.gw, serviceAddr, hostAddr, 1)
		if v := scrape(t, l.gw).value(t, oneSided); v != 0 {
			return false, fmt.Errorf("%s %v", oneSided, v)
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("traffic both ways again, still reported one-sided: %v", err)
	}
	g.Stop(t)
}

// TestPartnerReboot: the partner's charon is killed -9 and started again with no state
// (LAB-NOTES: its ipsec0 must be gone first). espgw's R-U-THEREs go unanswered, DPD declares the
// peer dead after dpd_timeout and start: always negotiates anew: the new child SA is
// INSTALLED at the new charon and traffic passes within 2 × (dpd_delay + dpd_timeout).
// When the rebooted partner initiates itself, with INITIAL-CONTACT, espgw drops the dead
// SAs at once: traffic passes long before DPD could have noticed (dpd_timeout 60 s).
func TestPartnerReboot(t *testing.T) {
	t.Run("DPD", func(t *testing.T) { testPartnerReboot(t, false) })
	t.Run("partner initiates", func(t *testing.T) { testPartnerReboot(t, true) })
}

func testPartnerReboot(t *testing.T, partnerInitiates bool) {
	set := proposalSets[1]
	l := newLab(t)
	sw := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
	c := gwConn(set.ike, set.esp, "always")
	c.DPDDelay, c.DPDTimeout = "2s", "6s"
	within := 2 * (2 + 6) * time.Second
	if partnerInitiates {
		c.DPDTimeout, within = "60s", 10*time.Second
	}
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Connections: []espgwtest.Connection{c}})
	_, first := sw.WaitInstalled(t, "s2s", negotiationTimeout)
	g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
	// Traffic both ways shows espgw the partner installed the child SA: DPD need not stay
	// quiet for the quick mode's sake (ike/dpd.go).
	if err := testutil.Ping(l.gw, serviceAddr, hostAddr, 2); err != nil {
		t.Fatal(err)
	}

	if err := syscall.Kill(sw.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, func() (bool, error) { // reaped by the harness
		return errors.Is(syscall.Kill(sw.PID(), 0), syscall.ESRCH), nil
	})
	l.partner.Command("ip", "link", "delete", "ipsec0").Run() // a TUN goes with its process; if not, it must
	rebooted := time.Now()
	sw2 := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
	if partnerInitiates {
		if err := sw2.Initiate("s2s", negotiationTimeout); err != nil {
			t.Fatal(err)
		}
		if !sw2.LogContains("INITIAL_CONTACT") {
			t.Errorf("the rebooted charon sent no INITIAL-CONTACT")
		}
	}
	_, child := sw2.WaitInstalled(t, "s2s", within)
	if child.SPIIn == first.SPIIn {
		t.Errorf("the rebooted charon has the old SPI %08x", child.SPIIn)
	}
	err := testutil.Poll(within-time.Since(rebooted), func() (bool, error) {
		return testutil.Ping(l.gw, serviceAddr, hostAddr, 1) == nil, nil
	})
	took := time.Since(rebooted)
	if err != nil {
		t.Fatalf("no traffic %v after the partner rebooted: %v", took.Round(time.Second), err)
	}
	t.Logf("traffic back %v after the partner's reboot (DPD %s / %s, bound %v)", took.Round(100*time.Millisecond), c.DPDDelay, c.DPDTimeout, within)
	if ikes := g.MustStatus(t).ConnectionSAs(connName); partnerInitiates && (len(ikes) != 1 || ikes[0].Initiator) {
		t.Errorf("espgw IKE SAs after the partner's INITIAL-CONTACT: %+v; want only the partner's", ikes)
	}
	g.Stop(t)
}

// TestQM3LostForGood: the partner's firewall drops every QM3 espgw sends until strongSwan
// has given up on the quick mode (all its QM2 retransmissions answered into the void), with
// DPD off. espgw installed its side on QM2 and strongSwan never did: traffic would be
// black-holed until the SA's lifetime ends. Once traffic flows, packets out and none in on
// a child SA that never carried strongSwan's ESP make espgw re-key the tunnel: the new
// child SA is INSTALLED at strongSwan under espgw's SPI and pings pass, without DPD.
func TestQM3LostForGood(t *testing.T) {
	testutil.RequireTool(t, "nft", "nftables")
	t.Parallel()
	set := proposalSets[1]
	l := newLab(t)
	// As in TestQM3DroppedOnce: QM3 is espgw's only small quick-mode message.
	applyNFT(t, l.partner, "table inet qm3 {\n\tchain in {\n\t\ttype filter hook input priority -10;\n"+
		"\t\tudp dport 4500 @th,240,8 32 meta length < 200 counter drop\n\t}\n}\n")
	sw := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Connections: []espgwtest.Connection{gwConn(set.ike, set.esp, "manual")}})
	if err := g.Up(connName+"/"+tunnelName, negotiationTimeout); err != nil {
		t.Fatal(err)
	}
	_, lost := g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
	sw.WaitLog(t, "giving up after", 90*time.Second)
	if _, err := installedAtPeer(g, sw); err == nil {
		t.Fatalf("strongSwan installed CHILD_SA %s although every QM3 was dropped", lost.SPIOut)
	}
	l.partner.Exec(t, "nft", "delete", "table", "inet", "qm3")

	begin := time.Now()
	var child strongswan.ChildSA
	err := testutil.Poll(2*time.Minute, func() (bool, error) {
		pinged := testutil.Ping(l.gw, serviceAddr, hostAddr, 1)
		var err error
		if child, err = installedAtPeer(g, sw); err != nil {
			return false, err
		}
		return pinged == nil, pinged
	})
	if err != nil {
		t.Fatalf("no traffic %v after the fault ended: %v", time.Since(begin).Round(time.Second), err)
	}
	t.Logf("black-holed child SA %s/%s re-keyed: CHILD_SA %08x/%08x INSTALLED at strongSwan and traffic through %v after traffic began",
		lost.SPIIn, lost.SPIOut, child.SPIIn, child.SPIOut, time.Since(begin).Round(100*time.Millisecond))
	if _, sa := g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout); sa.SPIOut != fmt.Sprintf("%08x", child.SPIIn) {
		t.Errorf("espgw SPI out %s, strongSwan SPI in %08x", sa.SPIOut, child.SPIIn)
	}
	if !strings.Contains(g.Log(), "one-sided tunnel: re-keying") {
		t.Errorf("espgw log does not say why it re-keyed")
	}
	g.Stop(t)
}
