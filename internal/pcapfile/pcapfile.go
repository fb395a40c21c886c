// Package pcapfile reads the IKE messages out of classic pcap captures, for the codecs' tests
// and fuzz seeds (ike/isakmp, ike/ikev2): no dependency, Ethernet, Linux SLL and raw IP links.
package pcapfile

import (
	"encoding/binary"
	"fmt"
	"os"
)

// Message is one IKE message found in a capture.
type Message struct {
	Frame int // 1-based, as tshark numbers frames
	Data  []byte
}

// ReadIKE reads the file at path and returns its IKE messages (see IKEMessages).
func ReadIKE(path string) ([]Message, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	msgs, err := IKEMessages(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return msgs, nil
}

// Link types of classic pcap files (tcpdump.org/linktypes.html).
const (
	linkEthernet = 1
	linkRaw      = 101
	linkLinuxSLL = 113
	linkIPv4     = 228
)

// IKEMessages returns the IKE messages (ISAKMP or IKEv2) in a classic pcap file: IPv4 UDP
// datagrams from or to port 500, or to port 4500 with the non-ESP marker, which is removed.
// Fragments and frames of other protocols are skipped.
func IKEMessages(b []byte) ([]Message, error) {
	if len(b) < 24 {
		return nil, fmt.Errorf("pcap header: %d bytes, want 24", len(b))
	}
	var order binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d: // microsecond, nanosecond timestamps
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("pcap magic %#x: not a classic pcap file", b[:4])
	}
	link := order.Uint32(b[20:]) & 0x0fffffff // the upper bits carry FCS information
	var msgs []Message
	for frame, rest := 1, b[24:]; len(rest) > 0; frame++ {
		if len(rest) < 16 {
			return nil, fmt.Errorf("frame %d: record header of %d bytes, want 16", frame, len(rest))
		}
		n := int(order.Uint32(rest[8:]))
		if n > len(rest)-16 {
			return nil, fmt.Errorf("frame %d: captured length %d, want <= %d", frame, n, len(rest)-16)
		}
		pkt := rest[16 : 16+n]
		rest = rest[16+n:]
		ip, err := ipv4Packet(link, pkt)
		if err != nil {
			return nil, fmt.Errorf("frame %d: %w", frame, err)
		}
		if msg := ikeInIPv4(ip); msg != nil {
			msgs = append(msgs, Message{Frame: frame, Data: msg})
		}
	}
	return msgs, nil
}

// ipv4Packet strips the link-layer header; it returns nil for frames that are not IPv4.
func ipv4Packet(link uint32, pkt []byte) ([]byte, error) {
	var hdr, typeAt int
	switch link {
	case linkEthernet:
		hdr, typeAt = 14, 12
	case linkLinuxSLL:
		hdr, typeAt = 16, 14
	case linkRaw, linkIPv4:
		if len(pkt) > 0 && pkt[0]>>4 == 4 {
			return pkt, nil
		}
		return nil, nil
	default:
		return nil, fmt.Errorf("link type %d: want Ethernet, Linux SLL or raw IP", link)
	}
	if len(pkt) < hdr || binary.BigEndian.Uint16(pkt[typeAt:]) != 0x0800 {
		return nil, nil
	}
	return pkt[hdr:], nil
}

// ikeInIPv4 returns the IKE message in an unfragmented IPv4 UDP packet, or nil.
func ikeInIPv4(ip []byte) []byte {
	if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 17 {
		return nil
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 || ihl < 20 || total < ihl+8 || total > len(ip) {
		return nil // a fragment or truncated
	}
	udp := ip[ihl:total]
	src, dst := binary.BigEndian.Uint16(udp), binary.BigEndian.Uint16(udp[2:])
	ulen := int(binary.BigEndian.Uint16(udp[4:]))
	if ulen < 8 || ulen > len(udp) {
		return nil
	}
	data := udp[8:ulen]
	switch {
	case src == 500 || dst == 500:
		return data
	case (src == 4500 || dst == 4500) && len(data) >= 4 && binary.BigEndian.Uint32(data) == 0:
		return data[4:]
	}
	return nil
}
