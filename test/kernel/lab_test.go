//go:build vmtest

package kernel

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath/xfrm"
	"github.com/espgw/espgw/internal/testutil"
)

// site is one gateway of the two-site lab: a namespace whose transit address faces the other
// site over a veth and whose protected subnet is an address on lo.
type site struct {
	ns      *testutil.NetNS
	dev     string       // transit veth end
	outer   netip.Addr   // tunnel endpoint (192.0.2.0/24)
	inner   netip.Addr   // protected host address, on lo
	protect netip.Prefix // protected subnet
}

// lab is two sites, a (192.0.2.1, 10.1.0.0/16) and b (192.0.2.2, 10.2.0.0/16), joined by one
// veth. Each routes the other's subnet via the other's transit address; nothing protects it
// until a test installs SAs and policies.
type lab struct{ a, b site }

func newLab(tb testing.TB) *lab {
	tb.Helper()
	l := &lab{
		a: site{dev: "va", outer: addr("192.0.2.1"), inner: addr("10.1.0.1"), protect: netip.MustParsePrefix("10.1.0.0/16")},
		b: site{dev: "vb", outer: addr("192.0.2.2"), inner: addr("10.2.0.1"), protect: netip.MustParsePrefix("10.2.0.0/16")},
	}
	l.a.ns = testutil.NewNetNS(tb, "kt-a")
	l.b.ns = testutil.NewNetNS(tb, "kt-b")
	testutil.Veth(tb, l.a.ns, l.a.dev, l.a.outer.String()+"/24", l.b.ns, l.b.dev, l.b.outer.String()+"/24")
	for _, s := range []struct{ me, peer *site }{{&l.a, &l.b}, {&l.b, &l.a}} {
		s.me.ns.AddAddr(tb, "lo", s.me.inner.String()+"/32")
		s.me.ns.AddRoute(tb, s.peer.protect.String(), s.peer.outer.String(), "")
	}
	return l
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// pcapCount counts the packets in the pcap at path that match the tcpdump filter.
func pcapCount(tb testing.TB, path, filter string) int {
	tb.Helper()
	out, err := exec.Command("tcpdump", "-r", path, "-nn", filter).Output()
	if err != nil {
		tb.Fatalf("tcpdump -r %s %q: %v", path, filter, err)
	}
	return strings.Count(string(out), "\n")
}

// wireCapture records what leaves both ends of the transit veth: the wire between the sites.
// (A capture of received packets would also show the plaintext the kernel re-injects on the
// same device after decapsulation.)
type wireCapture struct{ a, b *testutil.Capture }

func captureWire(tb testing.TB, l *lab) *wireCapture {
	tb.Helper()
	return &wireCapture{
		a: testutil.StartCapture(tb, l.a.ns, l.a.dev, "outbound"),
		b: testutil.StartCapture(tb, l.b.ns, l.b.dev, "outbound"),
	}
}

// espFilter matches ESP on the wire: raw, or in UDP 4500 with a non-zero SPI.
func espFilter(encap bool) string {
	if encap {
		return "udp port 4500 and udp[8:4] != 0"
	}
	return "ip proto 50"
}

// espCount is the number of ESP packets both ends have captured so far.
func (w *wireCapture) espCount(tb testing.TB, encap bool) int {
	return pcapCount(tb, w.a.Path(), espFilter(encap)) + pcapCount(tb, w.b.Path(), espFilter(encap))
}

// requireOnlyESP waits until the wire capture holds at least min ESP packets (raw or, with
// encap, in UDP 4500 with a non-zero SPI), stops it and fails if any other IPv4 packet was sent.
// Under TCG with espgw and charon busy, tcpdump has been seen to miss the first exchange after
// it reported "listening", so callers ask for ESP from most, not all, of their packets.
func (w *wireCapture) requireOnlyESP(tb testing.TB, encap bool, min int) {
	tb.Helper()
	esp := espFilter(encap)
	count := func() int { return w.espCount(tb, encap) }
	// tcpdump writes with a delay under TCG: give the file time to catch up before stopping.
	if err := testutil.Poll(10*time.Second, func() (bool, error) { return count() >= min, nil }); err != nil {
		tb.Errorf("wire capture: %d packets match %q, want at least %d", count(), esp, min)
		for _, c := range []*testutil.Capture{w.a, w.b} {
			out, _ := exec.Command("tcpdump", "-r", c.Path(), "-nn", "-e").CombinedOutput()
			tb.Logf("%s:\n%s", c.Path(), out)
		}
	}
	for _, c := range []*testutil.Capture{w.a, w.b} {
		path := c.Stop()
		if n := pcapCount(tb, path, "ip and not ("+esp+")"); n != 0 {
			out, _ := exec.Command("tcpdump", "-r", path, "-nn", "ip and not ("+esp+")").Output()
			tb.Errorf("capture %s: %d IPv4 packets besides ESP, want 0:\n%s", path, n, out)
		}
	}
}

// pingOverESP pings b's inner address from a's: one ping that resolves the neighbours, then,
// captured on the wire, at least pings-1 more that must only show up as ESP (in UDP with
// encap). It returns how many pings it sent: under TCG tcpdump can miss packets for a while
// after it reports "listening", so it keeps pinging, one at a time and at most 10 extra,
// until the capture has seen the ESP.
func pingOverESP(tb testing.TB, l *lab, encap bool, pings int) (sent int) {
	tb.Helper()
	ping := func() {
		if err := testutil.Ping(l.a.ns, l.a.inner.String(), l.b.inner.String(), 1); err != nil {
			tb.Fatalf("through the tunnel: %v", err)
		}
		sent++
	}
	// The first one resolves the neighbours, which under TCG on a loaded host can take
	// longer than a ping's 1 s: it gets three tries.
	for try := 1; ; try++ {
		err := testutil.Ping(l.a.ns, l.a.inner.String(), l.b.inner.String(), 1)
		if err == nil {
			break
		}
		if try == 3 {
			tb.Fatalf("through the tunnel (%d tries): %v", try, err)
		}
	}
	sent++
	wire := captureWire(tb, l)
	for i := 0; i < pings-1 || (i < pings+9 && wire.espCount(tb, encap) < pings-1); i++ {
		ping()
	}
	wire.requireOnlyESP(tb, encap, pings-1)
	return sent
}

// ipStateRE finds the SPI of one state in `ip -s xfrm state` output and its current byte
// and packet counters.
var ipStateRE = regexp.MustCompile(`(?s)proto esp spi 0x([0-9a-f]{8}).*?lifetime current:\s+(\d+)\(bytes\), (\d+)\(packets\)`)

// ipXfrmState is the block of `ip -s xfrm state` in ns that describes the ESP state spi: an
// oracle independent of the datapath's netlink code.
func ipXfrmState(tb testing.TB, ns *testutil.NetNS, spi uint32) string {
	tb.Helper()
	out := ns.Exec(tb, "ip", "-s", "xfrm", "state")
	for _, block := range strings.Split(out, "\nsrc ") {
		if m := ipStateRE.FindStringSubmatch(block); m != nil && m[1] == fmt.Sprintf("%08x", spi) {
			return block
		}
	}
	tb.Fatalf("netns %s: `ip -s xfrm state` has no ESP state spi 0x%08x:\n%s", ns.Name(), spi, out)
	return ""
}

// ipXfrmPackets reads the packet counter of the ESP state spi from `ip -s xfrm state` in ns.
func ipXfrmPackets(tb testing.TB, ns *testutil.NetNS, spi uint32) uint64 {
	tb.Helper()
	n, _ := strconv.ParseUint(ipStateRE.FindStringSubmatch(ipXfrmState(tb, ns, spi))[3], 10, 64)
	return n
}

// ipAlgRE finds the algorithm lines of a state in `ip -s xfrm state` output: kind, kernel
// name, key (-s adds its length in bits) and, for auth-trunc and aead, the ICV length in bits.
var ipAlgRE = regexp.MustCompile(`(?m)^\s+(enc|auth|auth-trunc|aead) (\S+) 0x([0-9a-f]*)(?: \(\d+ bits\))?(?: (\d+))?\s*$`)

// ipXfrmAlgs lists the algorithms of the ESP state spi in ns as `ip xfrm state` shows them,
// sorted, each as "KIND NAME KEYBITS[/ICVBITS]", e.g. "aead rfc4106(gcm(aes)) 288/128" (the
// GCM key includes the 32-bit salt) or "enc cbc(aes) 256".
func ipXfrmAlgs(tb testing.TB, ns *testutil.NetNS, spi uint32) []string {
	tb.Helper()
	var algs []string
	for _, m := range ipAlgRE.FindAllStringSubmatch(ipXfrmState(tb, ns, spi), -1) {
		a := fmt.Sprintf("%s %s %d", m[1], m[2], len(m[3])*4)
		if m[4] != "" {
			a += "/" + m[4]
		}
		algs = append(algs, a)
	}
	slices.Sort(algs)
	return algs
}

// xfrmAll lists the XFRM states and the policies of the SPD (in, out, fwd) of ns. Per-socket
// policies are left out: charon sets them on its IKE sockets, and they go with the socket.
func xfrmAll(tb testing.TB, ns *testutil.NetNS) ([]netlink.XfrmState, []netlink.XfrmPolicy) {
	tb.Helper()
	states, err := ns.Handle().XfrmStateList(netlink.FAMILY_ALL)
	if err != nil {
		tb.Fatalf("netns %s: list xfrm states: %v", ns.Name(), err)
	}
	pols, err := ns.Handle().XfrmPolicyList(netlink.FAMILY_ALL)
	if err != nil {
		tb.Fatalf("netns %s: list xfrm policies: %v", ns.Name(), err)
	}
	pols = slices.DeleteFunc(pols, func(p netlink.XfrmPolicy) bool { return p.Dir >= netlink.XFRM_SOCKET_IN })
	return states, pols
}

// requireNoXfrm fails unless ns holds no XFRM state and no XFRM policy.
func requireNoXfrm(tb testing.TB, ns *testutil.NetNS) {
	tb.Helper()
	states, pols := xfrmAll(tb, ns)
	for _, s := range states {
		tb.Errorf("netns %s: XFRM state left behind: %s -> %s spi 0x%08x reqid %d", ns.Name(), s.Src, s.Dst, uint32(s.Spi), s.Reqid)
	}
	for _, p := range pols {
		tb.Errorf("netns %s: XFRM policy left behind: %s %s -> %s", ns.Name(), p.Dir, p.Src, p.Dst)
	}
}

// closeLeavingNoXfrm closes the datapaths of sites a (da) and b (db) and fails unless each
// leaves its namespace without XFRM state or policy.
func closeLeavingNoXfrm(tb testing.TB, l *lab, da, db *xfrm.Datapath) {
	tb.Helper()
	for _, s := range []struct {
		d *xfrm.Datapath
		s *site
	}{{da, &l.a}, {db, &l.b}} {
		if err := s.d.Close(); err != nil {
			tb.Errorf("netns %s: Close: %v", s.s.ns.Name(), err)
		}
		requireNoXfrm(tb, s.s.ns)
	}
}

// listenESPInUDP opens a UDP socket on port 4500 of s.outer with UDP_ENCAP_ESPINUDP set, so
// the kernel hands ESP-in-UDP arriving there to XFRM (RFC 3948); the IKE daemon holds this
// socket in real life. It is closed at cleanup.
func listenESPInUDP(tb testing.TB, s *site) {
	tb.Helper()
	var c *net.UDPConn
	err := s.ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: s.outer.AsSlice(), Port: 4500})
		if err != nil {
			return err
		}
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_ENCAP, unix.UDP_ENCAP_ESPINUDP)
		}); err != nil {
			return err
		}
		return serr
	})
	if err != nil {
		if c != nil {
			c.Close()
		}
		tb.Fatalf("netns %s: ESP-in-UDP socket on %s:4500: %v", s.ns.Name(), s.outer, err)
	}
	tb.Cleanup(func() { c.Close() })
}

// xfrmStates lists the XFRM states of s's namespace.
func xfrmStates(tb testing.TB, s *site) []netlink.XfrmState {
	tb.Helper()
	states, _ := xfrmAll(tb, s.ns)
	return states
}

// requireNoXfrmState fails if s's namespace holds any XFRM state.
func requireNoXfrmState(tb testing.TB, s *site) {
	tb.Helper()
	for _, st := range xfrmStates(tb, s) {
		tb.Errorf("netns %s: unexpected XFRM state %s -> %s spi 0x%08x", s.ns.Name(), st.Src, st.Dst, uint32(st.Spi))
	}
}

// hasXfrmState tells whether s's namespace holds an XFRM state with this SPI.
func hasXfrmState(tb testing.TB, s *site, spi uint32) bool {
	tb.Helper()
	for _, st := range xfrmStates(tb, s) {
		if uint32(st.Spi) == spi {
			return true
		}
	}
	return false
}
