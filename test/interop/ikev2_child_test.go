package interop

import (
	"fmt"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// v2Children is how many tunnels TestIKEv2Children negotiates under one IKE SA.
const v2Children = 8

// childSubnet is the partner's side of tunnel i: 10.20.0.16i/28, in which the partner has
// the address childHost(i) (kernel-libipsec installs a CHILD_SA only with a local address in
// its traffic selector).
func childSubnet(i int) string { return fmt.Sprintf("10.20.0.%d/28", 16*i) }
func childHost(i int) string   { return fmt.Sprintf("10.20.0.%d", 16*i+1) }

// startV2Children starts both sides with n tunnels of set, the ESP proposal with PFS, espgw's
// tunnels starting by start and with lifetime (espgw rekeys at 85-90 % of it); cfg is
// espgw's configuration without its connections; tweak, if given, changes espgw's connection.
func startV2Children(t *testing.T, l *lab, set proposalSet, n int, start, lifetime string, cfg espgwtest.Config,
	tweak ...func(*espgwtest.Connection)) (*strongswan.Charon, *espgwtest.Gateway) {
	t.Helper()
	swc := strongswan.Config{Version: 2, LocalAddr: partnerAddr, RemoteAddr: gwAddr, PSK: labPSK,
		IKEProposals: set.ike, ESPProposals: set.esp, LocalTS: childSubnet(0), RemoteTS: localSubnet}
	c := gwConnV2(set, start)
	c.Tunnels = nil
	for i := range n {
		if i > 0 {
			l.partner.AddAddr(t, "p-int", childHost(i)+"/28")
			swc.Children = append(swc.Children, strongswan.Child{Name: fmt.Sprintf("s2s-%d", i), LocalTS: childSubnet(i), RemoteTS: localSubnet})
		}
		c.Tunnels = append(c.Tunnels, espgwtest.Tunnel{Name: fmt.Sprintf("t%d", i), LocalSubnet: localSubnet,
			RemoteSubnet: childSubnet(i), ESPProposal: set.esp, Start: start, Lifetime: lifetime})
	}
	sw := strongswan.Start(t, l.partner, swc)
	for _, f := range tweak {
		f(&c)
	}
	cfg.Connections = []espgwtest.Connection{c}
	return sw, espgwtest.Start(t, l.gw, cfg)
}

// waitChildren waits until charon has one ESTABLISHED IKE_SA with n INSTALLED CHILD_SAs.
func waitChildren(t *testing.T, sw *strongswan.Charon, n int, timeout time.Duration) strongswan.IKESA {
	t.Helper()
	return waitIKESA(t, sw, timeout, func(s strongswan.IKESA) error {
		installed := 0
		for _, ch := range s.Children {
			if ch.State == "INSTALLED" {
				installed++
			}
		}
		if installed != n {
			return fmt.Errorf("%d of %d CHILD_SAs INSTALLED", installed, len(s.Children))
		}
		return nil
	})
}

// waitIKESA waits until charon has exactly one IKE_SA, ESTABLISHED, that ok accepts.
func waitIKESA(t *testing.T, sw *strongswan.Charon, timeout time.Duration, ok func(strongswan.IKESA) error) strongswan.IKESA {
	t.Helper()
	var ike strongswan.IKESA
	err := testutil.Poll(timeout, func() (bool, error) {
		sas, err := sw.ListSAs()
		if err != nil {
			return false, err
		}
		if len(sas) != 1 || sas[0].State != "ESTABLISHED" {
			return false, fmt.Errorf("%d IKE_SAs (%+v), want 1 ESTABLISHED", len(sas), sas)
		}
		ike = sas[0]
		err = ok(ike)
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("strongSwan: %v", err)
	}
	return ike
}

// pingChildren pings the partner's address in every tunnel from espgw's service address.
func pingChildren(t *testing.T, l *lab) {
	t.Helper()
	for i := range v2Children {
		if err := testutil.Ping(l.gw, serviceAddr, childHost(i), 2); err != nil {
			t.Errorf("tunnel t%d: %v", i, err)
		}
	}
}

// TestIKEv2Children: 8 tunnels under one IKE SA, the first in IKE_AUTH and the others by
// CREATE_CHILD_SA with PFS, in both roles: espgw brings its connection up, or strongSwan
// initiates its 8 CHILD_SAs one after the other. The partner lists one IKE_SA with 8
// INSTALLED CHILD_SAs and every tunnel carries a ping.
func TestIKEv2Children(t *testing.T) {
	inBothRoles(t, func(t *testing.T, initiator string) {
		set := v2Sets[0]
		l := newLab(t)
		sw, g := startV2Children(t, l, set, v2Children, "manual", "", espgwtest.Config{Datapath: "auto"})
		switch initiator {
		case byEspgwUp:
			if err := g.Up(connName, negotiationTimeout); err != nil {
				t.Fatal(err)
			}
		case byStrongSwan:
			for i := range v2Children {
				child := "s2s"
				if i > 0 {
					child = fmt.Sprintf("s2s-%d", i)
				}
				if err := sw.Initiate(child, negotiationTimeout); err != nil {
					t.Fatal(err)
				}
			}
		}
		ike := waitChildren(t, sw, v2Children, negotiationTimeout)
		if ike.Initiator != (initiator == byStrongSwan) {
			t.Errorf("strongSwan's IKE_SA: initiator %v, want %v", ike.Initiator, initiator == byStrongSwan)
		}
		pingChildren(t, l)
		for _, ch := range ike.Children {
			t.Logf("strongSwan CHILD_SA %s %s %08x/%08x %s %v <-> %v", ch.Name, ch.State, ch.SPIIn, ch.SPIOut, ch.Proposal(), ch.LocalTS, ch.RemoteTS)
			if pfs := ch.Name != "s2s"; pfs != (ch.DHGroup == "MODP_2048") {
				t.Errorf("strongSwan CHILD_SA %s: DH group %q; want MODP_2048 (PFS) by CREATE_CHILD_SA: %v", ch.Name, ch.DHGroup, pfs)
			}
		}
	})
}

// TestIKEv2Rekey: under pings at 5/s, spread over the 8 tunnels, espgw rekeys its child
// SAs (30 s lifetime) and then its IKE SA (40 s ike.lifetime), both with PFS; strongSwan
// then rekeys the IKE SA and a CHILD_SA (swanctl --rekey), and espgw rekeys its child SAs
// again under strongSwan's IKE SA. The partner ends with one IKE_SA, the tunnels INSTALLED
// under new SPIs, and at most 1 % of the pings are lost.
func TestIKEv2Rekey(t *testing.T) {
	t.Parallel()
	set := v2Sets[0]
	l := newLab(t)
	sw, g := startV2Children(t, l, set, v2Children, "manual", "30s", espgwtest.Config{Datapath: "auto"},
		func(c *espgwtest.Connection) { c.IKELifetime = "40s" })
	if err := g.Up(connName, negotiationTimeout); err != nil {
		t.Fatal(err)
	}
	before := waitChildren(t, sw, v2Children, negotiationTimeout)
	up := time.Now()
	var hosts []string
	for i := range v2Children {
		hosts = append(hosts, childHost(i))
	}
	pings := startPings(l.gw, serviceAddr, 200*time.Millisecond, hosts...)
	// espgw rekeys the child SAs at 25.5-27 s, the IKE SA at 34-36 s.
	byEspgw := waitIKESA(t, sw, 60*time.Second, func(s strongswan.IKESA) error {
		if s.InitiatorSPI == before.InitiatorSPI || s.Initiator {
			return fmt.Errorf("IKE_SA %016x (strongSwan initiator %v), want a new one espgw initiated", s.InitiatorSPI, s.Initiator)
		}
		return nil
	})
	if out, err := sw.Swanctl("--rekey", "--ike", "s2s"); err != nil {
		t.Fatalf("swanctl --rekey --ike: %v\n%s", err, out)
	}
	time.Sleep(2 * time.Second)
	if out, err := sw.Swanctl("--rekey", "--child", "s2s"); err != nil {
		t.Fatalf("swanctl --rekey --child: %v\n%s", err, out)
	}
	time.Sleep(time.Until(up.Add(62 * time.Second))) // espgw's second child rekeys: 51-54 s
	after := waitChildren(t, sw, v2Children, negotiationTimeout)
	sent, lost := pings.Stop()
	if after.InitiatorSPI == byEspgw.InitiatorSPI || !after.Initiator {
		t.Errorf("IKE_SA %016x (strongSwan initiator %v): want strongSwan's rekey of espgw's %016x", after.InitiatorSPI, after.Initiator, byEspgw.InitiatorSPI)
	}
	old := map[uint32]bool{}
	for _, ch := range before.Children {
		old[ch.SPIIn] = true
	}
	for _, ch := range after.Children {
		if old[ch.SPIIn] || ch.DHGroup != "MODP_2048" {
			t.Errorf("CHILD_SA %s: SPI %08x, DH group %q after 62 s of a 30 s lifetime; want a new SPI, rekeyed with MODP_2048 (PFS)", ch.Name, ch.SPIIn, ch.DHGroup)
		}
	}
	pingChildren(t, l)
	t.Logf("IKE_SA %016x -> %016x (espgw) -> %016x (strongSwan); %d pings at 5/s over %d tunnels, %d lost",
		before.InitiatorSPI, byEspgw.InitiatorSPI, after.InitiatorSPI, sent, v2Children, lost)
	if sent == 0 || lost*100 > sent {
		t.Errorf("%d of %d pings lost across the rekeys, want at most 1 %%", lost, sent)
	}
}

// TestIKEv2PFSRefused: espgw's tunnel asks for PFS (aes256gcm16-modp2048), strongSwan's
// esp_proposals have no DH group. The first CHILD_SA comes with IKE_AUTH, which carries no
// KE for either side; strongSwan's rekey of it (CREATE_CHILD_SA without KE) is refused with
// NO_PROPOSAL_CHOSEN, strongSwan keeps the CHILD_SA it had, and espgw's doctor names both
// sides' proposals in swanctl syntax.
func TestIKEv2PFSRefused(t *testing.T) {
	t.Parallel()
	set := v2Sets[0]
	l := newLab(t)
	sw, g := startV2(t, l, set, labPSK, "manual", func(s *strongswan.Config, _ *espgwtest.Connection) { s.ESPProposals = "aes256gcm16" })
	_, before, _, _ := negotiate(t, g, sw, byStrongSwan)
	if out, err := sw.Swanctl("--rekey", "--child", "s2s"); err != nil {
		t.Fatalf("swanctl --rekey --child: %v\n%s", err, out)
	}
	sw.WaitLog(t, "received NO_PROPOSAL_CHOSEN notify", negotiationTimeout)
	_, after := sw.WaitInstalled(t, "s2s", negotiationTimeout)
	if after.SPIIn != before.SPIIn || after.SPIOut != before.SPIOut {
		t.Errorf("strongSwan's CHILD_SA %08x/%08x became %08x/%08x: want the refused rekey to leave it", before.SPIIn, before.SPIOut, after.SPIIn, after.SPIOut)
	}
	r := gwRun(t, g, "doctor", "-c", g.ConfigPath())
	requireLines(t, "espgw doctor", r.Stdout,
		`^WARN +negotiation +megatelecom: CREATE_CHILD_SA of api without the PFS our ESP proposals ask for \(peer sent no KE payload\): `+
			`no proposal chosen: we accept aes256gcm16-modp2048, peer offered esp:aes256gcm16 .* -> fix: add one of the partner's proposals \(aes256gcm16\) `+
			`to connections\.megatelecom\.tunnels\.api\.proposals, or ask the partner to offer aes256gcm16-modp2048$`,
		`^OK +tunnel +megatelecom/api: up, esp aes256gcm16, `)
}

// TestIKEv2PFSRetry: espgw's tunnels offer ecp256 before modp2048 for PFS, strongSwan takes
// only modp2048. The CREATE_CHILD_SA of the second tunnel, sent with a KE of ecp256, is
// answered INVALID_KE_PAYLOAD; espgw retries with modp2048 and strongSwan installs the
// CHILD_SA with that group, which then carries pings.
func TestIKEv2PFSRetry(t *testing.T) {
	t.Parallel()
	set := v2Sets[0]
	l := newLab(t)
	sw, g := startV2Children(t, l, set, 2, "manual", "", espgwtest.Config{Datapath: "auto"}, func(c *espgwtest.Connection) {
		for i := range c.Tunnels {
			c.Tunnels[i].ESPProposal = "aes256gcm16-ecp256, " + set.esp
		}
	})
	if err := g.Up(connName, negotiationTimeout); err != nil {
		t.Fatal(err)
	}
	ike := waitChildren(t, sw, 2, negotiationTimeout)
	for _, ch := range ike.Children {
		if want := map[string]string{"s2s": set.swanChild, "s2s-1": set.swanChild + "/MODP_2048"}[ch.Name]; ch.Proposal() != want {
			t.Errorf("strongSwan CHILD_SA %s: proposal %s, want %s", ch.Name, ch.Proposal(), want)
		}
	}
	if err := testutil.Ping(l.gw, serviceAddr, childHost(1), 3); err != nil {
		t.Error(err)
	}
	// The peer's word for the INVALID_KE_PAYLOAD it sent.
	if want := "DH group ECP_256 unacceptable, requesting MODP_2048"; !sw.LogContains(want) {
		t.Errorf("charon log lacks %q: the first KE was not refused, so the retry went untested", want)
	}
}

// pinger sends one echo request every interval, to each of its destinations in turn
// (waiting at most a second for each reply), until Stop, counting the lost ones.
type pinger struct {
	stop       chan struct{}
	done       chan struct{}
	sent, lost int
}

func startPings(ns *testutil.NetNS, src string, every time.Duration, dsts ...string) *pinger {
	p := &pinger{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			dst := dsts[p.sent%len(dsts)]
			p.sent++
			if testutil.Ping(ns, src, dst, 1) != nil {
				p.lost++
			}
		}
	}()
	return p
}

// Stop ends the pings and returns how many were sent and lost.
func (p *pinger) Stop() (sent, lost int) {
	close(p.stop)
	<-p.done
	return p.sent, p.lost
}
