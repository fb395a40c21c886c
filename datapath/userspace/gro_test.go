package userspace

import (
	"encoding/binary"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCoalesceRules(t *testing.T) {
	other := func(sport uint16) seg { // one segment of another flow
		return seg{sport: sport, dport: 5201, seq: 9, ack: 1, flags: tcpACK, id: 1, payload: pattern(0, 100)}
	}
	interleave := func(n int) []seg {
		a := tcpFlow(2, 100, nil)
		s := []seg{a[0]}
		for i := range n {
			s = append(s, other(41000+uint16(i)))
		}
		return append(s, a[1])
	}
	tests := []struct {
		name string
		segs []seg
		want [][]int
	}{
		{"one flow", tcpFlow(4, 100, nil), [][]int{{0, 1, 2, 3}}},
		{"IPv6 flow", tcpFlow(4, 100, func(i int, s *seg) { s.v6 = true }), [][]int{{0, 1, 2, 3}}},
		{"with TCP options", tcpFlow(3, 100, func(i int, s *seg) { s.opts = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} }), [][]int{{0, 1, 2}}},
		{"odd segment size", tcpFlow(3, 101, nil), [][]int{{0, 1, 2}}},
		{"sequence gap", tcpFlow(4, 100, func(i int, s *seg) {
			if i >= 2 {
				s.seq += 50
			}
		}), [][]int{{0, 1}, {2, 3}}},
		{"retransmission", append(tcpFlow(2, 100, nil), tcpFlow(1, 100, nil)...), [][]int{{0, 1}, {2}}},
		{"ACK differs", tcpFlow(4, 100, func(i int, s *seg) {
			if i >= 2 {
				s.ack++
			}
		}), [][]int{{0, 1}, {2, 3}}},
		{"window differs", tcpFlow(4, 100, func(i int, s *seg) {
			if i >= 2 {
				s.window++
			}
		}), [][]int{{0, 1}, {2, 3}}},
		{"options differ", tcpFlow(4, 100, func(i int, s *seg) {
			s.opts = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, byte(i / 2)}
		}), [][]int{{0, 1}, {2, 3}}},
		{"TCP header length differs", tcpFlow(4, 100, func(i int, s *seg) {
			if i >= 2 {
				s.opts = []byte{1, 1, 1, 1}
			}
		}), [][]int{{0, 1}, {2, 3}}},
		{"ECE differs", tcpFlow(4, 100, func(i int, s *seg) {
			if i >= 2 {
				s.flags |= tcpECE
			}
		}), [][]int{{0, 1}, {2, 3}}},
		{"SYN", tcpFlow(4, 100, func(i int, s *seg) {
			if i == 2 {
				s.flags |= tcpSYN
			}
		}), [][]int{{0, 1}, {2}, {3}}},
		{"FIN", tcpFlow(4, 100, func(i int, s *seg) {
			if i == 2 {
				s.flags |= tcpFIN
			}
		}), [][]int{{0, 1}, {2}, {3}}},
		{"RST", tcpFlow(4, 100, func(i int, s *seg) {
			if i == 2 {
				s.flags |= tcpRST
			}
		}), [][]int{{0, 1}, {2}, {3}}},
		{"URG", tcpFlow(4, 100, func(i int, s *seg) {
			if i == 2 {
				s.flags |= tcpURG
			}
		}), [][]int{{0, 1}, {2}, {3}}},
		{"PSH ends a super-packet", tcpFlow(4, 100, func(i int, s *seg) {
			if i == 1 {
				s.flags |= tcpPSH
			}
		}), [][]int{{0, 1}, {2, 3}}},
		{"PSH on the first segment", tcpFlow(3, 100, func(i int, s *seg) {
			if i == 0 {
				s.flags |= tcpPSH
			}
		}), [][]int{{0}, {1, 2}}},
		{"CWR starts a super-packet", tcpFlow(4, 100, func(i int, s *seg) {
			if i == 2 {
				s.flags |= tcpCWR
			}
		}), [][]int{{0, 1}, {2, 3}}},
		{"ECN CE differs", tcpFlow(4, 100, func(i int, s *seg) {
			s.tos = 2 // ECT(0)
			if i >= 2 {
				s.tos = 3 // CE
			}
		}), [][]int{{0, 1}, {2, 3}}},
		{"shorter segment ends a super-packet", tcpFlow(4, 100, func(i int, s *seg) {
			switch {
			case i == 1:
				s.payload = s.payload[:50]
			case i >= 2:
				s.seq -= 50
			}
		}), [][]int{{0, 1}, {2, 3}}},
		{"longer segment", tcpFlow(4, 100, func(i int, s *seg) {
			switch {
			case i == 1:
				s.payload = pattern(1, 150)
			case i >= 2:
				s.seq += 50
			}
		}), [][]int{{0}, {1, 2}, {3}}},
		{"pure ACK", tcpFlow(4, 100, func(i int, s *seg) {
			switch {
			case i == 2:
				s.payload = nil
			case i >= 3:
				s.seq -= 100
			}
		}), [][]int{{0, 1}, {2}, {3}}},
		{"IPv4 TOS differs", tcpFlow(4, 100, func(i int, s *seg) {
			if i >= 2 {
				s.tos = 0x20
			}
		}), [][]int{{0, 1}, {2, 3}}},
		{"IPv4 TTL differs", tcpFlow(4, 100, func(i int, s *seg) {
			if i >= 2 {
				s.ttl = 63
			}
		}), [][]int{{0, 1}, {2, 3}}},
		{"IPv4 DF differs", tcpFlow(4, 100, func(i int, s *seg) { s.noDF = i >= 2 }), [][]int{{0, 1}, {2, 3}}},
		{"IPv4 ID fixed with DF", tcpFlow(4, 100, func(i int, s *seg) { s.id = 7 }), [][]int{{0, 1, 2, 3}}},
		{"IPv4 ID fixed without DF", tcpFlow(3, 100, func(i int, s *seg) { s.id, s.noDF = 7, true }), [][]int{{0}, {1}, {2}}},
		{"IPv4 ID jumps", tcpFlow(4, 100, func(i int, s *seg) {
			if i >= 2 {
				s.id += 10
			}
		}), [][]int{{0, 1}, {2, 3}}},
		{"IPv4 ID wraps", tcpFlow(4, 100, func(i int, s *seg) { s.id = 0xfffe + uint16(i) }), [][]int{{0, 1, 2, 3}}},
		{"IPv4 ID fixed, then counts", tcpFlow(3, 100, func(i int, s *seg) { s.id = []uint16{7, 7, 8}[i] }), [][]int{{0, 1}, {2}}},
		{"IPv4 options", tcpFlow(3, 100, func(i int, s *seg) { s.ipOpts = []byte{1, 1, 1, 0} }), [][]int{{0}, {1}, {2}}},
		{"IPv4 header checksum wrong", tcpFlow(4, 100, func(i int, s *seg) { s.badIPSum = i == 2 }), [][]int{{0, 1}, {2}, {3}}},
		{"TCP checksum wrong", tcpFlow(4, 100, func(i int, s *seg) { s.badL4Sum = i == 2 }), [][]int{{0, 1}, {2}, {3}}},
		{"TCP checksum wrong on the first", tcpFlow(3, 100, func(i int, s *seg) { s.badL4Sum = i == 0 }), [][]int{{0}, {1, 2}}},
		{"IPv6 TCP checksum wrong", tcpFlow(4, 100, func(i int, s *seg) { s.v6, s.badL4Sum = true, i == 1 }), [][]int{{0}, {1}, {2, 3}}},
		{"IPv4 fragment", tcpFlow(4, 100, func(i int, s *seg) {
			if i == 2 {
				s.frag = 0x2000 // MF
			}
		}), [][]int{{0, 1}, {2}, {3}}},
		{"padded packet", tcpFlow(4, 100, func(i int, s *seg) {
			if i == 2 {
				s.pad = 4
			}
		}), [][]int{{0, 1}, {2}, {3}}},
		{"IPv6 flow label differs", tcpFlow(4, 100, func(i int, s *seg) { s.v6, s.flowLabel = true, uint32(i/2) }), [][]int{{0, 1}, {2, 3}}},
		{"IPv6 traffic class differs", tcpFlow(4, 100, func(i int, s *seg) { s.v6, s.tos = true, uint8(i/2) }), [][]int{{0, 1}, {2, 3}}},
		{"IPv6 hop limit differs", tcpFlow(4, 100, func(i int, s *seg) { s.v6, s.ttl = true, 64-uint8(i/2) }), [][]int{{0, 1}, {2, 3}}},
		{"IPv4 and IPv6", tcpFlow(4, 100, func(i int, s *seg) { s.v6 = i >= 2 }), [][]int{{0, 1}, {2, 3}}},
		{"interleaved flows", []seg{tcpFlow(2, 100, nil)[0], other(41000), tcpFlow(2, 100, nil)[1], {
			sport: 41000, dport: 5201, seq: 109, ack: 1, flags: tcpACK, id: 2, payload: pattern(1, 100)}},
			[][]int{{0, 2}, {1, 3}}},
		{"other packets between", []seg{tcpFlow(2, 100, nil)[0], {proto: 1, payload: pattern(0, 64)},
			{proto: protoUDP, sport: 53, dport: 53, payload: pattern(0, 30)}, tcpFlow(2, 100, nil)[1]},
			[][]int{{0, 3}, {1}, {2}}},
		{"flow within the lookback", interleave(groLookback - 1), append([][]int{{0, groLookback}}, singles(1, groLookback)...)},
		{"flow beyond the lookback", interleave(groLookback), singles(0, groLookback+2)},
		{"size limit", tcpFlow(50, 1400, nil), [][]int{span(0, 46), span(46, 50)}},
		{"segment limit", tcpFlow(70, 10, nil), [][]int{span(0, groMaxSegs), span(groMaxSegs, 70)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := coalesceAndCheck(t, buildAll(tt.segs))
			if !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("writes %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSingleWrites checks how packets that are not merged are offered to the kernel: a
// data segment whose checksum verified as CHECKSUM_PARTIAL, everything else as it came,
// for the kernel to verify.
func TestSingleWrites(t *testing.T) {
	corrupt := seg{flags: tcpACK, payload: pattern(0, 100)}.build()
	corrupt[len(corrupt)-1] ^= 0x40
	hbh := seg{v6: true, flags: tcpACK}.build()
	hbh[6] = 0 // a hop-by-hop options header
	trunc := seg{flags: tcpACK}.build()[:30]
	binary.BigEndian.PutUint16(trunc[2:], 30)
	tests := []struct {
		name      string
		pkt       []byte
		csumStart uint16 // 0: no checksum offload
		csumOff   uint16
		hdrLen    uint16
	}{
		{"TCP data", seg{flags: tcpACK, payload: pattern(0, 100)}.build(), 20, 16, 40},
		{"IPv6 TCP data with options", seg{v6: true, flags: tcpACK, opts: []byte{1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8}, payload: pattern(0, 100)}.build(), 40, 16, 72},
		{"TCP data with a bad checksum", corrupt, 0, 0, 0},
		{"TCP SYN", seg{flags: tcpSYN, opts: []byte{2, 4, 5, 0xb4}}.build(), 0, 0, 0},
		{"IPv6 pure ACK", seg{v6: true, flags: tcpACK}.build(), 0, 0, 0},
		{"TCP with IPv4 options", seg{flags: tcpACK, ipOpts: []byte{1, 1, 1, 0}, payload: pattern(0, 10)}.build(), 0, 0, 0},
		{"UDP", seg{proto: protoUDP, payload: pattern(0, 33)}.build(), 0, 0, 0},
		{"IPv6 UDP", seg{v6: true, proto: protoUDP, payload: pattern(0, 33)}.build(), 0, 0, 0},
		{"UDP without checksum", seg{proto: protoUDP, noUDPSum: true, payload: pattern(0, 33)}.build(), 0, 0, 0},
		{"ICMP", seg{proto: 1, payload: pattern(0, 64)}.build(), 0, 0, 0},
		{"TCP fragment", seg{flags: tcpACK, frag: 0x2000, payload: pattern(0, 64)}.build(), 0, 0, 0},
		{"TCP padded", seg{flags: tcpACK, pad: 3, payload: pattern(0, 64)}.build(), 0, 0, 0},
		{"IPv6 extension header", hbh, 0, 0, 0},
		{"truncated TCP header", trunc, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := slices.Clone(tt.pkt)
			var c coalescer
			c.coalesce([][]byte{pkt})
			if len(c.items) != 1 {
				t.Fatalf("%d writes, want 1", len(c.items))
			}
			pieces := c.appendWrite(nil, 0)
			checkWrite(t, pieces, [][]byte{tt.pkt}, []int{0})
			want := virtioNetHdr{}
			if tt.csumStart != 0 {
				want = virtioNetHdr{flags: unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, hdrLen: tt.hdrLen, csumStart: tt.csumStart, csumOffset: tt.csumOff}
			}
			if got := decodeVirtio(pieces[0]); got != want {
				t.Errorf("virtio header %+v, want %+v", got, want)
			}
		})
	}
}

// TestCoalesceNoAllocs checks the worker's steady state: coalescing a batch and gathering
// its writes allocate nothing once the coalescer has grown.
func TestCoalesceNoAllocs(t *testing.T) {
	segs := append(tcpFlow(60, 1400, nil), tcpFlow(40, 1400, func(i int, s *seg) { s.sport, s.v6 = 40001, true })...)
	segs = append(segs, seg{proto: 1, payload: pattern(0, 64)}, seg{flags: tcpACK, sport: 5201, dport: 40000})
	origs := buildAll(segs)
	pkts := make([][]byte, len(origs))
	for i, p := range origs {
		pkts[i] = slices.Clone(p)
	}
	var c coalescer
	pieces := make([][]byte, 0, groMaxSegs+1)
	writes := 0
	round := func() {
		for i, p := range origs {
			copy(pkts[i], p) // coalesce rewrote the heads' headers
		}
		c.coalesce(pkts)
		writes = len(c.items)
		for i := range c.items {
			pieces = c.appendWrite(pieces[:0], i)
		}
	}
	round()
	if allocs := testing.AllocsPerRun(100, round); allocs != 0 {
		t.Errorf("%.1f allocations per batch, want 0", allocs)
	}
	if writes != 5 {
		t.Errorf("%d writes for two flows of 60 and 40 segments and two other packets, want 5", writes)
	}
}

// encodeBatch joins packets as 2-byte length and bytes, the fuzz target's input format.
func encodeBatch(pkts [][]byte) []byte {
	var b []byte
	for _, p := range pkts {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

func FuzzCoalesce(f *testing.F) {
	for _, segs := range [][]seg{
		tcpFlow(4, 100, nil),
		tcpFlow(4, 100, func(i int, s *seg) {
			s.v6, s.flags = true, []uint8{tcpACK | tcpCWR, tcpACK, tcpACK | tcpPSH, tcpACK}[i]
		}),
		tcpFlow(5, 90, func(i int, s *seg) { s.id, s.opts = 7, []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} }),
		append(tcpFlow(3, 60, nil), seg{proto: protoUDP, payload: pattern(0, 9)}, seg{proto: 1}, tcpFlow(2, 60, func(i int, s *seg) { s.sport = 1 })[1]),
		tcpFlow(3, 100, func(i int, s *seg) {
			if i == 1 {
				s.payload = s.payload[:7]
			}
		}),
	} {
		f.Add(encodeBatch(buildAll(segs)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var origs [][]byte
		for len(data) >= 2 && len(origs) < inboundBatch {
			n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
			origs = append(origs, data[2:2+n])
			data = data[2+n:]
		}
		if len(origs) == 0 {
			return
		}
		coalesceAndCheck(t, origs)
	})
}

// TestSum16 compares the word-at-a-time checksum with the byte-wise one for every length
// up to 200 bytes (all tails and alignments) and an MTU-size packet, with carries forced
// by 0xff bytes.
func TestSum16(t *testing.T) {
	for _, n := range append(span(0, 201), 1400, 65535) {
		for _, fill := range []func(i int) byte{func(i int) byte { return byte(i*131 + 7) }, func(int) byte { return 0xff }} {
			b := make([]byte, n)
			for i := range b {
				b[i] = fill(i)
			}
			if got, want := ^fold(sum16(b)), onesChecksum(b); got != want {
				t.Fatalf("%d bytes: checksum %#04x, want %#04x", n, got, want)
			}
		}
	}
}
