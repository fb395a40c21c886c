package loader

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/loader/pkttest"
)

// Verdicts (linux/pkt_cls.h, linux/bpf.h).
const (
	tcOK    = 0
	tcShot  = 2
	xdpDrop = 1
	xdpPass = 2
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// testPolicies cover overlap with priorities, port selectors, and both SA-down actions.
var testPolicies = []Policy{
	{ID: 7, Selector: datapath.Selector{Local: pfx("10.1.0.0/16"), Remote: pfx("10.2.0.0/16")},
		Priority: 100, SAUp: true, OutSPI: 0xc0de0007, MSS: 1300},
	{ID: 10, Selector: datapath.Selector{Local: pfx("10.1.5.0/24"), Remote: pfx("10.2.0.0/16"), Proto: 17},
		Priority: 10, SAUp: true, OutSPI: 0xc0de000a},
	{ID: 8, Selector: datapath.Selector{Local: pfx("10.1.0.0/16"), Remote: pfx("10.3.0.0/24"), Proto: 6, RemotePort: 443},
		Priority: 100, MSS: 1300},
	{ID: 9, Selector: datapath.Selector{Local: pfx("10.1.0.0/16"), Remote: pfx("10.4.0.0/16")},
		Priority: 100, WhenDown: ActionPass},
}

func setupPolicies(t *testing.T, l *Loader) {
	t.Helper()
	for _, p := range testPolicies {
		if err := l.SetPolicy(p); err != nil {
			t.Fatalf("SetPolicy(%d): %v", p.ID, err)
		}
		if p.OutSPI != 0 {
			if err := l.AddSA(Outbound, p.OutSPI); err != nil {
				t.Fatalf("AddSA: %v", err)
			}
		}
	}
}

func tcpFrame(src, dst string, sport, dport uint16, flags uint8, opts, payload []byte) []byte {
	h := pkttest.IPv4{Src: addr(src), Dst: addr(dst), Proto: pkttest.ProtoTCP}
	return h.Frame(pkttest.TCP(sport, dport, flags, opts, payload))
}

func withIPOptions(src, dst string, opts []byte, mss uint16) []byte {
	h := pkttest.IPv4{Src: addr(src), Dst: addr(dst), Proto: pkttest.ProtoTCP, Options: []byte{7, 7, 4, 0, 0, 0, 0, 0}}
	return h.Frame(pkttest.TCP(40000, 80, pkttest.SYN, append(opts, pkttest.MSS(mss)...), nil))
}

func fragment(src, dst string, off uint16, more bool, l4 []byte) []byte {
	h := pkttest.IPv4{Src: addr(src), Dst: addr(dst), Proto: pkttest.ProtoTCP, FragOffset: off, MoreFrags: more}
	return h.Frame(l4)
}

func l3len(frame []byte) uint64 { return uint64(len(frame) - pkttest.EthLen) }

func TestTCPrograms(t *testing.T) {
	l := openLoader(t, Options{EventInterval: time.Hour})
	setupPolicies(t, l)
	progs := l.Programs()

	nop := []byte{1}
	ts := []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0}
	synEven := tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.SYN, pkttest.MSS(1460), nil)
	synOdd := tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.SYN, append(nop, pkttest.MSS(1460)...), nil)
	synAfterTS := tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.SYN, append(ts, pkttest.MSS(9000)...), nil)
	truncatedOpts := synEven[:len(synEven)-2]
	// Super-packets as the TUN hands them over; BPF_PROG_TEST_RUN takes at most a page of
	// data, so the frame holds one segment's payload and the context says how many.
	bulk := tcpFrame("10.1.0.1", "10.2.0.1", 40002, 80, pkttest.ACK, nil, make([]byte, 1400))
	bulkIn := tcpFrame("10.2.0.1", "10.1.0.1", 80, 40003, pkttest.ACK, nil, make([]byte, 1400))
	badLen := tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.SYN, []byte{2, 3, 5, 0xb4}, nil)
	eolFirst := tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.SYN, append([]byte{0}, pkttest.MSS(1460)...), nil)
	synToDown := tcpFrame("10.1.0.1", "10.3.0.9", 40001, 443, pkttest.SYN, pkttest.MSS(1460), nil)
	udpToPass := (pkttest.IPv4{Src: addr("10.1.0.1"), Dst: addr("10.4.0.1"), Proto: pkttest.ProtoUDP}).Frame(pkttest.UDP(5000, 53, []byte("q")))
	udpPrio := (pkttest.IPv4{Src: addr("10.1.5.1"), Dst: addr("10.2.0.1"), Proto: pkttest.ProtoUDP}).Frame(pkttest.UDP(5000, 53, []byte("hello")))
	icmp := (pkttest.IPv4{Src: addr("10.1.0.1"), Dst: addr("10.2.0.1"), Proto: pkttest.ProtoICMP}).Frame([]byte{8, 0, 0xf7, 0xff, 0, 0, 0, 0})
	synFrag := fragment("10.1.0.1", "10.2.0.1", 0, true, pkttest.TCP(40000, 80, pkttest.SYN, pkttest.MSS(1460), nil))
	laterFrag := fragment("10.1.0.1", "10.2.0.1", 3, false, []byte("0123456789abcdef"))
	laterFragDown := fragment("10.1.0.1", "10.3.0.9", 3, false, []byte("0123456789abcdef"))
	ipOptsTruncated := append([]byte(nil), synEven[:pkttest.EthLen+40]...)
	ipOptsTruncated[pkttest.EthLen] = 0x4f // IHL 15: 60 bytes of header, 40 present
	truncatedL4 := fragment("10.1.0.1", "10.2.0.1", 0, false, []byte{0x9c, 0x40})

	type counts map[uint32]PolicyCounters
	tests := []struct {
		name    string
		prog    *ebpf.Program
		in      []byte
		ret     uint32
		out     []byte // nil: unchanged
		policy  counts
		saOut   map[uint32]Counter
		event   *Event
		flowsUp int    // new flows
		segs    uint32 // GSO segments of the packet (0: not a super-packet)
	}{
		{name: "SYN MSS even offset", prog: progs.TCEgress, in: synEven,
			out:    tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.SYN, pkttest.MSS(1300), nil),
			policy: counts{7: {Out: Counter{1, l3len(synEven)}, MSSRewrites: 1}},
			saOut:  map[uint32]Counter{0xc0de0007: {1, l3len(synEven)}}, flowsUp: 1},
		{name: "SYN MSS odd offset", prog: progs.TCEgress, in: synOdd,
			out:    tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.SYN, append(nop, pkttest.MSS(1300)...), nil),
			policy: counts{7: {Out: Counter{1, l3len(synOdd)}, MSSRewrites: 1}},
			saOut:  map[uint32]Counter{0xc0de0007: {1, l3len(synOdd)}}},
		{name: "SYN MSS after timestamps", prog: progs.TCEgress, in: synAfterTS,
			out:    tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.SYN, append(ts, pkttest.MSS(1300)...), nil),
			policy: counts{7: {Out: Counter{1, l3len(synAfterTS)}, MSSRewrites: 1}},
			saOut:  map[uint32]Counter{0xc0de0007: {1, l3len(synAfterTS)}}},
		{name: "SYN MSS odd offset with IP options", prog: progs.TCEgress,
			in:     withIPOptions("10.1.0.1", "10.2.0.1", []byte{1, 1, 1}, 1460),
			out:    withIPOptions("10.1.0.1", "10.2.0.1", []byte{1, 1, 1}, 1300),
			policy: counts{7: {Out: Counter{1, 56}, MSSRewrites: 1}},
			saOut:  map[uint32]Counter{0xc0de0007: {1, 56}}},
		{name: "SYN-ACK ingress", prog: progs.TCIngress,
			in:     tcpFrame("10.2.0.1", "10.1.0.1", 80, 40000, pkttest.SYN|pkttest.ACK, append(nop, pkttest.MSS(1400)...), nil),
			out:    tcpFrame("10.2.0.1", "10.1.0.1", 80, 40000, pkttest.SYN|pkttest.ACK, append(nop, pkttest.MSS(1300)...), nil),
			policy: counts{7: {In: Counter{1, 48}, MSSRewrites: 1}}, flowsUp: 1},
		{name: "SYN MSS below clamp", prog: progs.TCEgress,
			in:     tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.SYN, pkttest.MSS(1200), nil),
			policy: counts{7: {Out: Counter{1, 44}}}, saOut: map[uint32]Counter{0xc0de0007: {1, 44}}},
		{name: "SYN without MSS", prog: progs.TCEgress,
			in:     tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.SYN, ts, nil),
			policy: counts{7: {Out: Counter{1, 52}}}, saOut: map[uint32]Counter{0xc0de0007: {1, 52}}},
		{name: "ACK with MSS-like payload", prog: progs.TCEgress,
			in:     tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.ACK, nil, pkttest.MSS(9000)),
			policy: counts{7: {Out: Counter{1, 44}}}, saOut: map[uint32]Counter{0xc0de0007: {1, 44}}},
		{name: "TSO super-packet counts its segments", prog: progs.TCEgress, in: bulk, segs: 46,
			policy: counts{7: {Out: Counter{46, l3len(bulk)}}}, saOut: map[uint32]Counter{0xc0de0007: {46, l3len(bulk)}}, flowsUp: 1},
		{name: "GRO super-packet counts its segments", prog: progs.TCIngress, in: bulkIn, segs: 46,
			policy: counts{7: {In: Counter{46, l3len(bulkIn)}}}, flowsUp: 1},
		{name: "MSS option with bad length", prog: progs.TCEgress, in: badLen,
			policy: counts{7: {Out: Counter{1, 44}}}, saOut: map[uint32]Counter{0xc0de0007: {1, 44}}},
		{name: "EOL before MSS", prog: progs.TCEgress, in: eolFirst,
			policy: counts{7: {Out: Counter{1, 48}}}, saOut: map[uint32]Counter{0xc0de0007: {1, 48}}},
		{name: "options truncated", prog: progs.TCEgress, in: truncatedOpts,
			policy: counts{7: {Out: Counter{1, 42}}}, saOut: map[uint32]Counter{0xc0de0007: {1, 42}}},
		{name: "first fragment not clamped", prog: progs.TCEgress, in: synFrag,
			policy: counts{7: {Out: Counter{1, 44}}}, saOut: map[uint32]Counter{0xc0de0007: {1, 44}}},
		{name: "later fragment matches any-port policy", prog: progs.TCEgress, in: laterFrag,
			policy: counts{7: {Out: Counter{1, 36}}}, saOut: map[uint32]Counter{0xc0de0007: {1, 36}}, flowsUp: 1},
		{name: "later fragment misses port policy", prog: progs.TCEgress, in: laterFragDown},
		{name: "transport header truncated", prog: progs.TCEgress, in: truncatedL4,
			policy: counts{7: {Out: Counter{1, 22}}}, saOut: map[uint32]Counter{0xc0de0007: {1, 22}}},
		{name: "ICMP", prog: progs.TCEgress, in: icmp,
			policy: counts{7: {Out: Counter{1, 28}}}, saOut: map[uint32]Counter{0xc0de0007: {1, 28}}, flowsUp: 1},
		{name: "UDP more specific policy wins", prog: progs.TCEgress, in: udpPrio,
			policy: counts{10: {Out: Counter{1, 33}}}, saOut: map[uint32]Counter{0xc0de000a: {1, 33}}, flowsUp: 1},
		{name: "no policy", prog: progs.TCEgress, in: tcpFrame("10.1.0.1", "192.0.2.1", 40000, 80, pkttest.SYN, pkttest.MSS(1460), nil)},
		{name: "reverse direction on egress", prog: progs.TCEgress, in: tcpFrame("10.2.0.1", "10.1.0.1", 80, 40000, pkttest.SYN, pkttest.MSS(1460), nil)},
		{name: "SA down drops and reports", prog: progs.TCEgress, in: synToDown, ret: tcShot,
			policy: counts{8: {SADownDrops: 1, Events: 1}},
			event:  &Event{PolicyID: 8, Flow: Flow5{Src: addr("10.1.0.1"), Dst: addr("10.3.0.9"), Proto: 6, SrcPort: 40001, DstPort: 443}}},
		{name: "SA down again: rate-limited event", prog: progs.TCEgress, in: synToDown, ret: tcShot,
			policy: counts{8: {SADownDrops: 1}}},
		{name: "SA down wrong port", prog: progs.TCEgress, in: tcpFrame("10.1.0.1", "10.3.0.9", 40001, 80, pkttest.SYN, nil, nil)},
		{name: "SA down pass", prog: progs.TCEgress, in: udpToPass,
			policy: counts{9: {SADownPasses: 1, Events: 1}},
			event:  &Event{PolicyID: 9, Flow: Flow5{Src: addr("10.1.0.1"), Dst: addr("10.4.0.1"), Proto: 17, SrcPort: 5000, DstPort: 53}}},
		{name: "ingress ignores SA state", prog: progs.TCIngress,
			in:     tcpFrame("10.3.0.9", "10.1.0.1", 443, 40001, pkttest.SYN|pkttest.ACK, pkttest.MSS(1460), nil),
			out:    tcpFrame("10.3.0.9", "10.1.0.1", 443, 40001, pkttest.SYN|pkttest.ACK, pkttest.MSS(1300), nil),
			policy: counts{8: {In: Counter{1, 44}, MSSRewrites: 1}}, flowsUp: 1},
		{name: "IP options truncated", prog: progs.TCEgress, in: ipOptsTruncated},
		{name: "not IPv4", prog: progs.TCEgress, in: append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd}, make([]byte, 40)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			beforeP, _ := l.PolicyCounters()
			beforeSA, _ := l.SACounters(Outbound)
			beforeFlows, _ := l.TopFlows(0)

			ret, out := runSegs(t, tt.prog, tt.in, tt.segs)
			if ret != tt.ret {
				t.Errorf("verdict %d, want %d", ret, tt.ret)
			}
			want := tt.out
			if want == nil {
				want = tt.in
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output\n%x\nwant\n%x", out, want)
			}
			if _, _, err := pkttest.TCPView(out); err == nil && tt.out != nil {
				if ok, _ := pkttest.TCPChecksumOK(out); !ok {
					t.Errorf("TCP checksum of output does not verify")
				}
			}

			afterP, _ := l.PolicyCounters()
			for id, a := range afterP {
				got := subPolicy(a, beforeP[id])
				if got != tt.policy[id] {
					t.Errorf("policy %d counters moved by %+v, want %+v", id, got, tt.policy[id])
				}
			}
			afterSA, _ := l.SACounters(Outbound)
			for spi, a := range afterSA {
				got := Counter{a.Packets - beforeSA[spi].Packets, a.Bytes - beforeSA[spi].Bytes}
				if got != tt.saOut[spi] {
					t.Errorf("SA %#x counters moved by %+v, want %+v", spi, got, tt.saOut[spi])
				}
			}
			afterFlows, _ := l.TopFlows(0)
			if n := len(afterFlows) - len(beforeFlows); n != tt.flowsUp {
				t.Errorf("%d new flows, want %d", n, tt.flowsUp)
			}

			wait := 20 * time.Millisecond
			if tt.event != nil {
				wait = 2 * time.Second
			}
			select {
			case ev := <-l.Events():
				if tt.event == nil || ev != *tt.event {
					t.Errorf("event %+v, want %+v", ev, tt.event)
				}
			case <-time.After(wait):
				if tt.event != nil {
					t.Errorf("no event, want %+v", *tt.event)
				}
			}
		})
	}
}

func subPolicy(a, b PolicyCounters) PolicyCounters {
	return PolicyCounters{
		Out:          Counter{a.Out.Packets - b.Out.Packets, a.Out.Bytes - b.Out.Bytes},
		In:           Counter{a.In.Packets - b.In.Packets, a.In.Bytes - b.In.Bytes},
		SADownDrops:  a.SADownDrops - b.SADownDrops,
		SADownPasses: a.SADownPasses - b.SADownPasses,
		MSSRewrites:  a.MSSRewrites - b.MSSRewrites,
		Events:       a.Events - b.Events,
	}
}
