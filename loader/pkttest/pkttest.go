// Package pkttest builds and inspects Ethernet/IPv4 frames for tests and benchmarks of the
// eBPF programs. Frames it builds carry correct IPv4, TCP and UDP checksums.
package pkttest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Header sizes and protocol numbers.
const (
	EthLen    = 14
	IPv4Len   = 20
	TCPLen    = 20
	UDPLen    = 8
	ProtoTCP  = 6
	ProtoUDP  = 17
	ProtoESP  = 50
	ProtoICMP = 1
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
)

// IPv4 describes the network header of a frame.
type IPv4 struct {
	Src, Dst   netip.Addr
	Proto      uint8
	Options    []byte // length a multiple of 4
	FragOffset uint16 // in 8-byte units
	MoreFrags  bool
}

// Frame returns an Ethernet frame carrying the IPv4 header and l4 (transport header and
// payload). For an unfragmented TCP or UDP l4 the transport checksum is filled in.
func (h IPv4) Frame(l4 []byte) []byte {
	hl := IPv4Len + len(h.Options)
	b := make([]byte, EthLen+hl+len(l4))
	copy(b[0:6], []byte{0x02, 0, 0, 0, 0, 2})
	copy(b[6:12], []byte{0x02, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[EthLen:]
	ip[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(ip[2:], uint16(hl+len(l4)))
	binary.BigEndian.PutUint16(ip[4:], 0x1234)
	frag := h.FragOffset & 0x1fff
	if h.MoreFrags {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(ip[6:], frag)
	ip[8] = 64
	ip[9] = h.Proto
	src, dst := h.Src.As4(), h.Dst.As4()
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	copy(ip[IPv4Len:], h.Options)
	binary.BigEndian.PutUint16(ip[10:], Checksum(0, ip[:hl]))
	l4b := ip[hl:]
	copy(l4b, l4)
	if h.FragOffset == 0 && !h.MoreFrags {
		switch {
		case h.Proto == ProtoTCP && len(l4) >= TCPLen:
			binary.BigEndian.PutUint16(l4b[16:], 0)
			binary.BigEndian.PutUint16(l4b[16:], Checksum(pseudoSum(ip, len(l4)), l4b))
		case h.Proto == ProtoUDP && len(l4) >= UDPLen:
			binary.BigEndian.PutUint16(l4b[6:], 0)
			if c := Checksum(pseudoSum(ip, len(l4)), l4b); c != 0 {
				binary.BigEndian.PutUint16(l4b[6:], c)
			} else {
				binary.BigEndian.PutUint16(l4b[6:], 0xffff)
			}
		}
	}
	return b
}

// TCP returns a TCP header with options (padded with NOPs to a multiple of 4) and payload;
// the checksum is left for IPv4.Frame.
func TCP(sport, dport uint16, flags uint8, options, payload []byte) []byte {
	opts := append([]byte(nil), options...)
	for len(opts)%4 != 0 {
		opts = append(opts, 1)
	}
	b := make([]byte, TCPLen+len(opts)+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 1000)
	if flags&ACK != 0 {
		binary.BigEndian.PutUint32(b[8:], 2000)
	}
	b[12] = byte((TCPLen+len(opts))/4) << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 64240)
	copy(b[TCPLen:], opts)
	copy(b[TCPLen+len(opts):], payload)
	return b
}

// MSS returns an MSS option (kind 2, length 4).
func MSS(mss uint16) []byte { return []byte{2, 4, byte(mss >> 8), byte(mss)} }

// UDP returns a UDP header and payload; the checksum is left for IPv4.Frame.
func UDP(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, UDPLen+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[UDPLen:], payload)
	return b
}

// Checksum folds the Internet checksum (RFC 1071) of b onto the partial sum and complements it.
func Checksum(sum uint32, b []byte) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func pseudoSum(ip []byte, l4len int) uint32 {
	var sum uint32
	for i := 12; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	return sum + uint32(ip[9]) + uint32(l4len)
}

var errShort = errors.New("frame too short")

// TCPView locates the IPv4 header and TCP segment of an Ethernet frame. The segment ends at the
// IP total length, or at the end of the frame if the total length claims more.
func TCPView(frame []byte) (ip, tcp []byte, err error) {
	if len(frame) < EthLen+IPv4Len {
		return nil, nil, fmt.Errorf("%d bytes: %w", len(frame), errShort)
	}
	ip = frame[EthLen:]
	hl := int(ip[0]&0xf) * 4
	if ip[0]>>4 != 4 || hl < IPv4Len || ip[9] != ProtoTCP {
		return nil, nil, fmt.Errorf("version/ihl %#02x protocol %d: want an IPv4 TCP packet", ip[0], ip[9])
	}
	total := min(int(binary.BigEndian.Uint16(ip[2:])), len(ip))
	if total < hl+TCPLen {
		return nil, nil, fmt.Errorf("total length %d of %d bytes: %w", total, len(ip), errShort)
	}
	return ip[:hl], ip[hl:total], nil
}

// TCPChecksumOK reports whether the TCP checksum of an unfragmented frame verifies.
func TCPChecksumOK(frame []byte) (bool, error) {
	ip, tcp, err := TCPView(frame)
	if err != nil {
		return false, err
	}
	return Checksum(pseudoSum(ip, len(tcp)), tcp) == 0, nil
}

// MSSOf returns the MSS option value of the frame's TCP segment, if it has one. Options are
// read up to the data offset or the end of the segment, whichever comes first.
func MSSOf(frame []byte) (uint16, bool, error) {
	_, tcp, err := TCPView(frame)
	if err != nil {
		return 0, false, err
	}
	end := int(tcp[12]>>4) * 4
	if end < TCPLen {
		return 0, false, fmt.Errorf("data offset %d: want at least %d", end, TCPLen)
	}
	end = min(end, len(tcp))
	for off := TCPLen; off < end; {
		switch tcp[off] {
		case 0:
			return 0, false, nil
		case 1:
			off++
			continue
		}
		if off+2 > end || tcp[off+1] < 2 {
			return 0, false, nil
		}
		if tcp[off] == 2 && tcp[off+1] == 4 && off+4 <= end {
			return binary.BigEndian.Uint16(tcp[off+2:]), true, nil
		}
		off += int(tcp[off+1])
	}
	return 0, false, nil
}
