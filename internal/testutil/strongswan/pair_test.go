package strongswan

import (
	"bytes"
	"errors"
	"net/netip"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
)

// The lab topology of the shared strongSwan lab (strongswan-pair.sh), with random namespace
// names:
//
//	left: lo 10.10.1.1/32, l-wan 192.0.2.1/24 === r-wan 192.0.2.2/24 :right: r-int 10.20.0.1/24 === h-eth0 10.20.0.10/24 :rhost
type pair struct {
	left, right, rhost *testutil.NetNS
	l, r               *Charon
}

func newPair(t *testing.T, ike, esp string) *pair {
	p := &pair{
		left:  testutil.NewNetNS(t, "swleft"),
		right: testutil.NewNetNS(t, "swright"),
		rhost: testutil.NewNetNS(t, "swrhost"),
	}
	testutil.Veth(t, p.left, "l-wan", "192.0.2.1/24", p.right, "r-wan", "192.0.2.2/24")
	testutil.Veth(t, p.right, "r-int", "10.20.0.1/24", p.rhost, "h-eth0", "10.20.0.10/24")
	p.left.DisableTxOffload(t, "l-wan")
	p.right.DisableTxOffload(t, "r-wan")
	p.left.AddAddr(t, "lo", "10.10.1.1/32")
	p.rhost.AddRoute(t, "default", "10.20.0.1", "")
	p.right.Sysctl(t, "net.ipv4.ip_forward", "1")

	base := Config{PSK: "lab-preshared-key-0123456789", IKEProposals: ike, ESPProposals: esp}
	lc, rc := base, base
	lc.LocalAddr, lc.RemoteAddr, lc.LocalTS, lc.RemoteTS = "192.0.2.1", "192.0.2.2", "10.10.1.1/32", "10.20.0.0/24"
	rc.LocalAddr, rc.RemoteAddr, rc.LocalTS, rc.RemoteTS = "192.0.2.2", "192.0.2.1", "10.20.0.0/24", "10.10.1.1/32"
	p.l = Start(t, p.left, lc)
	p.r = Start(t, p.right, rc)
	return p
}

// created records what the subtests made, so the parent can check it is all gone.
type created struct {
	mu     sync.Mutex
	netns  []string
	charon []int
}

func (c *created) add(p *pair) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.netns = append(c.netns, p.left.Name(), p.right.Name(), p.rhost.Name())
	c.charon = append(c.charon, p.l.PID(), p.r.PID())
}

func TestCharonPair(t *testing.T) {
	tests := []struct {
		name, ike, esp string
		ikeProposal    string // IKESA.Proposal()
		childProposal  string // ChildSA.Proposal()
		encKey, intKey int    // ESP key lengths in bytes
		ka             int    // phase-1 encryption key length
	}{
		{"3des-sha1-modp1024", "3des-sha1-modp1024", "3des-sha1-modp1024",
			"3DES_CBC/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024", "3DES_CBC/HMAC_SHA1_96/MODP_1024", 24, 20, 24},
		{"aes256-sha256/aes256gcm16", "aes256-sha256-modp2048", "aes256gcm16-modp2048",
			"AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048", "AES_GCM_16_256/MODP_2048", 36, 0, 32},
		{"aes128-sha1/aes256-sha256", "aes128-sha1-modp2048", "aes256-sha256-modp2048",
			"AES_CBC_128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_2048", "AES_CBC_256/HMAC_SHA2_256_128/MODP_2048", 32, 32, 16},
	}
	var made created
	t.Run("group", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				p := newPair(t, tt.ike, tt.esp)
				made.add(p)
				capture := testutil.StartCapture(t, p.left, "l-wan", "ip")

				if err := p.l.Initiate("s2s", 15*time.Second); err != nil {
					t.Fatal(err)
				}
				lsa := oneChild(t, "left", p.l, true, tt.ikeProposal, tt.childProposal)
				rsa := oneChild(t, "right", p.r, false, tt.ikeProposal, tt.childProposal)
				lc, rc := lsa.Children[0], rsa.Children[0]
				if lc.SPIIn != rc.SPIOut || lc.SPIOut != rc.SPIIn {
					t.Errorf("SPIs: left in/out %08x/%08x, right in/out %08x/%08x; want crossed equal", lc.SPIIn, lc.SPIOut, rc.SPIIn, rc.SPIOut)
				}
				if lsa.InitiatorSPI != rsa.InitiatorSPI || lsa.ResponderSPI != rsa.ResponderSPI {
					t.Errorf("cookies: left %016x/%016x, right %016x/%016x", lsa.InitiatorSPI, lsa.ResponderSPI, rsa.InitiatorSPI, rsa.ResponderSPI)
				}

				if err := testutil.Ping(p.left, "10.10.1.1", "10.20.0.10", 3); err != nil {
					t.Fatal(err)
				}
				pcap := capture.Stop()

				lk := keysOf(t, p.l, lc, tt.encKey, tt.intKey, tt.ka)
				rk := keysOf(t, p.r, rc, tt.encKey, tt.intKey, tt.ka)
				sameKeys(t, lk, rk)
				if got := lk.IKE[0].ICookie; uint64From(got) != lsa.InitiatorSPI {
					t.Errorf("IKE key cookie %x, want initiator SPI %016x", got, lsa.InitiatorSPI)
				}

				checkESP(t, pcap, lk.TShark(), lc)
				checkESP(t, pcap, rk.TShark(), rc)
				checkQuickModeDecrypted(t, pcap, lk.TShark())
				checkOracleRejectsWrongKey(t, pcap, lk)

				got := testutil.Protocols(t, pcap)
				allowed := []string{"eth", "ethertype", "ip", "udp", "isakmp", "udpencap", "esp"}
				for _, proto := range got {
					if !slices.Contains(allowed, proto) {
						t.Errorf("protocol %q on the wire (all: %v), want only %v", proto, got, allowed)
					}
				}
				if !slices.Contains(got, "isakmp") || !slices.Contains(got, "esp") {
					t.Errorf("protocols %v, want isakmp and esp", got)
				}

				if err := p.l.Terminate("s2s"); err != nil {
					t.Error(err)
				}
				testutil.WaitFor(t, 5*time.Second, func() (bool, error) {
					sas, err := p.r.ListSAs()
					return len(sas) == 0, err
				})
			})
		}
	})
	if t.Failed() {
		return
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range made.netns {
		if bytes.Contains(out, []byte(ns)) {
			t.Errorf("netns %s still exists after the test", ns)
		}
	}
	for _, pid := range made.charon {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("charon pid %d still exists after the test (kill 0: %v)", pid, err)
		}
	}
}

// oneChild checks that c has exactly one ESTABLISHED IKEv1 SA with one INSTALLED ESP CHILD_SA.
func oneChild(t *testing.T, side string, c *Charon, initiator bool, ikeProp, childProp string) IKESA {
	t.Helper()
	sas, err := c.ListSAs()
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 1 || len(sas[0].Children) != 1 {
		t.Fatalf("%s: %d IKE_SAs (%+v), want 1 with 1 CHILD_SA", side, len(sas), sas)
	}
	s, ch := sas[0], sas[0].Children[0]
	if s.Version != 1 || s.State != "ESTABLISHED" || s.Initiator != initiator || s.Proposal() != ikeProp {
		t.Errorf("%s IKE_SA: version %d state %s initiator %v proposal %s; want 1 ESTABLISHED %v %s",
			side, s.Version, s.State, s.Initiator, s.Proposal(), initiator, ikeProp)
	}
	if s.LocalPort != 4500 || s.RemotePort != 4500 {
		t.Errorf("%s IKE_SA ports %d/%d, want 4500/4500 (kernel-libipsec forces NAT-T)", side, s.LocalPort, s.RemotePort)
	}
	if ch.Name != "s2s" || ch.State != "INSTALLED" || ch.Mode != "TUNNEL" || ch.Protocol != "ESP" || !ch.Encap || ch.Proposal() != childProp {
		t.Errorf("%s CHILD_SA %+v, want s2s INSTALLED TUNNEL ESP encap %s", side, ch, childProp)
	}
	if ch.SPIIn == 0 || ch.SPIOut == 0 {
		t.Errorf("%s CHILD_SA SPIs %08x/%08x, want non-zero", side, ch.SPIIn, ch.SPIOut)
	}
	return s
}

// keysOf parses c's key log and checks it holds exactly the two SAs of child with sane keys.
func keysOf(t *testing.T, c *Charon, child ChildSA, encLen, intLen, kaLen int) KeyLog {
	t.Helper()
	k, err := c.Keys()
	if err != nil {
		t.Fatal(err)
	}
	if len(k.ESP) != 2 || len(k.IKE) != 1 {
		t.Fatalf("%s: %d ESP keys, %d IKE keys; want 2 and 1", c.NS.Name(), len(k.ESP), len(k.IKE))
	}
	in, okIn := k.ESPBySPI(child.SPIIn)
	out, okOut := k.ESPBySPI(child.SPIOut)
	if !okIn || !okOut || !in.Inbound || out.Inbound {
		t.Fatalf("%s: key log SAs %+v do not match CHILD_SA in %08x out %08x", c.NS.Name(), k.ESP, child.SPIIn, child.SPIOut)
	}
	for _, e := range k.ESP {
		if e.EncAlg != child.EncrAlg || e.IntegAlg != child.IntegAlg || len(e.EncKey) != encLen || len(e.IntegKey) != intLen {
			t.Errorf("SPI %08x: %s/%s keys %d/%d bytes, want %s/%s %d/%d", e.SPI, e.EncAlg, e.IntegAlg,
				len(e.EncKey), len(e.IntegKey), child.EncrAlg, child.IntegAlg, encLen, intLen)
		}
	}
	if len(k.IKE[0].EncKey) != kaLen {
		t.Errorf("IKE Ka %d bytes, want %d", len(k.IKE[0].EncKey), kaLen)
	}
	return k
}

// sameKeys checks both peers logged identical keys for each SPI, in opposite directions.
func sameKeys(t *testing.T, l, r KeyLog) {
	t.Helper()
	for _, lk := range l.ESP {
		rk, ok := r.ESPBySPI(lk.SPI)
		if !ok {
			t.Errorf("SPI %08x: only on the left", lk.SPI)
			continue
		}
		if lk.Inbound == rk.Inbound || lk.Src != rk.Src || lk.Dst != rk.Dst || lk.EncAlg != rk.EncAlg ||
			!bytes.Equal(lk.EncKey, rk.EncKey) || !bytes.Equal(lk.IntegKey, rk.IntegKey) {
			t.Errorf("SPI %08x: left and right keys or addresses differ", lk.SPI)
		}
	}
	if l.IKE[0].ICookie != r.IKE[0].ICookie || !bytes.Equal(l.IKE[0].EncKey, r.IKE[0].EncKey) {
		t.Errorf("IKE keys differ between left and right")
	}
}

// checkESP decrypts the capture with keys: 3 pings out, 3 replies back, all ICVs good.
func checkESP(t *testing.T, pcap string, keys testutil.Keys, child ChildSA) {
	t.Helper()
	rows := testutil.ESPRows(t, pcap, keys)
	want := map[uint32]int{child.SPIIn: 3, child.SPIOut: 3}
	got := map[uint32]int{}
	for _, r := range rows {
		got[r.SPI]++
		if !r.ICVGood || !r.Decrypted || !r.UDPEncap || r.InnerProto != 1 {
			t.Errorf("ESP frame %d: %+v, want ICV good, decrypted ICMP in UDP", r.Frame, r)
		}
		inner := []netip.Addr{r.InnerSrc, r.InnerDst}
		if !slices.Contains(inner, netip.MustParseAddr("10.10.1.1")) || !slices.Contains(inner, netip.MustParseAddr("10.20.0.10")) {
			t.Errorf("ESP frame %d: inner %v -> %v, want between 10.10.1.1 and 10.20.0.10", r.Frame, r.InnerSrc, r.InnerDst)
		}
		if r.Seq < 1 || r.Seq > 3 {
			t.Errorf("ESP frame %d: sequence %d, want 1..3", r.Frame, r.Seq)
		}
	}
	if len(got) != len(want) || got[child.SPIIn] != want[child.SPIIn] || got[child.SPIOut] != want[child.SPIOut] {
		t.Errorf("ESP packets per SPI %v, want %v", got, want)
	}
}

// checkQuickModeDecrypted checks the phase-1 key decrypts quick mode: its SA payload shows up.
func checkQuickModeDecrypted(t *testing.T, pcap string, keys testutil.Keys) {
	t.Helper()
	rows := testutil.TShark(t, pcap, keys, "isakmp.exchangetype == 32", "frame.number", "isakmp.typepayload")
	if len(rows) != 3 {
		t.Fatalf("%d quick-mode packets, want 3", len(rows))
	}
	for _, r := range rows[:2] {
		if !slices.Contains(r["isakmp.typepayload"], "1") {
			t.Errorf("quick mode frame %s payloads %v: no SA payload (1), phase-1 key did not decrypt it",
				r.First("frame.number"), r["isakmp.typepayload"])
		}
	}
}

// checkOracleRejectsWrongKey makes sure a wrong key is noticed, so the ICV checks above mean something.
func checkOracleRejectsWrongKey(t *testing.T, pcap string, k KeyLog) {
	t.Helper()
	var bad testutil.Keys
	for _, e := range k.ESP {
		e.EncKey = bytes.Clone(e.EncKey)
		e.IntegKey = bytes.Clone(e.IntegKey)
		if len(e.IntegKey) > 0 {
			e.IntegKey[0] ^= 1
		} else {
			e.EncKey[0] ^= 1
		}
		bad.ESP = append(bad.ESP, e.Entry())
	}
	for _, r := range testutil.ESPRows(t, pcap, bad) {
		if r.ICVGood {
			t.Errorf("ESP frame %d: ICV good with a corrupted key", r.Frame)
		}
	}
}

func uint64From(b [8]byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}
