// Package ebpf benchmarks espgw's tc and XDP programs with BPF_PROG_TEST_RUN, next to an empty
// program of the same type measured in the same run. Needs root.
package ebpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/loader"
	"github.com/espgw/espgw/loader/pkttest"
)

const (
	tcOK      = 0
	xdpPass   = 2
	knownSPI  = 0xc0de0001
	outSPI    = 0xc0de0002
	batchRuns = 1 << 16 // runs per BPF_PROG_TEST_RUN call; the kernel reports the mean
)

var (
	local  = netip.MustParseAddr("10.1.0.1")
	remote = netip.MustParseAddr("10.2.0.1")
	other  = netip.MustParseAddr("192.0.2.9")
	peer   = netip.MustParseAddr("198.51.100.2")
)

func setup(b *testing.B) *loader.Loader {
	b.Helper()
	testutil.RequireRoot(b) // loads BPF programs
	l, err := loader.Open(loader.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	p := loader.Policy{
		ID: 1,
		Selector: datapath.Selector{
			Local:  netip.PrefixFrom(local, 16).Masked(),
			Remote: netip.PrefixFrom(remote, 16).Masked(),
		},
		SAUp:   true,
		OutSPI: outSPI,
		MSS:    1300,
	}
	for _, err := range []error{
		l.SetPolicy(p),
		l.AddSA(loader.Outbound, outSPI),
		l.AddSA(loader.Inbound, knownSPI),
		l.SetPeers([]netip.Addr{peer}),
	} {
		if err != nil {
			b.Fatal(err)
		}
	}
	return l
}

func emptyProgram(b *testing.B, typ ebpf.ProgramType, ret int32) *ebpf.Program {
	b.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         typ,
		License:      "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, ret), asm.Return()},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prog.Close() })
	return prog
}

// bench reports the kernel-measured mean ns per packet as ns/op, over batches of batchRuns runs. The
// kernel reuses one buffer per batch, so for the matching SYN only the first run rewrites the
// MSS; the others find it already clamped. Every run after the first
// finds its flow in the tc programs' per-CPU flow cache (see bench/README.md for the miss path).
func bench(b *testing.B, prog *ebpf.Program, frame []byte, want uint32) {
	b.Helper()
	var total, runs float64
	for b.Loop() {
		ret, d, err := prog.Benchmark(frame, batchRuns, nil)
		if err != nil {
			b.Fatal(err)
		}
		if ret != want {
			b.Fatalf("verdict %d, want %d", ret, want)
		}
		total += float64(d.Nanoseconds())
		runs++
	}
	b.ReportMetric(total/runs, "ns/op") // per packet, not per batch
}

func BenchmarkTC(b *testing.B) {
	l := setup(b)
	prog := l.Programs().TCEgress
	tcp := func(src, dst netip.Addr, flags uint8, opts []byte, payload int) []byte {
		return (pkttest.IPv4{Src: src, Dst: dst, Proto: pkttest.ProtoTCP}).Frame(
			pkttest.TCP(40000, 443, flags, opts, make([]byte, payload)))
	}
	linuxSYN := append(pkttest.MSS(1460), 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7)
	b.Run("empty", func(b *testing.B) {
		bench(b, emptyProgram(b, ebpf.SchedCLS, tcOK), tcp(local, remote, pkttest.SYN, linuxSYN, 0), tcOK)
	})
	b.Run("matching-SYN", func(b *testing.B) { bench(b, prog, tcp(local, remote, pkttest.SYN, linuxSYN, 0), tcOK) })
	b.Run("matching-data", func(b *testing.B) { bench(b, prog, tcp(local, remote, pkttest.ACK, nil, 1400), tcOK) })
	b.Run("non-matching", func(b *testing.B) { bench(b, prog, tcp(local, other, pkttest.ACK, nil, 1400), tcOK) })
}

func BenchmarkXDP(b *testing.B) {
	l := setup(b)
	prog := l.Programs().XDP
	esp := func(spi uint32) []byte {
		l4 := make([]byte, 1400)
		binary.BigEndian.PutUint32(l4, spi)
		return (pkttest.IPv4{Src: peer, Dst: local, Proto: pkttest.ProtoESP}).Frame(l4)
	}
	ike := (pkttest.IPv4{Src: peer, Dst: local, Proto: pkttest.ProtoUDP}).Frame(pkttest.UDP(500, 500, make([]byte, 200)))
	other := (pkttest.IPv4{Src: other, Dst: local, Proto: pkttest.ProtoTCP}).Frame(pkttest.TCP(1, 2, pkttest.ACK, nil, make([]byte, 1400)))
	b.Run("empty", func(b *testing.B) { bench(b, emptyProgram(b, ebpf.XDP, xdpPass), esp(knownSPI), xdpPass) })
	b.Run("ESP-known-SPI", func(b *testing.B) { bench(b, prog, esp(knownSPI), xdpPass) })
	b.Run("IKE-from-peer", func(b *testing.B) { bench(b, prog, ike, xdpPass) })
	b.Run("non-matching", func(b *testing.B) { bench(b, prog, other, xdpPass) })
}

// BenchmarkTCPolicies measures the egress tc program with 64 and with loader.MaxPolicies
// policies (distinct subnet pairs, the packet matching one in the middle) and an empty program,
// batches interleaved so that all three see the same load on a shared machine. "hit" is the
// flow cache's hit path; "miss" bypasses the cache (loader.Options.ClassifyEveryPacket), so
// every packet is classified and its counts move to the flow table. Reports ns per packet of
// each and the ratio of the two policy counts.
func BenchmarkTCPolicies(b *testing.B) {
	frame := func(src, dst netip.Addr) []byte {
		return (pkttest.IPv4{Src: src, Dst: dst, Proto: pkttest.ProtoTCP}).Frame(
			pkttest.TCP(40000, 443, pkttest.ACK, nil, make([]byte, 1400)))
	}
	const many = loader.MaxPolicies
	for _, path := range []struct {
		name string
		miss bool
	}{{"hit", false}, {"miss", true}} {
		b.Run(path.name, func(b *testing.B) {
			progs := []struct {
				metric string
				prog   *ebpf.Program
				frame  []byte
			}{{metric: "ns/empty", prog: emptyProgram(b, ebpf.SchedCLS, tcOK), frame: frame(local, remote)}}
			for _, n := range []int{64, many} {
				l := openPolicies(b, n, path.miss)
				src, dst := pairAddrs(n / 2)
				progs = append(progs, struct {
					metric string
					prog   *ebpf.Program
					frame  []byte
				}{fmt.Sprintf("ns/%d-policies", n), l.Programs().TCEgress, frame(src, dst)})
			}
			total := make([]float64, len(progs))
			var runs float64
			for b.Loop() {
				for i, p := range progs {
					ret, d, err := p.prog.Benchmark(p.frame, batchRuns, nil)
					if err != nil {
						b.Fatal(err)
					}
					if ret != tcOK {
						b.Fatalf("%s: verdict %d, want %d", p.metric, ret, tcOK)
					}
					total[i] += float64(d.Nanoseconds())
				}
				runs++
			}
			for i, p := range progs {
				b.ReportMetric(total[i]/runs, p.metric)
			}
			b.ReportMetric(total[2]/total[1], fmt.Sprintf("x%d/64", many))
		})
	}
}

// pairAddrs returns the first addresses of subnet pair i: a /28 of 10.64.0.0/16 (local) and a
// /24 of 10.128.0.0/12 (remote).
func pairAddrs(i int) (netip.Addr, netip.Addr) {
	at := func(base uint32) netip.Addr {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], base)
		return netip.AddrFrom4(a)
	}
	return at(0x0a400000 + 16*uint32(i) + 1), at(0x0a800000 + 256*uint32(i) + 1)
}

// openPolicies opens a loader holding n policies, one per subnet pair, each with its SA up.
// At cleanup it checks that policy n/2 counted packets: the benchmark measured a match.
func openPolicies(b *testing.B, n int, classifyEveryPacket bool) *loader.Loader {
	b.Helper()
	testutil.RequireRoot(b)
	l, err := loader.Open(loader.Options{ClassifyEveryPacket: classifyEveryPacket})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	for i := range n {
		src, dst := pairAddrs(i)
		p := loader.Policy{ID: uint32(i), Priority: 100, SAUp: true, OutSPI: outSPI + uint32(i),
			Selector: datapath.Selector{Local: netip.PrefixFrom(src, 28).Masked(), Remote: netip.PrefixFrom(dst, 24).Masked()}}
		if err := l.SetPolicy(p); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		counters, err := l.PolicyCounters()
		if err != nil {
			b.Error(err)
		} else if counters[uint32(n/2)].Out.Packets == 0 {
			b.Errorf("%d policies: policy %d counted nothing", n, n/2)
		}
	})
	return l
}
