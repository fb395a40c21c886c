package interop

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// v2Sets are the IKEv2 algorithm sets of the acceptance criteria, with what swanctl prints.
var v2Sets = []proposalSet{
	{name: "aes256-sha256-modp2048", ike: "aes256-sha256-modp2048", esp: "aes256gcm16-modp2048",
		swanIKE: "AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048", swanChild: "AES_GCM_16_256"},
	{name: "aes128gcm16-prfsha256-ecp256", ike: "aes128gcm16-prfsha256-ecp256", esp: "aes128gcm16-ecp256",
		swanIKE: "AES_GCM_16_128/PRF_HMAC_SHA2_256/ECP_256", swanChild: "AES_GCM_16_128"},
}

// gwConnV2 is gwConn speaking IKEv2 (ike.version: 2) with set's proposals.
func gwConnV2(set proposalSet, start string) espgwtest.Connection {
	c := gwConn(set.ike, set.esp, start)
	c.IKEVersion = 2
	return c
}

// startV2 starts the strongSwan partner speaking IKEv2 and espgw with set's proposals;
// tweak, if given, changes both configurations first.
func startV2(t *testing.T, l *lab, set proposalSet, psk, start string, tweak ...func(*strongswan.Config, *espgwtest.Connection)) (*strongswan.Charon, *espgwtest.Gateway) {
	t.Helper()
	swc := strongswan.Config{Version: 2,
		LocalAddr: partnerAddr, RemoteAddr: gwAddr, PSK: labPSK,
		IKEProposals: set.ike, ESPProposals: set.esp, LocalTS: remoteSubnet, RemoteTS: localSubnet,
	}
	c := gwConnV2(set, start)
	c.PSK = psk
	for _, f := range tweak {
		f(&swc, &c)
	}
	sw := strongswan.Start(t, l.partner, swc)
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Datapath: "auto", Connections: []espgwtest.Connection{c}})
	return sw, g
}

// TestIKEv2StrongSwan: espgw negotiates IKEv2 (IKE_SA_INIT, IKE_AUTH with the first CHILD_SA)
// with strongSwan in both roles: the partner lists the IKE_SA ESTABLISHED (version 2) and the
// CHILD_SA INSTALLED with the SPIs espgw has, and a ping passes both ways.
func TestIKEv2StrongSwan(t *testing.T) {
	for _, set := range v2Sets {
		for _, initiator := range []string{byEspgwUp, byStrongSwan} {
			t.Run(set.name+"/"+initiator, func(t *testing.T) {
				t.Parallel()
				testIKEv2StrongSwan(t, set, initiator)
			})
		}
	}
}

func testIKEv2StrongSwan(t *testing.T, set proposalSet, initiator string) {
	l := newLab(t)
	capture := testutil.StartCapture(t, l.gw, gwWAN, "ip")
	sw, g := startV2(t, l, set, labPSK, "manual")
	swIKE, swChild, st, sa := negotiate(t, g, sw, initiator)
	espgwInitiated := initiator != byStrongSwan
	if ikes := st.ConnectionSAs(connName); len(ikes) != 1 || ikes[0].Mode != "ikev2" || ikes[0].State != "ESTABLISHED" || !ikes[0].NATT ||
		ikes[0].InitiatorCookie != fmt.Sprintf("%016x", swIKE.InitiatorSPI) || ikes[0].ResponderCookie != fmt.Sprintf("%016x", swIKE.ResponderSPI) {
		t.Errorf("espgw status IKE SAs %+v: want one ikev2 ESTABLISHED with NAT-T and strongSwan's SPIs %016x/%016x", ikes, swIKE.InitiatorSPI, swIKE.ResponderSPI)
	}
	if swIKE.Version != 2 || swIKE.Initiator == espgwInitiated || swIKE.Proposal() != set.swanIKE || swIKE.RemotePort != 4500 {
		t.Errorf("swanctl IKE_SA: version %d, initiator %v, proposal %s, remote port %d; want 2, %v, %s, 4500 (NAT-T forced by kernel-libipsec)",
			swIKE.Version, swIKE.Initiator, swIKE.Proposal(), swIKE.RemotePort, !espgwInitiated, set.swanIKE)
	}
	if len(swIKE.Children) != 1 || swChild.Mode != "TUNNEL" || !swChild.Encap || !strings.HasPrefix(swChild.Proposal(), set.swanChild) {
		t.Errorf("swanctl: %d CHILD_SAs, %s encap %v %s; want 1 TUNNEL, encapsulated, %s", len(swIKE.Children), swChild.Mode, swChild.Encap, swChild.Proposal(), set.swanChild)
	}
	if sa.SPIIn != fmt.Sprintf("%08x", swChild.SPIOut) || sa.SPIOut != fmt.Sprintf("%08x", swChild.SPIIn) {
		t.Errorf("SPIs: espgw in/out %s/%s, strongSwan in/out %08x/%08x; want crossed equal", sa.SPIIn, sa.SPIOut, swChild.SPIIn, swChild.SPIOut)
	}
	if err := testutil.Ping(l.gw, serviceAddr, hostAddr, 3); err != nil {
		t.Error(err)
	}
	if err := testutil.Ping(l.host, hostAddr, serviceAddr, 3); err != nil {
		t.Error(err)
	}
	pcap := capture.Stop()
	requireIKEv2Decrypts(t, pcap, g.Keys(t), sa)
	swIKE, swChild = sw.WaitInstalled(t, "s2s", negotiationTimeout)
	if swChild.PacketsIn < 6 || swChild.PacketsOut < 6 {
		t.Errorf("strongSwan's CHILD_SA counted %d packets in, %d out; want at least 6 each (3 pings each way)", swChild.PacketsIn, swChild.PacketsOut)
	}
	t.Logf("strongSwan: IKE_SA %016x/%016x %s %s, CHILD_SA %s %08x/%08x %s, in %d out %d packets",
		swIKE.InitiatorSPI, swIKE.ResponderSPI, swIKE.State, swIKE.Proposal(), swChild.State, swChild.SPIIn, swChild.SPIOut, swChild.Proposal(),
		swChild.PacketsIn, swChild.PacketsOut)

	// espgw's shutdown deletes the IKE SA at the partner too (INFORMATIONAL Delete).
	g.Stop(t)
	err := testutil.Poll(10*time.Second, func() (bool, error) {
		sas, err := sw.ListSAs()
		if err == nil && len(sas) > 0 {
			err = fmt.Errorf("strongSwan still has %d IKE_SAs (%s)", len(sas), sas[0].State)
		}
		return err == nil, err
	})
	if err != nil {
		t.Errorf("after espgw stopped: %v", err)
	}
}

// TestIKEv2WrongPSK: with different pre-shared keys IKE_AUTH fails with AUTHENTICATION_FAILED,
// reported on both sides, whoever initiates: the responder that cannot verify the AUTH
// logs so and answers AUTHENTICATION_FAILED, which the initiator reports.
func TestIKEv2WrongPSK(t *testing.T) {
	set := v2Sets[0]
	for _, initiator := range []string{byEspgwUp, byStrongSwan} {
		t.Run(initiator, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			sw, g := startV2(t, l, set, "not-the-partners-key", "manual")
			begin := time.Now()
			var upErr error
			switch initiator {
			case byEspgwUp:
				upErr = g.Up(connName+"/"+tunnelName, pskFailTimeout)
				if upErr == nil {
					t.Fatal("espgw up succeeded with a wrong pre-shared key")
				}
				// charon, the responder, cannot verify our AUTH and says so.
				sw.WaitLog(t, "tried 1 shared key for", pskFailTimeout)
				sw.WaitLog(t, "generating IKE_AUTH response 1 [ N(AUTH_FAILED) ]", pskFailTimeout)
			case byStrongSwan:
				if err := sw.Initiate("s2s", pskFailTimeout); err == nil {
					t.Fatal("swanctl --initiate succeeded with a wrong pre-shared key")
				}
				sw.WaitLog(t, "received AUTHENTICATION_FAILED notify error", pskFailTimeout)
			}
			requirePSKMismatch(t, g, connName, begin, pskFailTimeout)
			why := map[string]string{byEspgwUp: "the peer answered IKE_AUTH with AUTHENTICATION_FAILED",
				byStrongSwan: "the peer's AUTH payload does not verify with our pre-shared key (AUTHENTICATION_FAILED)"}[initiator]
			if ts, _ := g.MustStatus(t).Tunnel(connName, tunnelName); !strings.Contains(ts.LastError, why) {
				t.Errorf("espgw tunnel error %q, want it to say %q", ts.LastError, why)
			}
			requireNotEstablished(t, sw)
			t.Logf("espgw up: %v", upErr)
		})
	}
}

// requireIKEv2Decrypts checks with tshark and espgw's saved keys that the IKE_AUTH exchange
// decrypts (its AUTH payloads show) and that the ESP of both directions of sa, strongSwan's
// to sa's inbound SPI and espgw's to its outbound one, decrypts with a good ICV.
func requireIKEv2Decrypts(t *testing.T, pcap string, keys testutil.Keys, sa espgwtest.IPsecSA) {
	t.Helper()
	if len(keys.IKEv2) != 1 {
		t.Fatalf("espgw saved %d ikev2_decryption_table entries, want 1", len(keys.IKEv2))
	}
	authMethods := func(k testutil.Keys) (n int) {
		for _, r := range testutil.TShark(t, pcap, k, "isakmp.exchangetype == 35", "isakmp.auth.method") {
			if r.First("isakmp.auth.method") != "" {
				n++
			}
		}
		return n
	}
	if n := authMethods(keys); n != 2 {
		t.Errorf("tshark with espgw's ikev2_decryption_table shows %d AUTH payloads, want 2 (IKE_AUTH request and response decrypted)", n)
	}
	if n := authMethods(testutil.Keys{}); n != 0 {
		t.Errorf("tshark without keys shows %d AUTH payloads, want 0 (they are encrypted)", n)
	}
	spi := map[string]string{partnerAddr: sa.SPIIn, gwAddr: sa.SPIOut}
	from := map[string]int{}
	for _, r := range testutil.ESPRows(t, pcap, keys) {
		src := r.OuterSrc.String()
		from[src]++
		if !r.ICVGood || !r.Decrypted || fmt.Sprintf("%08x", r.SPI) != spi[src] {
			t.Errorf("ESP frame %d from %s (SPI %08x): ICV good %v, decrypted %v; want both, SPI %s", r.Frame, src, r.SPI, r.ICVGood, r.Decrypted, spi[src])
		}
	}
	if from[partnerAddr] < 6 || from[gwAddr] < 6 {
		t.Errorf("ESP packets in the capture: %d from strongSwan, %d from espgw; want at least 6 each", from[partnerAddr], from[gwAddr])
	}
	t.Logf("tshark: IKE_AUTH decrypted with espgw's keys; ESP decrypted with ICV good: %d packets from strongSwan, %d from espgw", from[partnerAddr], from[gwAddr])
}

// TestIKEv2Liveness: espgw checks liveness every 2 s and strongSwan answers its empty
// INFORMATIONAL requests, so the SAs stay up; once the partner is killed, espgw deletes the
// IKE SA and its child SA within dpd_timeout. strongSwan's own checks are rarer (30 s): each
// side probes only after hearing nothing for its delay (RFC 7296 2.4), so with equal delays
// whichever timer runs first keeps the other quiet and the direction checked would be luck.
func TestIKEv2Liveness(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	sw, g := startV2(t, l, v2Sets[1], labPSK, "manual", func(s *strongswan.Config, c *espgwtest.Connection) {
		s.ExtraConn = "dpd_delay = 30s"
		c.DPDDelay, c.DPDTimeout = "2s", "6s"
	})
	swIKE, _, _, _ := negotiate(t, g, sw, byEspgwUp)
	time.Sleep(10 * time.Second) // traffic-free: both sides probe
	after, _ := sw.WaitInstalled(t, "s2s", negotiationTimeout)
	if after.UniqueID != swIKE.UniqueID {
		t.Errorf("strongSwan's IKE_SA #%d replaced by #%d during liveness checks", swIKE.UniqueID, after.UniqueID)
	}
	if !sw.LogContains("parsed INFORMATIONAL request") {
		t.Errorf("charon log lacks %q: espgw sent no liveness check", "parsed INFORMATIONAL request")
	}
	requireLines(t, "espgw doctor", gwRun(t, g, "doctor", "-c", g.ConfigPath()).Stdout,
		`^OK +liveness +megatelecom: every 2s, last message from the peer \S+ ago$`)
	// Gone without a Delete: espgw must notice by itself.
	if err := syscall.Kill(sw.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	gone := time.Now()
	err := testutil.Poll(20*time.Second, func() (bool, error) {
		st, err := g.Status()
		if err != nil {
			return false, err
		}
		if n := len(st.ConnectionSAs(connName)); n > 0 {
			return false, fmt.Errorf("espgw still has %d IKE SAs", n)
		}
		if n := len(st.TunnelSAs(connName, tunnelName)); n > 0 {
			return false, fmt.Errorf("espgw still has %d IPsec SAs", n)
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("after the partner stopped: %v", err)
	}
	took := time.Since(gone)
	t.Logf("espgw removed the SAs %v after the partner died (dpd_delay 2 s, dpd_timeout 6 s)", took.Round(100*time.Millisecond))
	if took < 4*time.Second {
		t.Errorf("SAs removed %v after the partner died: too early to be the liveness check's doing", took.Round(100*time.Millisecond))
	}
}

// TestIKEv2NATTForced: with nat_traversal: force espgw's NAT_DETECTION_SOURCE_IP hash is
// deliberately wrong (RFC 7296 2.23), in both roles: strongSwan concludes that espgw sits
// behind a NAT (swanctl nat-remote), which it does not with auto (there charon only fakes
// its own NAT, kernel-libipsec); the IKE SA floats to 4500, the CHILD_SA is UDP-encapsulated
// and a ping passes both ways.
func TestIKEv2NATTForced(t *testing.T) {
	for _, natt := range []string{"force", "auto"} {
		for _, initiator := range []string{byEspgwUp, byStrongSwan} {
			t.Run(natt+"/"+initiator, func(t *testing.T) {
				t.Parallel()
				l := newLab(t)
				sw, g := startV2(t, l, v2Sets[1], labPSK, "manual", func(_ *strongswan.Config, c *espgwtest.Connection) { c.NATTraversal = natt })
				swIKE, swChild, st, _ := negotiate(t, g, sw, initiator)
				remote := swIKE.Attrs["nat-remote"] == "yes"
				if remote != (natt == "force") || swIKE.RemotePort != 4500 || !swChild.Encap {
					t.Errorf("swanctl IKE_SA: nat-remote %q, remote port %d, CHILD_SA encapsulated %v; want nat-remote %v, 4500, true",
						swIKE.Attrs["nat-remote"], swIKE.RemotePort, swChild.Encap, natt == "force")
				}
				if ikes := st.ConnectionSAs(connName); len(ikes) != 1 || !ikes[0].NATT {
					t.Errorf("espgw status IKE SAs %+v: want one with NAT-T", ikes)
				}
				for _, p := range [][2]*testutil.NetNS{{l.gw, l.host}, {l.host, l.gw}} {
					src, dst := serviceAddr, hostAddr
					if p[0] == l.host {
						src, dst = dst, src
					}
					if err := testutil.Ping(p[0], src, dst, 2); err != nil {
						t.Error(err)
					}
				}
				t.Logf("swanctl: nat-local %q nat-remote %q nat-fake %q nat-any %q", swIKE.Attrs["nat-local"], swIKE.Attrs["nat-remote"],
					swIKE.Attrs["nat-fake"], swIKE.Attrs["nat-any"])
			})
		}
	}
}
