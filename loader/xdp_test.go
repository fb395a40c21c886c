package loader

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/loader/pkttest"
)

func espFrame(src string, spi uint32, payload int) []byte {
	l4 := make([]byte, 8+payload)
	binary.BigEndian.PutUint32(l4, spi)
	binary.BigEndian.PutUint32(l4[4:], 1)
	return (pkttest.IPv4{Src: addr(src), Dst: addr("192.0.2.1"), Proto: pkttest.ProtoESP}).Frame(l4)
}

func udpFrame(src string, sport, dport uint16, payload []byte) []byte {
	return (pkttest.IPv4{Src: addr(src), Dst: addr("192.0.2.1"), Proto: pkttest.ProtoUDP}).Frame(pkttest.UDP(sport, dport, payload))
}

func TestXDPProgram(t *testing.T) {
	l := openLoader(t, Options{})
	const known = 0xc0de0001
	if err := l.AddSA(Inbound, known); err != nil {
		t.Fatal(err)
	}
	if err := l.SetPeers([]netip.Addr{addr("198.51.100.2")}); err != nil {
		t.Fatal(err)
	}
	prog := l.Programs().XDP

	espInUDP := func(src string, spi uint32) []byte {
		p := make([]byte, 16)
		binary.BigEndian.PutUint32(p, spi)
		return udpFrame(src, 4500, 4500, p)
	}
	ike := append(make([]byte, 4), bytes.Repeat([]byte{0xab}, 28)...)
	laterFrag := (pkttest.IPv4{Src: addr("203.0.113.9"), Dst: addr("192.0.2.1"), Proto: pkttest.ProtoESP, FragOffset: 10}).Frame(make([]byte, 16))
	arp := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06}, make([]byte, 28)...)

	tests := []struct {
		name     string
		filters  XDPFilters
		in       []byte
		ret      uint32
		sa       Counter // known SA delta
		counters XDPCounters
	}{
		{name: "ESP known SPI", in: espFrame("203.0.113.9", known, 100), ret: xdpPass, sa: Counter{1, 128}},
		{name: "ESP unknown SPI", in: espFrame("203.0.113.9", 0x1234, 100), ret: xdpDrop, counters: XDPCounters{UnknownSPIDrops: 1}},
		{name: "ESP unknown SPI, filter off", filters: XDPFilters{PassUnknownSPI: true}, in: espFrame("203.0.113.9", 0x1234, 100), ret: xdpPass, counters: XDPCounters{UnknownSPIPasses: 1}},
		{name: "ESP in UDP known SPI", in: espInUDP("203.0.113.9", known), ret: xdpPass, sa: Counter{1, 44}},
		{name: "ESP in UDP unknown SPI", in: espInUDP("198.51.100.2", 0x99), ret: xdpDrop, counters: XDPCounters{UnknownSPIDrops: 1}},
		{name: "IKE 500 from peer", in: udpFrame("198.51.100.2", 500, 500, ike), ret: xdpPass},
		{name: "IKE 500 from stranger", in: udpFrame("203.0.113.9", 500, 500, ike), ret: xdpDrop, counters: XDPCounters{NonPeerDrops: 1}},
		{name: "IKE 500 from stranger, filter off", filters: XDPFilters{PassNonPeer: true}, in: udpFrame("203.0.113.9", 500, 500, ike), ret: xdpPass, counters: XDPCounters{NonPeerPasses: 1}},
		{name: "IKE 4500 marker from peer", in: udpFrame("198.51.100.2", 4500, 4500, ike), ret: xdpPass},
		{name: "IKE 4500 marker from stranger", in: udpFrame("203.0.113.9", 31000, 4500, ike), ret: xdpDrop, counters: XDPCounters{NonPeerDrops: 1}},
		{name: "NAT keepalive from stranger", in: udpFrame("203.0.113.9", 31000, 4500, []byte{0xff}), ret: xdpDrop, counters: XDPCounters{NonPeerDrops: 1}},
		{name: "NAT keepalive from peer", in: udpFrame("198.51.100.2", 31000, 4500, []byte{0xff}), ret: xdpPass},
		{name: "4500 payload too short", in: udpFrame("203.0.113.9", 4500, 4500, []byte{1, 2}), ret: xdpPass},
		{name: "ESP truncated", in: espFrame("203.0.113.9", known, 0)[:pkttest.EthLen+pkttest.IPv4Len+3], ret: xdpPass},
		{name: "ESP later fragment", in: laterFrag, ret: xdpPass},
		{name: "other UDP", in: udpFrame("203.0.113.9", 53, 53, []byte("dns")), ret: xdpPass},
		{name: "TCP", in: tcpFrame("203.0.113.9", "192.0.2.1", 1, 500, pkttest.SYN, nil, nil), ret: xdpPass},
		{name: "ARP", in: arp, ret: xdpPass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := l.SetXDPFilters(tt.filters); err != nil {
				t.Fatal(err)
			}
			beforeSA, _ := l.SACounters(Inbound)
			before, _ := l.XDPCounters()
			ret, out := run(t, prog, tt.in)
			if ret != tt.ret {
				t.Errorf("verdict %d, want %d", ret, tt.ret)
			}
			if !bytes.Equal(out, tt.in) {
				t.Errorf("XDP changed the packet:\n%x\nwant\n%x", out, tt.in)
			}
			afterSA, _ := l.SACounters(Inbound)
			if got := (Counter{afterSA[known].Packets - beforeSA[known].Packets, afterSA[known].Bytes - beforeSA[known].Bytes}); got != tt.sa {
				t.Errorf("SA counters moved by %+v, want %+v", got, tt.sa)
			}
			if len(afterSA) != 1 {
				t.Errorf("%d inbound SAs, want 1 (XDP must not add SPIs)", len(afterSA))
			}
			after, _ := l.XDPCounters()
			got := XDPCounters{
				UnknownSPIDrops:  after.UnknownSPIDrops - before.UnknownSPIDrops,
				UnknownSPIPasses: after.UnknownSPIPasses - before.UnknownSPIPasses,
				NonPeerDrops:     after.NonPeerDrops - before.NonPeerDrops,
				NonPeerPasses:    after.NonPeerPasses - before.NonPeerPasses,
			}
			if got != tt.counters {
				t.Errorf("XDP counters moved by %+v, want %+v", got, tt.counters)
			}
		})
	}
}

// TestCountersSumAcrossCPUs runs the programs pinned to each CPU in turn and checks that the
// readers add up the per-CPU values.
func TestCountersSumAcrossCPUs(t *testing.T) {
	l := openLoader(t, Options{})
	setupPolicies(t, l)
	if err := l.AddSA(Inbound, 0xc0de0001); err != nil {
		t.Fatal(err)
	}
	cpus := runtime.NumCPU()
	if cpus < 2 {
		testutil.NotApplicable(t, "one CPU: the test sums per-CPU counters across CPUs")
	}
	data := tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.ACK, nil, []byte("data"))
	esp := espFrame("203.0.113.9", 0xc0de0001, 10)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		t.Fatal(err)
	}
	defer unix.SchedSetaffinity(0, &orig)
	want := 0
	for cpu := 0; cpu < cpus; cpu++ {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			t.Fatalf("pin to CPU %d: %v", cpu, err)
		}
		for i := 0; i <= cpu; i++ { // a different count per CPU
			run(t, l.Programs().TCEgress, data)
			run(t, l.Programs().XDP, esp)
			want++
		}
	}

	var perCPU []tcPolicyCounters
	if err := l.tc.PolicyStats.Lookup(uint32(l.policies.slots[7]), &perCPU); err != nil {
		t.Fatal(err)
	}
	for cpu := 0; cpu < cpus; cpu++ {
		if perCPU[cpu].Out.Packets != uint64(cpu+1) {
			t.Errorf("CPU %d counted %d packets, want %d", cpu, perCPU[cpu].Out.Packets, cpu+1)
		}
	}
	pc, _ := l.PolicyCounters()
	if got := pc[7].Out; got != (Counter{uint64(want), uint64(want) * l3len(data)}) {
		t.Errorf("policy 7 out = %+v, want %d packets", got, want)
	}
	in, _ := l.SACounters(Inbound)
	if got := in[0xc0de0001]; got != (Counter{uint64(want), uint64(want) * l3len(esp)}) {
		t.Errorf("inbound SA = %+v, want %d packets", got, want)
	}
	flows, _ := l.TopFlows(1)
	if len(flows) != 1 || flows[0].Packets != uint64(want) || flows[0].PolicyID != 7 {
		t.Errorf("TopFlows(1) = %+v, want one flow of policy 7 with %d packets", flows, want)
	}
}
