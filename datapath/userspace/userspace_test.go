package userspace

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/esp"
	"github.com/espgw/espgw/internal/testutil"
)

var (
	outerA, outerB = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	hostA, hostB   = netip.MustParseAddr("10.10.1.1"), netip.MustParseAddr("10.20.0.1")
	selA           = datapath.Selector{Local: netip.MustParsePrefix("10.10.1.1/32"), Remote: netip.MustParsePrefix("10.20.0.0/24")}
	selB           = datapath.Selector{Local: selA.Remote, Remote: selA.Local}
)

// gateway is one end: a namespace with a Bind and a userspace datapath.
type gateway struct {
	ns     *testutil.NetNS
	bind   *conn.UDPBind
	dp     *Datapath
	events chan datapath.Event
}

// lab builds two namespaces joined by a veth (192.0.2.1 ⇄ 192.0.2.2), each with a protected
// host address on lo (10.10.1.1, 10.20.0.1) and a running datapath.
func lab(t testing.TB) (a, b *gateway) {
	t.Helper()
	a, b = &gateway{ns: testutil.NewNetNS(t, "espus-a")}, &gateway{ns: testutil.NewNetNS(t, "espus-b")}
	testutil.Veth(t, a.ns, "vA", "192.0.2.1/24", b.ns, "vB", "192.0.2.2/24")
	for _, g := range []struct {
		gw    *gateway
		outer netip.Addr
		host  netip.Addr
	}{{a, outerA, hostA}, {b, outerB, hostB}} {
		g.gw.ns.AddAddr(t, "lo", g.host.String()+"/32")
		outer, gw := g.outer, g.gw
		gw.ns.In(t, func() (err error) {
			if gw.bind, err = conn.Listen([]netip.Addr{outer}, conn.ListenOptions{}); err != nil {
				return err
			}
			gw.dp, err = New(Options{Bind: gw.bind, RawESP: true, LifetimeInterval: 50 * time.Millisecond})
			return err
		})
		gw.events = make(chan datapath.Event, 100)
		go func() {
			for ev := range gw.dp.Events() {
				gw.events <- ev
			}
		}()
		t.Cleanup(func() {
			gw.dp.Close()
			gw.bind.Close()
		})
	}
	return a, b
}

type transform struct {
	name     string
	enc      datapath.Encryption
	encKey   int
	integ    datapath.Integrity
	integKey int
}

func key(n int, seed byte) datapath.Key {
	k := make(datapath.Key, n)
	for i := range k {
		k[i] = seed ^ byte(i*13)
	}
	return k
}

// saPairs returns the SA pairs of A and B for one tunnel between hostA and hostB's
// subnets: spiAB carries A→B.
func saPairs(tr transform, udp bool, spiAB, spiBA, reqid uint32) (a, b datapath.SAPair) {
	return tunnelPairs(tr, udp, spiAB, spiBA, reqid, selA)
}

// tunnelPairs returns the SA pairs of A and B for a tunnel whose selector, seen from A, is
// selA; spiAB carries A→B.
func tunnelPairs(tr transform, udp bool, spiAB, spiBA, reqid uint32, selA datapath.Selector) (a, b datapath.SAPair) {
	selB := datapath.Selector{Local: selA.Remote, Remote: selA.Local, Proto: selA.Proto, LocalPort: selA.RemotePort, RemotePort: selA.LocalPort}
	sa := func(spi uint32, src, dst netip.Addr, sel datapath.Selector, seed byte) datapath.SA {
		s := datapath.SA{
			SPI: spi, Src: src, Dst: dst,
			Enc: tr.enc, EncKey: key(tr.encKey, seed), Integ: tr.integ, IntegKey: key(tr.integKey, seed+1),
			ReplayWindow: 64, ReqID: reqid, Selectors: []datapath.Selector{sel},
		}
		if udp {
			s.EncapSrcPort, s.EncapDstPort = conn.NATTPort, conn.NATTPort
		}
		return s
	}
	ab, ba := sa(spiAB, outerA, outerB, selA, 0x10), sa(spiBA, outerB, outerA, selB, 0x20)
	abIn, baIn := ab, ba
	abIn.Selectors, baIn.Selectors = []datapath.Selector{selB}, []datapath.Selector{selA}
	return datapath.SAPair{Out: ab, In: baIn}, datapath.SAPair{Out: ba, In: abIn}
}

func install(t testing.TB, a, b *gateway, tr transform, udp bool) (pa, pb datapath.SAPair) {
	t.Helper()
	ctx := context.Background()
	pa, pb = saPairs(tr, udp, 0x1001, 0x2002, 1)
	for _, s := range []struct {
		gw  *gateway
		sap datapath.SAPair
		sel datapath.Selector
	}{{a, pa, selA}, {b, pb, selB}} {
		if err := s.gw.dp.AddSAPair(ctx, s.sap); err != nil {
			t.Fatal(err)
		}
		pol := datapath.Policy{Selector: s.sel, TunnelLocal: s.sap.Out.Src, TunnelRemote: s.sap.Out.Dst, ReqID: 1}
		if err := s.gw.dp.AddPolicy(ctx, pol); err != nil {
			t.Fatal(err)
		}
	}
	return pa, pb
}

// ping sends one ICMP echo from src to dst inside ns and waits for the reply.
func ping(t *testing.T, ns *testutil.NetNS, src, dst netip.Addr, seq uint16) error {
	t.Helper()
	var c net.PacketConn
	ns.In(t, func() (err error) {
		c, err = net.ListenPacket("ip4:icmp", src.String())
		return err
	})
	defer c.Close()
	msg := make([]byte, 8+56)
	msg[0] = 8
	binary.BigEndian.PutUint16(msg[4:], 0xbeef)
	binary.BigEndian.PutUint16(msg[6:], seq)
	binary.BigEndian.PutUint16(msg[2:], inetChecksum(msg))
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("ping %v -> %v seq %d: %w", src, dst, seq, err)
		}
		if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[6:]) == seq && from.String() == dst.String() {
			return nil
		}
	}
}

func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// capture runs tcpdump on dev in ns until the returned function is called; that returns
// the pcap path.
func capture(t *testing.T, ns *testutil.NetNS, dev string) func() string {
	t.Helper()
	testutil.RequireTool(t, "tcpdump", "tcpdump")
	path := filepath.Join(t.TempDir(), "transit.pcap")
	cmd := ns.Command("tcpdump", "-Z", "root", "--immediate-mode", "-U", "-n", "-i", dev, "-w", path)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(stderr).ReadString('\n') // "listening on ..." once it captures
	if !strings.Contains(line, "listening") {
		t.Fatalf("tcpdump did not start: %s", line)
	}
	return func() string {
		time.Sleep(100 * time.Millisecond)
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		return path
	}
}

func countPackets(t *testing.T, pcap, filter string) int {
	t.Helper()
	b, err := exec.Command("tcpdump", "-r", pcap, "-n", filter).Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s %q: %v", pcap, filter, err)
	}
	out := strings.TrimSpace(string(b))
	if out == "" {
		return 0
	}
	return len(strings.Split(out, "\n"))
}

// tcpTransfer sends size random bytes from A's host address to B's and compares hashes.
func tcpTransfer(t testing.TB, a, b *gateway, size int) {
	t.Helper()
	var ln net.Listener
	b.ns.In(t, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(hostB, 5001).String())
		return err
	})
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- [32]byte{}
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	}()
	var c net.Conn
	a.ns.In(t, func() (err error) {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(hostA, 0)), Timeout: 3 * time.Second}
		c, err = d.Dial("tcp4", netip.AddrPortFrom(hostB, 5001).String())
		return err
	})
	data := make([]byte, size)
	rand.Read(data)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatalf("TCP write: %v", err)
	}
	c.Close()
	select {
	case h := <-got:
		if h != sha256.Sum256(data) {
			t.Fatalf("TCP transfer of %d bytes: hash mismatch", size)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("TCP transfer: receiver did not finish")
	}
}

func waitEvent(t *testing.T, g *gateway, kind datapath.EventKind) datapath.Event {
	t.Helper()
	timeout := time.After(3 * time.Second)
	for {
		select {
		case ev := <-g.events:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event of kind %d within 3 s", kind)
		}
	}
}

func TestTunnel(t *testing.T) {
	tests := []struct {
		name string
		udp  bool
		tr   transform
	}{
		{"esp-in-udp/aes128gcm16", true, transform{"aes128gcm16", datapath.EncAESGCM16, 20, datapath.IntegNone, 0}},
		{"raw-esp/3des-sha1", false, transform{"3des-sha1", datapath.Enc3DESCBC, 24, datapath.IntegHMACSHA1_96, 20}},
		{"raw-esp/aes256-sha256", false, transform{"aes256-sha256", datapath.EncAESCBC, 32, datapath.IntegHMACSHA256_128, 32}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := lab(t)
			stop := capture(t, a.ns, "vA")
			pa, pb := install(t, a, b, tt.tr, tt.udp)

			for i := range 3 {
				if err := ping(t, a.ns, hostA, hostB, uint16(i+1)); err != nil {
					t.Fatal(err)
				}
				if err := ping(t, b.ns, hostB, hostA, uint16(100+i)); err != nil {
					t.Fatal(err)
				}
			}
			tcpTransfer(t, a, b, 4<<20)

			pcap := stop()
			espFilter := "ip proto 50"
			if tt.udp {
				espFilter = "udp port 4500"
			}
			// Outer ICMP errors may appear: a packet finding the raw socket full is answered
			// with protocol unreachable by a kernel without ESP. Inner traffic must never.
			if n := countPackets(t, pcap, "net 10.0.0.0/8"); n != 0 {
				t.Errorf("%d packets with inner addresses on the transit veth", n)
			}
			if n := countPackets(t, pcap, "ip and not ("+espFilter+") and not icmp[icmptype] == icmp-unreach"); n != 0 {
				t.Errorf("%d IPv4 packets on the transit veth were not %s", n, espFilter)
			}
			if n := countPackets(t, pcap, espFilter); n < 100 {
				t.Errorf("only %d ESP packets on the transit veth, want the pings and the TCP transfer", n)
			}
			ca, err := a.dp.Counters(outerB, pa.Out.SPI)
			if err != nil || ca.Packets < 100 || ca.Bytes < 4<<20 {
				t.Errorf("A outbound counters %+v, %v: want the transfer counted", ca, err)
			}
			cb, err := b.dp.Counters(outerB, pb.In.SPI)
			if err != nil || cb.Packets < 100 || cb.AuthFailures != 0 {
				t.Errorf("B inbound counters %+v, %v", cb, err)
			}
			if cb.Packets != ca.Packets-uint64(b.dp.Drops(DropReplay)) {
				t.Logf("A sent %d, B opened %d (the difference was lost on the way)", ca.Packets, cb.Packets)
				for r := range numDropReasons {
					if n := b.dp.Drops(r); n > 0 {
						t.Logf("B drops %v: %d", r, n)
					}
					if n := a.dp.Drops(r); n > 0 {
						t.Logf("A drops %v: %d", r, n)
					}
				}
			}
		})
	}
}

// TestInboundChecks injects hand-made ESP packets into B: outside the selector, replayed,
// forged; then checks a hard byte lifetime removes the SA.
func TestInboundChecks(t *testing.T) {
	a, b := lab(t)
	tr := transform{"aes256gcm16", datapath.EncAESGCM16, 36, datapath.IntegNone, 0}
	install(t, a, b, tr, true)
	_, pb := saPairs(tr, true, 0x3003, 0x4004, 7)
	pb.In.Lifetime.HardBytes = 1000
	if err := b.dp.AddSAPair(context.Background(), pb); err != nil {
		t.Fatal(err)
	}
	injectorSA := pb.In
	injectorSA.Lifetime = datapath.Lifetime{}
	injector, err := esp.NewSA(injectorSA, esp.Outbound, time.Now()) // A's side of SPI 0x3003
	if err != nil {
		t.Fatal(err)
	}
	var udp *net.UDPConn
	a.ns.In(t, func() (err error) {
		udp, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(outerB, conn.NATTPort)))
		return err
	})
	defer udp.Close()
	send := func(src, dst netip.Addr) []byte {
		t.Helper()
		inner := icmpEcho(src, dst)
		buf := make([]byte, esp.Headroom+len(inner)+esp.Tailroom)
		copy(buf[esp.Headroom:], inner)
		pkt, err := injector.Seal(buf, esp.Headroom, len(inner), esp.NextHeaderIPv4)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := udp.Write(pkt); err != nil {
			t.Fatal(err)
		}
		return pkt
	}
	waitDrop := func(r DropReason, want uint64) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); b.dp.Drops(r) < want; {
			if time.Now().After(deadline) {
				t.Fatalf("drops[%v] = %d, want %d", r, b.dp.Drops(r), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	send(netip.MustParseAddr("10.99.0.1"), hostB) // source outside 10.10.1.1/32
	waitDrop(DropSelector, 1)
	send(hostA, netip.MustParseAddr("10.21.0.1")) // destination outside 10.20.0.0/24
	waitDrop(DropSelector, 2)

	pkt := send(hostA, hostB)
	udp.Write(pkt) // the same packet again
	waitDrop(DropReplay, 1)
	forged := bytes.Clone(pkt)
	forged[len(forged)-1] ^= 1
	binary.BigEndian.PutUint32(forged[4:], 1000) // fresh sequence number, so the ICV decides
	udp.Write(forged)
	waitDrop(DropAuth, 1)
	c, err := b.dp.Counters(outerB, 0x3003)
	if err != nil || c.ReplayDrops != 1 || c.AuthFailures != 1 || c.Packets != 3 {
		t.Fatalf("counters %+v, %v: want 3 packets opened, 1 replay drop, 1 auth failure", c, err)
	}
	udp.Write([]byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33})
	waitDrop(DropUnknownSPI, 1)

	for range 10 { // past HardBytes = 1000
		send(hostA, hostB)
	}
	ev := waitEvent(t, b, datapath.EventHardExpire)
	if ev.SPI != 0x3003 || ev.Dst != outerB {
		t.Fatalf("hard expire event %+v, want SPI 0x3003 dst %v", ev, outerB)
	}
	if _, err := b.dp.Counters(outerB, 0x3003); !errors.Is(err, ErrNoSA) {
		t.Fatalf("Counters after hard expire: %v, want ErrNoSA", err)
	}
	if err := ping(t, a.ns, hostA, hostB, 9); err != nil {
		t.Fatalf("the other SA must keep working: %v", err)
	}
}

// icmpEcho is an IPv4 ICMP echo request with a valid header checksum.
func icmpEcho(src, dst netip.Addr) []byte {
	p := make([]byte, 20+8+72)
	p[0], p[8], p[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], inetChecksum(p[:20]))
	p[20] = 8
	binary.BigEndian.PutUint16(p[22:], inetChecksum(p[20:]))
	return p
}

// udpPolicy covers UDP from selA's local prefix to 10.30.0.0/24, a prefix no SA reaches.
var udpPolicy = datapath.Policy{
	Selector: datapath.Selector{Local: selA.Local, Remote: netip.MustParsePrefix("10.30.0.0/24"), Proto: 17},
	ReqID:    99, TunnelLocal: outerA, TunnelRemote: outerB,
}

func TestAcquireAndTeardown(t *testing.T) {
	a, _ := lab(t)
	ctx := context.Background()
	pol := udpPolicy
	if err := a.dp.AddPolicy(ctx, pol); err != nil {
		t.Fatal(err)
	}
	if err := a.dp.AddPolicy(ctx, datapath.Policy{Selector: selA, ReqID: 1, TunnelLocal: outerA, TunnelRemote: outerB}); err != nil {
		t.Fatal(err)
	}
	routes := a.ns.Exec(t, "ip", "route", "show", "table", "220")
	for _, want := range []string{"10.30.0.0/24 dev espgw0", "10.20.0.0/24 dev espgw0"} {
		if !strings.Contains(routes, want) {
			t.Fatalf("table 220 lacks %q:\n%s", want, routes)
		}
	}
	if !strings.Contains(routes, "src 10.10.1.1") {
		t.Errorf("routes do not use the local selector address as source:\n%s", routes)
	}
	var c net.Conn
	a.ns.In(t, func() (err error) {
		c, err = net.Dial("udp4", "10.30.0.5:9")
		return err
	})
	defer c.Close()
	for range 5 {
		c.Write([]byte("hello"))
	}
	ev := waitEvent(t, a, datapath.EventAcquire)
	if ev.ReqID != 99 || ev.Selector != pol.Selector {
		t.Fatalf("acquire %+v, want reqid 99 selector %+v", ev, pol.Selector)
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case ev := <-a.events:
		t.Fatalf("second event %+v within the acquire interval", ev)
	default:
	}
	if n := a.dp.Drops(DropNoSA); n != 5 {
		t.Errorf("no-SA drops %d, want 5", n)
	}

	if err := a.dp.DeletePolicy(ctx, pol); err != nil {
		t.Fatal(err)
	}
	if routes := a.ns.Exec(t, "ip", "route", "show", "table", "220"); strings.Contains(routes, "10.30.0.0") {
		t.Fatalf("DeletePolicy left its route:\n%s", routes)
	}
	if err := a.dp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if out, err := a.ns.Command("ip", "link", "show", "espgw0").CombinedOutput(); err == nil {
		t.Errorf("TUN still exists after Close:\n%s", out)
	}
	if routes := a.ns.Exec(t, "ip", "route", "show", "table", "220"); strings.TrimSpace(routes) != "" {
		t.Errorf("routes left in table 220:\n%s", routes)
	}
	if rules := a.ns.Exec(t, "ip", "rule"); strings.Contains(rules, "lookup 220") {
		t.Errorf("rule left:\n%s", rules)
	}
}

// TestAddPolicies installs a batch in which two policies are bad: they alone fail, the
// others are routed (from the local selector's address) and in the SPD.
func TestAddPolicies(t *testing.T) {
	a, _ := lab(t)
	ctx := context.Background()
	udp := udpPolicy
	whole := datapath.Policy{Selector: selA, ReqID: 1, TunnelLocal: outerA, TunnelRemote: outerB}
	noRemote := datapath.Policy{Selector: datapath.Selector{Local: selA.Local}, ReqID: 2}
	errs := a.dp.AddPolicies(ctx, []datapath.Policy{udp, noRemote, udp, whole})
	for i, want := range []string{"", "remote selector", "already installed", ""} {
		if got := fmt.Sprint(errs[i]); (want == "") != (errs[i] == nil) || !strings.Contains(got, want) {
			t.Errorf("policy %d: error %v, want %q", i, errs[i], want)
		}
	}
	routes := a.ns.Exec(t, "ip", "route", "show", "table", "220")
	for _, want := range []string{"10.30.0.0/24 dev espgw0 scope link src 10.10.1.1", "10.20.0.0/24 dev espgw0 scope link src 10.10.1.1"} {
		if !strings.Contains(routes, want) {
			t.Errorf("table 220 lacks %q:\n%s", want, routes)
		}
	}
	if err := a.dp.AddPolicy(ctx, whole); err == nil || !strings.Contains(err.Error(), "already installed") {
		t.Errorf("AddPolicy of a policy the batch installed: %v, want already installed", err)
	}
	if got := len(*a.dp.spd.Load()); got != 2 {
		t.Errorf("SPD holds %d policies, want 2", got)
	}
}
