package userspace

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/userspace/tuntest"
)

// Whole tunnels in memory: two datapaths over channel TUNs (tuntest) and a bindtest pair,
// no root, devices or namespaces. TestInMemoryRunsUnprivileged runs them as user nobody.
// Every TestInMemory* test must stay runnable that way.

// memGateway is one end: a channel TUN, one side of a Bind pair and a datapath.
type memGateway struct {
	tun  *tuntest.TUN
	bind *bindtest.Bind
	dp   *Datapath
	wire *wireLog // the ESP this end sent
}

// wireLog records the ESP packets a Bind sends and can hold some back, as a network that
// delays or loses them.
type wireLog struct {
	mu   sync.Mutex
	sent [][]byte
	hold func(pkt []byte) bool
}

func (w *wireLog) filter(msg []byte, local, remote netip.AddrPort, isIKE bool) bool {
	if isIKE {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sent = append(w.sent, bytes.Clone(msg))
	return w.hold == nil || !w.hold(msg)
}

// packets returns the ESP packets sent so far.
func (w *wireLog) packets() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.sent...)
}

func (w *wireLog) setHold(f func(pkt []byte) bool) {
	w.mu.Lock()
	w.hold = f
	w.mu.Unlock()
}

// memLab connects two in-memory gateways A (outerA) and B (outerB).
func memLab(t testing.TB) (a, b *memGateway) {
	t.Helper()
	return memLabSwitch(t, 0, 0)
}

// memLabSwitch is memLab with the gateways' Options.SwitchTimeout (0: the default).
func memLabSwitch(t testing.TB, switchA, switchB time.Duration) (a, b *memGateway) {
	t.Helper()
	noLeaks(t)
	ba, bb := bindtest.NewPair()
	gws := []*memGateway{{bind: ba}, {bind: bb}}
	for i, g := range gws {
		g.tun = tuntest.New(fmt.Sprintf("mem%c", 'a'+i), 256)
		g.wire = &wireLog{}
		g.bind.SetFilter(g.wire.filter)
		dp, err := New(Options{Bind: g.bind, TUN: g.tun, LifetimeInterval: 10 * time.Millisecond,
			SwitchTimeout: []time.Duration{switchA, switchB}[i]})
		if err != nil {
			t.Fatalf("New with a channel TUN: %v", err)
		}
		g.dp = dp
		t.Cleanup(func() {
			if err := dp.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			g.bind.Close()
		})
	}
	return gws[0], gws[1]
}

// noLeaks fails the test if goroutines it started outlive it, as wireguard-go's device
// tests check: Close must stop every loop, also over an injected TUN. Register it first,
// so that its cleanup runs last.
func noLeaks(t testing.TB) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
				return
			}
		}
	})
}

// memTunnel installs one tunnel (ESP in UDP) on both ends: A's selector sel, SPIs spiAB for
// A→B and spiBA for B→A.
func memTunnel(t testing.TB, a, b *memGateway, tr transform, spiAB, spiBA, reqid uint32, sel datapath.Selector) (pa, pb datapath.SAPair) {
	t.Helper()
	pa, pb = tunnelPairs(tr, true, spiAB, spiBA, reqid, sel)
	addPairs(t, a, b, pa, pb)
	for _, g := range []struct {
		gw *memGateway
		p  datapath.SAPair
	}{{a, pa}, {b, pb}} {
		pol := datapath.Policy{Selector: g.p.Out.Selectors[0], TunnelLocal: g.p.Out.Src, TunnelRemote: g.p.Out.Dst, ReqID: reqid}
		if err := g.gw.dp.AddPolicy(context.Background(), pol); err != nil {
			t.Fatal(err)
		}
	}
	return pa, pb
}

func addPairs(t testing.TB, a, b *memGateway, pa, pb datapath.SAPair) {
	t.Helper()
	if err := a.dp.AddSAPair(context.Background(), pa); err != nil {
		t.Fatal(err)
	}
	if err := b.dp.AddSAPair(context.Background(), pb); err != nil {
		t.Fatal(err)
	}
}

// udpPacket is an IPv4 or IPv6 UDP packet from src to dst carrying payload.
func udpPacket(src, dst netip.Addr, payload []byte) []byte {
	ipLen := 20
	if src.Is6() {
		ipLen = 40
	}
	p := make([]byte, ipLen+8+len(payload))
	u := p[ipLen:]
	binary.BigEndian.PutUint16(u[0:], 40000)
	binary.BigEndian.PutUint16(u[2:], 5001)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	if src.Is6() {
		p[0] = 0x60
		binary.BigEndian.PutUint16(p[4:], uint16(len(u)))
		p[6], p[7] = protoUDP, 64
		s, d := src.As16(), dst.As16()
		copy(p[8:], s[:])
		copy(p[24:], d[:])
		binary.BigEndian.PutUint16(u[6:], ^pseudoHeaderSum(p, true, protoUDP, len(u)))
		return p
	}
	p[0], p[8], p[9] = 0x45, 64, protoUDP
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	setIPv4Checksum(p[:20])
	return p
}

// recvPacket returns the next packet g's host receives from the tunnel.
func recvPacket(t testing.TB, g *memGateway) []byte {
	t.Helper()
	select {
	case p := <-g.tun.Received():
		return p
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no packet out of the tunnel within 5 s", g.tun.Name())
		return nil
	}
}

// through sends pkt into from's TUN and checks that it is the next packet out of to's.
func through(t *testing.T, from, to *memGateway, pkt []byte) {
	t.Helper()
	from.tun.Send(pkt)
	if got := recvPacket(t, to); !bytes.Equal(got, pkt) {
		t.Fatalf("%s received %x, want %x", to.tun.Name(), got, pkt)
	}
}

func spiOf(esp []byte) uint32 { return binary.BigEndian.Uint32(esp) }

func wantCounters(t *testing.T, g *memGateway, dst netip.Addr, spi uint32, packets, replays uint64) {
	t.Helper()
	c, err := g.dp.Counters(dst, spi)
	if err != nil || c.Packets != packets || c.ReplayDrops != replays || c.AuthFailures != 0 {
		t.Errorf("%s SA %#x: counters %+v, %v; want %d packets, %d replay drops", g.tun.Name(), spi, c, err, packets, replays)
	}
}

func wantDrops(t *testing.T, g *memGateway, want map[DropReason]uint64) {
	t.Helper()
	for r := range numDropReasons {
		if n := g.dp.Drops(r); n != want[r] {
			t.Errorf("%s drops[%v] = %d, want %d", g.tun.Name(), r, n, want[r])
		}
	}
}

var (
	gcm128     = transform{"aes128gcm16", datapath.EncAESGCM16, 20, datapath.IntegNone, 0}
	tdesSHA1   = transform{"3des-sha1", datapath.Enc3DESCBC, 24, datapath.IntegHMACSHA1_96, 20}
	aes256SHA2 = transform{"aes256-sha256", datapath.EncAESCBC, 32, datapath.IntegHMACSHA256_128, 32}
)

// TestInMemoryTunnels runs three tunnels (two IPv4, one IPv6 inside, three transforms) in
// both directions at once and checks every packet arrives unchanged at the right host, on
// the wire under its tunnel's SPI, and is counted on both SAs.
func TestInMemoryTunnels(t *testing.T) {
	a, b := memLab(t)
	tunnels := []struct {
		tr           transform
		spiAB, spiBA uint32
		sel          datapath.Selector
		hostA, hostB netip.Addr
	}{
		{gcm128, 0x1001, 0x2001, datapath.Selector{Local: netip.MustParsePrefix("10.10.1.0/24"), Remote: netip.MustParsePrefix("10.20.1.0/24")},
			netip.MustParseAddr("10.10.1.5"), netip.MustParseAddr("10.20.1.7")},
		{tdesSHA1, 0x1002, 0x2002, datapath.Selector{Local: netip.MustParsePrefix("10.10.2.0/24"), Remote: netip.MustParsePrefix("10.20.2.0/24")},
			netip.MustParseAddr("10.10.2.5"), netip.MustParseAddr("10.20.2.7")},
		{aes256SHA2, 0x1003, 0x2003, datapath.Selector{Local: netip.MustParsePrefix("fd00:a::/64"), Remote: netip.MustParsePrefix("fd00:b::/64")},
			netip.MustParseAddr("fd00:a::5"), netip.MustParseAddr("fd00:b::7")},
	}
	for i, tn := range tunnels {
		memTunnel(t, a, b, tn.tr, tn.spiAB, tn.spiBA, uint32(i+1), tn.sel)
	}
	const n = 40 // per tunnel and direction: more than one TUN batch and Bind batch
	var toB, toA [][]byte
	for k := range n {
		for i, tn := range tunnels {
			payload := fmt.Appendf(nil, "tunnel %d packet %d %s", i, k, bytes.Repeat([]byte{byte(k)}, k*17))
			toB = append(toB, udpPacket(tn.hostA, tn.hostB, payload))
			toA = append(toA, udpPacket(tn.hostB, tn.hostA, payload))
		}
	}
	var wg sync.WaitGroup
	for _, s := range []struct {
		g    *memGateway
		pkts [][]byte
	}{{a, toB}, {b, toA}} {
		wg.Go(func() {
			for _, p := range s.pkts {
				s.g.tun.Send(p)
			}
		})
	}
	for _, r := range []struct {
		g    *memGateway
		want [][]byte
	}{{b, toB}, {a, toA}} {
		for k, want := range r.want { // one sender and one receiver per direction: in order
			if got := recvPacket(t, r.g); !bytes.Equal(got, want) {
				t.Fatalf("%s packet %d: got %x, want %x", r.g.tun.Name(), k, got, want)
			}
		}
	}
	wg.Wait()

	for i, tn := range tunnels {
		wantCounters(t, a, outerB, tn.spiAB, n, 0)
		wantCounters(t, b, outerB, tn.spiAB, n, 0)
		wantCounters(t, b, outerA, tn.spiBA, n, 0)
		wantCounters(t, a, outerA, tn.spiBA, n, 0)
		for _, w := range []struct {
			g   *memGateway
			spi uint32
		}{{a, tn.spiAB}, {b, tn.spiBA}} {
			count := 0
			for _, p := range w.g.wire.packets() {
				if spiOf(p) == w.spi {
					count++
				}
			}
			if count != n {
				t.Errorf("tunnel %d: %d ESP packets with SPI %#x on the wire, want %d", i, count, w.spi, n)
			}
		}
	}
	if got, want := len(a.wire.packets())+len(b.wire.packets()), 2*n*len(tunnels); got != want {
		t.Errorf("%d ESP packets on the wire, want %d", got, want)
	}
	wantDrops(t, a, nil)
	wantDrops(t, b, nil)
}

// TestInMemoryReplay delays one packet, delivers it late (inside the window: accepted),
// then replays everything: each copy is dropped and counted, and none reaches the host.
func TestInMemoryReplay(t *testing.T) {
	a, b := memLab(t)
	memTunnel(t, a, b, aes256SHA2, 0x1001, 0x2001, 1, selA)
	pkts := make([][]byte, 5)
	for i := range pkts {
		pkts[i] = udpPacket(hostA, hostB, fmt.Appendf(nil, "packet %d", i))
	}
	a.wire.setHold(func([]byte) bool { return true })
	a.tun.Send(pkts[0])
	for len(a.wire.packets()) == 0 { // sealed and held
		time.Sleep(time.Millisecond)
	}
	a.wire.setHold(nil)
	for _, p := range pkts[1:] {
		through(t, a, b, p)
	}
	esp := a.wire.packets()
	local, remote := netip.AddrPortFrom(outerA, conn.NATTPort), netip.AddrPortFrom(outerB, conn.NATTPort)
	if err := a.bind.SendESP(esp[0], local, remote); err != nil { // late, sequence number 1
		t.Fatal(err)
	}
	if got := recvPacket(t, b); !bytes.Equal(got, pkts[0]) {
		t.Fatalf("late packet: got %x, want %x", got, pkts[0])
	}
	if err := a.bind.SendESPBatch(esp, local, remote); err != nil { // every one again
		t.Fatal(err)
	}
	through(t, a, b, udpPacket(hostA, hostB, []byte("after the replays"))) // first out: nothing replayed came through
	wantCounters(t, b, outerB, 0x1001, 6, 5)
	wantDrops(t, b, map[DropReason]uint64{DropReplay: 5})
}

// TestInMemorySelectorDrops checks both ends of RFC 4301's selector rules: outbound, a
// packet no policy covers is dropped and one whose policy has no SA asks for it; inbound, a
// packet the SA's selector does not allow is dropped after decryption, even though the
// sender's broader policy sealed it.
func TestInMemorySelectorDrops(t *testing.T) {
	a, b := memLab(t)
	wide := datapath.Selector{Local: netip.MustParsePrefix("10.10.0.0/16"), Remote: netip.MustParsePrefix("10.20.0.0/16")}
	pa, pb := tunnelPairs(gcm128, true, 0x1001, 0x2001, 1, wide)
	pb.In.Selectors = []datapath.Selector{selB} // B admits only 10.10.1.1 -> 10.20.0.0/24
	addPairs(t, a, b, pa, pb)
	ctx := context.Background()
	if err := a.dp.AddPolicy(ctx, datapath.Policy{Selector: wide, ReqID: 1, TunnelLocal: outerA, TunnelRemote: outerB}); err != nil {
		t.Fatal(err)
	}
	noSA := datapath.Policy{Selector: datapath.Selector{Local: wide.Local, Remote: netip.MustParsePrefix("10.30.0.0/24"), Proto: protoUDP}, ReqID: 9, TunnelLocal: outerA, TunnelRemote: outerB}
	if err := a.dp.AddPolicy(ctx, noSA); err != nil {
		t.Fatal(err)
	}

	a.tun.Send(udpPacket(hostA, netip.MustParseAddr("10.99.0.1"), []byte("no policy")))
	a.tun.Send(udpPacket(hostA, netip.MustParseAddr("10.30.0.1"), []byte("policy without SA")))
	a.tun.Send(udpPacket(hostA, netip.MustParseAddr("10.30.0.2"), []byte("policy without SA")))
	a.tun.Send([]byte{0x50, 1, 2, 3}) // neither IPv4 nor IPv6
	a.tun.Send(udpPacket(netip.MustParseAddr("10.10.9.9"), hostB, []byte("source outside B's selector")))
	a.tun.Send(udpPacket(hostA, netip.MustParseAddr("10.20.1.1"), []byte("destination outside B's selector")))
	through(t, a, b, udpPacket(hostA, hostB, []byte("inside"))) // first out: A handled the others before

	select {
	case ev := <-a.dp.Events():
		if ev.Kind != datapath.EventAcquire || ev.ReqID != 9 || ev.Selector != noSA.Selector ||
			ev.PacketSrc != hostA || ev.PacketDst != netip.MustParseAddr("10.30.0.1") {
			t.Errorf("event %+v, want an acquire for reqid 9 selector %+v, packet %v -> 10.30.0.1", ev, noSA.Selector, hostA)
		}
	default:
		t.Error("no acquire event for the policy without an SA")
	}
	select {
	case ev := <-a.dp.Events():
		t.Errorf("second event %+v: acquires are rate-limited per policy", ev)
	default:
	}
	wantDrops(t, a, map[DropReason]uint64{DropNoPolicy: 1, DropNoSA: 2, DropMalformed: 1})
	wantDrops(t, b, map[DropReason]uint64{DropSelector: 2})
	if got := len(a.wire.packets()); got != 3 {
		t.Errorf("%d ESP packets on the wire, want 3: the two B refuses and the one inside", got)
	}
	wantCounters(t, b, outerB, 0x1001, 3, 0) // decrypted, then refused by the selector
}

// TestInMemoryLifetime runs an inbound SA through its byte lifetime: one soft-expire event
// (the engine rekeys), then a hard-expire event, after which the SA is gone and its
// packets are unknown.
func TestInMemoryLifetime(t *testing.T) {
	a, b := memLab(t)
	pa, pb := tunnelPairs(gcm128, true, 0x1001, 0x2001, 1, selA)
	pb.In.Lifetime = datapath.Lifetime{SoftBytes: 1000, HardBytes: 3000}
	addPairs(t, a, b, pa, pb)
	if err := a.dp.AddPolicy(context.Background(), datapath.Policy{Selector: selA, ReqID: 1, TunnelLocal: outerA, TunnelRemote: outerB}); err != nil {
		t.Fatal(err)
	}
	next := func(kind datapath.EventKind) {
		t.Helper()
		select {
		case ev := <-b.dp.Events():
			if ev.Kind != kind || ev.SPI != 0x1001 || ev.Dst != outerB || ev.ReqID != 1 {
				t.Fatalf("event %+v, want kind %d for SPI 0x1001 dst %v reqid 1", ev, kind, outerB)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event of kind %d within 5 s", kind)
		}
	}
	pkt := udpPacket(hostA, hostB, make([]byte, 472)) // 500 bytes
	for range 2 {
		through(t, a, b, pkt)
	}
	next(datapath.EventSoftExpire)
	for range 4 {
		through(t, a, b, pkt)
	}
	next(datapath.EventHardExpire)
	if _, err := b.dp.Counters(outerB, 0x1001); !errors.Is(err, ErrNoSA) {
		t.Fatalf("Counters after the hard expiry: %v, want ErrNoSA", err)
	}
	a.tun.Send(pkt)
	for b.dp.Drops(DropUnknownSPI) == 0 {
		time.Sleep(time.Millisecond)
	}
	select {
	case ev := <-b.dp.Events():
		t.Errorf("event %+v after the hard expiry, want none: soft and hard are raised once", ev)
	default:
	}
}

// TestInMemorySeveralSelectors: one SA pair carries every (local, remote) combination of a
// tunnel with two subnets per side, each steered by its own policy with the tunnel's reqid.
// B's SAs carry three of A's four combinations (its child SA was narrowed): the fourth,
// sealed by A, is dropped by B after decryption, and a packet of it that B's policy covers
// but its SA does not is dropped before it is sealed.
func TestInMemorySeveralSelectors(t *testing.T) {
	a, b := memLab(t)
	pfx := netip.MustParsePrefix
	var combos []datapath.Selector // A's view
	for _, l := range []string{"10.10.1.0/24", "10.11.0.0/24"} {
		for _, r := range []string{"10.20.0.0/24", "10.21.0.0/24"} {
			combos = append(combos, datapath.Selector{Local: pfx(l), Remote: pfx(r)})
		}
	}
	mirror := func(s datapath.Selector) datapath.Selector {
		return datapath.Selector{Local: s.Remote, Remote: s.Local}
	}
	pa, pb := tunnelPairs(gcm128, true, 0x1001, 0x2001, 1, combos[0])
	pa.In.Selectors, pa.Out.Selectors = combos, combos
	var atB []datapath.Selector // B's view, without the last combination
	for _, s := range combos[:3] {
		atB = append(atB, mirror(s))
	}
	pb.In.Selectors, pb.Out.Selectors = atB, atB
	addPairs(t, a, b, pa, pb)
	ctx := context.Background()
	for _, s := range combos {
		if err := a.dp.AddPolicy(ctx, datapath.Policy{Selector: s, ReqID: 1, TunnelLocal: outerA, TunnelRemote: outerB}); err != nil {
			t.Fatal(err)
		}
		if err := b.dp.AddPolicy(ctx, datapath.Policy{Selector: mirror(s), ReqID: 1, TunnelLocal: outerB, TunnelRemote: outerA}); err != nil {
			t.Fatal(err)
		}
	}
	host := func(p netip.Prefix) netip.Addr { return p.Addr().Next() }
	for _, s := range combos[:3] {
		through(t, a, b, udpPacket(host(s.Local), host(s.Remote), []byte("A to B")))
		through(t, b, a, udpPacket(host(s.Remote), host(s.Local), []byte("B to A")))
	}
	last := combos[3]
	a.tun.Send(udpPacket(host(last.Local), host(last.Remote), []byte("outside B's SA")))
	b.tun.Send(udpPacket(host(last.Remote), host(last.Local), []byte("outside B's SA")))
	// Each end handles its packets in order: once these are through, so are the two above.
	through(t, a, b, udpPacket(host(combos[0].Local), host(combos[0].Remote), []byte("still in")))
	through(t, b, a, udpPacket(host(combos[0].Remote), host(combos[0].Local), []byte("still in")))
	wantDrops(t, a, nil)
	wantDrops(t, b, map[DropReason]uint64{DropSelector: 2})
	if na, nb := len(a.wire.packets()), len(b.wire.packets()); na != 5 || nb != 4 {
		t.Errorf("ESP sent: A %d, B %d; want 5 (all A's SA carries) and 4 (not the one outside B's SA)", na, nb)
	}
	wantCounters(t, b, outerB, 0x1001, 5, 0)
}
