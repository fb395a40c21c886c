package userspace

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Test inner packets: a builder with valid lengths and checksums, and an Internet checksum
// written independently of the datapath's.

const tcpACK, tcpECE = 0x10, 0x40

// seg describes a test packet; build adds lengths and valid checksums.
type seg struct {
	v6           bool
	proto        uint8      // default TCP
	src, dst     netip.Addr // default 10.1.0.1 → 10.2.0.1, 2001:db8::1 → 2001:db8::2
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	window       uint16
	opts         []byte // TCP options
	payload      []byte
	id           uint16 // IPv4
	noDF         bool
	tos          uint8 // IPv4 TOS, IPv6 traffic class
	ttl          uint8 // IPv4 TTL, IPv6 hop limit; default 64
	ipOpts       []byte
	frag         uint16 // IPv4 MF and fragment offset
	flowLabel    uint32
	badIPSum     bool
	badL4Sum     bool // TCP or UDP checksum off by one
	noUDPSum     bool
	pad          int // bytes after the IP packet (ESP TFC padding)
}

func (s seg) build() []byte {
	if s.proto == 0 {
		s.proto = protoTCP
	}
	if s.ttl == 0 {
		s.ttl = 64
	}
	if !s.src.IsValid() {
		s.src, s.dst = netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
		if s.v6 {
			s.src, s.dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
		}
	}
	var l4 []byte
	switch s.proto {
	case protoTCP:
		l4 = make([]byte, 20+len(s.opts))
		binary.BigEndian.PutUint16(l4[0:], s.sport)
		binary.BigEndian.PutUint16(l4[2:], s.dport)
		binary.BigEndian.PutUint32(l4[4:], s.seq)
		binary.BigEndian.PutUint32(l4[8:], s.ack)
		l4[12] = byte(len(l4)/4) << 4
		l4[13] = s.flags
		binary.BigEndian.PutUint16(l4[14:], s.window)
		copy(l4[20:], s.opts)
	case protoUDP:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[0:], s.sport)
		binary.BigEndian.PutUint16(l4[2:], s.dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(s.payload)))
	}
	l4 = append(l4, s.payload...)
	var ip []byte
	if s.v6 {
		ip = make([]byte, 40)
		binary.BigEndian.PutUint32(ip, 6<<28|uint32(s.tos)<<20|s.flowLabel)
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		ip[6], ip[7] = s.proto, s.ttl
		copy(ip[8:], s.src.AsSlice())
		copy(ip[24:], s.dst.AsSlice())
	} else {
		ip = make([]byte, 20+len(s.ipOpts))
		ip[0], ip[1] = 0x40|byte(len(ip)/4), s.tos
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(l4)))
		binary.BigEndian.PutUint16(ip[4:], s.id)
		fragOff := s.frag
		if !s.noDF {
			fragOff |= ipv4DF
		}
		binary.BigEndian.PutUint16(ip[6:], fragOff)
		ip[8], ip[9] = s.ttl, s.proto
		copy(ip[12:], s.src.AsSlice())
		copy(ip[16:], s.dst.AsSlice())
		copy(ip[20:], s.ipOpts)
		binary.BigEndian.PutUint16(ip[10:], onesChecksum(ip))
		if s.badIPSum {
			ip[10] ^= 0x5a
		}
	}
	pkt := append(ip, l4...)
	if at := map[uint8]int{protoTCP: 16, protoUDP: 6}[s.proto]; at != 0 && !s.noUDPSum {
		c := onesChecksum(append(pseudoHeader(pkt), l4...))
		if c == 0 && s.proto == protoUDP {
			c = 0xffff
		}
		if s.badL4Sum {
			c++
		}
		binary.BigEndian.PutUint16(pkt[len(ip)+at:], c)
	}
	return append(pkt, make([]byte, s.pad)...)
}

// onesChecksum is the Internet checksum of b (RFC 1071), written independently of sum16.
func onesChecksum(b []byte) uint16 {
	var s uint64
	for i := 0; i < len(b); i++ {
		if i%2 == 0 {
			s += uint64(b[i]) << 8
		} else {
			s += uint64(b[i])
		}
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// pseudoHeader returns the pseudo-header bytes of the IP packet pkt (no IPv6 extension
// headers) for its transport bytes.
func pseudoHeader(pkt []byte) []byte {
	if pkt[0]>>4 == 6 {
		ph := slices.Clone(pkt[8:40])
		ph = binary.BigEndian.AppendUint32(ph, uint32(binary.BigEndian.Uint16(pkt[4:])))
		return append(ph, 0, 0, 0, pkt[6])
	}
	ihl := int(pkt[0]&0xf) * 4
	ph := append(slices.Clone(pkt[12:20]), 0, pkt[9])
	return binary.BigEndian.AppendUint16(ph, binary.BigEndian.Uint16(pkt[2:])-uint16(ihl))
}

// tcpFlow returns n contiguous segments of size payload bytes (ACK, DF, IDs counting up from
// 100), each changed by mod if it is not nil.
func tcpFlow(n, size int, mod func(i int, s *seg)) []seg {
	out := make([]seg, n)
	for i := range out {
		out[i] = seg{sport: 40000, dport: 5201, seq: 1000 + uint32(i*size), ack: 77, flags: tcpACK,
			window: 500, id: 100 + uint16(i), payload: pattern(i, size)}
		if mod != nil {
			mod(i, &out[i])
		}
	}
	return out
}

func pattern(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i*31 + j*7)
	}
	return b
}

func span(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// singles returns the writes of packets from to to-1, one each.
func singles(from, to int) [][]int {
	var w [][]int
	for i := from; i < to; i++ {
		w = append(w, []int{i})
	}
	return w
}

func buildAll(segs []seg) [][]byte {
	pkts := make([][]byte, len(segs))
	for i, s := range segs {
		pkts[i] = s.build()
	}
	return pkts
}
