package userspace

import (
	"encoding/binary"
	"math/bits"
)

// Field offsets of the inner IPv4 (RFC 791), IPv6 (RFC 8200) and TCP (RFC 9293) headers
// that the inbound coalescer reads and rewrites.
const (
	ipv4HeaderLen = 20 // without options
	ipv4TOS       = 1
	ipv4TotalLen  = 2
	ipv4ID        = 4
	ipv4FragOff   = 6 // flags and fragment offset
	ipv4TTL       = 8
	ipv4Protocol  = 9
	ipv4Checksum  = 10
	ipv4Src       = 12 // source and destination addresses: 8 bytes
	ipv4DF        = 0x4000

	ipv6HeaderLen  = 40
	ipv6PayloadLen = 4
	ipv6NextHeader = 6
	ipv6HopLimit   = 7
	ipv6Src        = 8 // source and destination addresses: 32 bytes

	tcpHeaderLen = 20 // without options
	tcpSeq       = 4
	tcpAck       = 8
	tcpDataOff   = 12 // data offset, then flags and window: the word Linux GRO compares
	tcpFlags     = 13
	tcpChecksum  = 16
)

// TCP flags (RFC 9293 section 3.1, RFC 3168 section 6.1).
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpURG = 0x20
	tcpCWR = 0x80
)

// sum16 is the one's complement sum of b as big-endian 16-bit words (RFC 1071), folded to
// 16 bits so that callers can add more terms. It adds 32-bit little-endian words into 64
// bits, which cannot overflow for any packet: byte order only swaps the two bytes of the
// result (RFC 1071 section 2 (B)), and this is what each inbound segment costs.
func sum16(b []byte) uint32 {
	var s uint64
	for len(b) >= 32 {
		s += uint64(binary.LittleEndian.Uint32(b)) + uint64(binary.LittleEndian.Uint32(b[4:])) +
			uint64(binary.LittleEndian.Uint32(b[8:])) + uint64(binary.LittleEndian.Uint32(b[12:])) +
			uint64(binary.LittleEndian.Uint32(b[16:])) + uint64(binary.LittleEndian.Uint32(b[20:])) +
			uint64(binary.LittleEndian.Uint32(b[24:])) + uint64(binary.LittleEndian.Uint32(b[28:]))
		b = b[32:]
	}
	for len(b) >= 2 {
		s += uint64(binary.LittleEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint32(bits.ReverseBytes16(uint16(s)))
}

// fold reduces a one's complement sum to 16 bits.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// ipv4HeaderValid reports whether the checksum of the IPv4 header h verifies.
func ipv4HeaderValid(h []byte) bool { return fold(sum16(h)) == 0xffff }

// setIPv4Checksum recomputes the checksum of the IPv4 header h.
func setIPv4Checksum(h []byte) {
	binary.BigEndian.PutUint16(h[ipv4Checksum:], 0)
	binary.BigEndian.PutUint16(h[ipv4Checksum:], ^fold(sum16(h)))
}

// transportValid reports whether the TCP or UDP checksum of pkt, whose transport header
// starts at ipLen, verifies with its pseudo-header.
func transportValid(pkt []byte, v6 bool, proto uint8, ipLen int) bool {
	return fold(uint32(pseudoHeaderSum(pkt, v6, proto, len(pkt)-ipLen))+sum16(pkt[ipLen:])) == 0xffff
}

// pseudoHeaderSum is the folded, uncomplemented sum of the IPv4 or IPv6 pseudo-header
// (RFC 9293 section 3.1, RFC 8200 section 8.1) of pkt for l4Len transport bytes: what a
// CHECKSUM_PARTIAL packet carries in its checksum field, for the kernel to complete.
func pseudoHeaderSum(pkt []byte, v6 bool, proto uint8, l4Len int) uint16 {
	addrs := pkt[ipv4Src : ipv4Src+8]
	if v6 {
		addrs = pkt[ipv6Src : ipv6Src+32]
	}
	return fold(sum16(addrs) + uint32(proto) + uint32(l4Len))
}
