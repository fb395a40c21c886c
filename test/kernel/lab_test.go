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
	// A second protected subnet with a host address on lo, for tunnels with several
	// subnets per side; unset unless addSecondSubnets set them.
	inner2   netip.Addr
	protect2 netip.Prefix
}

// subnets is the site's protected subnets in espgw's and swanctl's list syntax: "a" or "a,b".
func (s *site) subnets() string {
	if !s.protect2.IsValid() {
		return s.protect.String()
	}
	return s.protect.String() + "," + s.protect2.String()
}

// hosts is the site's protected host addresses, one per subnet.
func (s *site) hosts() []netip.Addr {
	if !s.inner2.IsValid() {
		return []netip.Addr{s.inner}
	}
	return []netip.Addr{s.inner, s.inner2}
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

// addSecondSubnets gives a the second subnet 10.3.0.0/16 and b 10.4.0.0/16, each with a
// host on lo and routed from the other site like the first.
func addSecondSubnets(tb testing.TB, l *lab) {
	tb.Helper()
	l.a.inner2, l.a.protect2 = addr("10.3.0.1"), netip.MustParsePrefix("10.3.0.0/16")
	l.b.inner2, l.b.protect2 = addr("10.4.0.1"), netip.MustParsePrefix("10.4.0.0/16")
	for _, s := range []struct{ me, peer *site }{{&l.a, &l.b}, {&l.b, &l.a}} {
		s.me.ns.AddAddr(tb, "lo", s.me.inner2.String()+"/32")
		s.me.ns.AddRoute(tb, s.peer.protect2.String(), s.peer.outer.String(), "")
	}
}

// hostPair is a flow between the sites: from a host of a to a host of b.
type hostPair struct{ a, b netip.Addr }

func (p hostPair) String() string { return p.a.String() + " -> " + p.b.String() }

// pairs is every combination of a's hosts with b's.
func (l *lab) pairs() []hostPair {
	var ps []hostPair
	for _, a := range l.a.hosts() {
		for _, b := range l.b.hosts() {
			ps = append(ps, hostPair{a, b})
		}
	}
	return ps
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
	w.requireOnlyESPAnd(tb, encap, min, "")
}

// requireOnlyESPAnd is requireOnlyESP that also lets pass what the tcpdump filter also
// matches, e.g. IKE; "" lets nothing else pass.
func (w *wireCapture) requireOnlyESPAnd(tb testing.TB, encap bool, min int, also string) {
	tb.Helper()
	esp := espFilter(encap)
	others := "ip and not (" + esp + ")"
	if also != "" {
		others = "ip and not (" + esp + " or " + also + ")"
	}
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
		if n := pcapCount(tb, path, others); n != 0 {
			out, _ := exec.Command("tcpdump", "-r", path, "-nn", others).Output()
			tb.Errorf("capture %s: %d IPv4 packets match %q, want 0:\n%s", path, n, others, out)
		}
	}
}

// pingOverESP pings b's inner address from a's: see pingPairsOverESP.
func pingOverESP(tb testing.TB, l *lab, encap bool, pings int) (sent int) {
	return pingPairsOverESP(tb, l, encap, pings, []hostPair{{l.a.inner, l.b.inner}})
}

// pingPairsOverESP pings each of pairs from a: one ping per pair that resolves the
// neighbours, then, captured on the wire, at least pings-1 more per pair that must only show
// up as ESP (in UDP with encap). It returns how many pings it sent: under TCG tcpdump can
// miss packets for a while after it reports "listening", so it keeps pinging the first pair,
// one at a time and at most 10 extra, until the capture has seen the ESP.
func pingPairsOverESP(tb testing.TB, l *lab, encap bool, pings int, pairs []hostPair) (sent int) {
	tb.Helper()
	ping := func(p hostPair) {
		if err := testutil.Ping(l.a.ns, p.a.String(), p.b.String(), 1); err != nil {
			tb.Fatalf("through the tunnel, %s: %v", p, err)
		}
		sent++
	}
	// The first one resolves the neighbours, which under TCG on a loaded host can take
	// longer than a ping's 1 s: it gets three tries.
	for try := 1; ; try++ {
		err := testutil.Ping(l.a.ns, pairs[0].a.String(), pairs[0].b.String(), 1)
		if err == nil {
			break
		}
		if try == 3 {
			tb.Fatalf("through the tunnel, %s (%d tries): %v", pairs[0], try, err)
		}
	}
	sent++
	for _, p := range pairs[1:] {
		ping(p)
	}
	want := len(pairs) * (pings - 1)
	wire := captureWire(tb, l)
	for _, p := range pairs {
		for range pings - 1 {
			ping(p)
		}
	}
	for i := 0; i < 10 && wire.espCount(tb, encap) < want; i++ {
		ping(pairs[0])
	}
	wire.requireOnlyESP(tb, encap, want)
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

// ipPolicy is one SPD entry as `ip xfrm policy` shows it.
type ipPolicy struct {
	dir, src, dst string // e.g. "out", "10.1.0.0/16", "10.2.0.0/16"
	reqid         int    // of its ESP template
}

var (
	ipPolicyRE = regexp.MustCompile(`^(\S+) dst (\S+)\s+dir (\w+)`)
	ipReqIDRE  = regexp.MustCompile(`proto esp (?:spi 0x[0-9a-f]+ )?reqid (\d+)`)
)

// ipXfrmPolicies lists the SPD of ns from `ip xfrm policy`, an oracle independent of the
// datapath's netlink code; per-socket policies (charon's on its IKE sockets) are left out.
func ipXfrmPolicies(tb testing.TB, ns *testutil.NetNS) []ipPolicy {
	tb.Helper()
	out := ns.Exec(tb, "ip", "xfrm", "policy")
	var ps []ipPolicy
	for _, block := range strings.Split("\n"+out, "\nsrc ")[1:] {
		m := ipPolicyRE.FindStringSubmatch(block)
		if m == nil {
			continue // "socket in|out"
		}
		p := ipPolicy{dir: m[3], src: m[1], dst: m[2]}
		if r := ipReqIDRE.FindStringSubmatch(block); r != nil {
			p.reqid, _ = strconv.Atoi(r[1])
		}
		ps = append(ps, p)
	}
	return ps
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
