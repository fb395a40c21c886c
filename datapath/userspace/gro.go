package userspace

import (
	"bytes"
	"encoding/binary"
	"slices"

	"golang.org/x/sys/unix"
)

// The inbound worker coalesces the TCP segments of a batch into super-packets with the
// rules of Linux GRO (tcp_gro_receive, inet_gro_receive, ipv6_gro_receive), so that the
// kernel's TCP takes up to 64 KB per TUN write instead of one segment.
//
// Every segment that leads or joins a super-packet has its TCP checksum verified here
// first, and the super-packet is written CHECKSUM_PARTIAL (its checksum field holds the
// pseudo-header sum; the kernel completes it only if it forwards the packet). The ESP ICV
// does not make that check redundant: the inner checksum also covers the path from the
// sending host to the peer gateway, and a forwarded CHECKSUM_PARTIAL packet gets a fresh
// checksum, which would hide corruption from the receiving host. Every other packet is
// written as it came, for the kernel to verify (VIRTIO_NET_HDR_F_DATA_VALID cannot skip
// that: the TUN driver ignores the flag on write, Linux 6.18).

const (
	groMaxSize = 65535 // bytes of a super-packet: the IPv4 total length field
	groMaxSegs = 64    // segments of a super-packet: a write gathers at most groMaxSegs+1 pieces
	// groLookback is how many of the latest TCP writes a segment searches for its flow;
	// Linux GRO holds at most 8 flows per hash bucket (MAX_GRO_SKBS).
	groLookback = 8
)

// segment is an inner packet as the coalescer sees it.
type segment struct {
	pkt    []byte
	v6     bool
	tcp    bool
	ipLen  int // IP header length
	hdrLen int // IP and TCP header length
}

// parseSegment locates the TCP header of a packet that could be merged: not a fragment,
// not longer than its IP length says (the checksum covers every byte written), IPv6
// without extension headers. Other packets keep tcp false.
func parseSegment(pkt []byte) segment {
	s := segment{pkt: pkt}
	var proto uint8
	switch {
	case len(pkt) >= ipv4HeaderLen && pkt[0]>>4 == 4:
		ihl := int(pkt[0]&0x0f) * 4
		if ihl < ipv4HeaderLen || ihl > len(pkt) ||
			int(binary.BigEndian.Uint16(pkt[ipv4TotalLen:])) != len(pkt) ||
			binary.BigEndian.Uint16(pkt[ipv4FragOff:])&^ipv4DF != 0 {
			return s
		}
		s.ipLen, proto = ihl, pkt[ipv4Protocol]
	case len(pkt) >= ipv6HeaderLen && pkt[0]>>4 == 6:
		if int(binary.BigEndian.Uint16(pkt[ipv6PayloadLen:]))+ipv6HeaderLen != len(pkt) {
			return s
		}
		s.ipLen, proto, s.v6 = ipv6HeaderLen, pkt[ipv6NextHeader], true
	default:
		return s
	}
	l4 := pkt[s.ipLen:]
	if proto == protoTCP && len(l4) >= tcpHeaderLen {
		if thl := int(l4[tcpDataOff]>>4) * 4; thl >= tcpHeaderLen && thl <= len(l4) {
			s.tcp, s.hdrLen = true, s.ipLen+thl
		}
	}
	return s
}

func (s *segment) payload() int    { return len(s.pkt) - s.hdrLen }
func (s *segment) flags() uint8    { return s.pkt[s.ipLen+tcpFlags] }
func (s *segment) seq() uint32     { return binary.BigEndian.Uint32(s.pkt[s.ipLen+tcpSeq:]) }
func (s *segment) tcpHdr() []byte  { return s.pkt[s.ipLen:s.hdrLen] }
func (s *segment) csumValid() bool { return transportValid(s.pkt, s.v6, protoTCP, s.ipLen) }

// canLead reports whether s may head a super-packet: TCP with payload, none of the flags
// on which Linux flushes at once, IPv4 without options and with a valid header checksum
// (inet_gro_receive checks it before merging), and a valid TCP checksum.
func (s *segment) canLead() bool {
	if !s.tcp || s.payload() == 0 || s.flags()&(tcpSYN|tcpFIN|tcpRST|tcpURG|tcpPSH) != 0 {
		return false
	}
	return (s.v6 || s.ipLen == ipv4HeaderLen && ipv4HeaderValid(s.pkt[:ipv4HeaderLen])) && s.csumValid()
}

// groItem is one TUN write: a head packet and the segments merged behind it.
type groItem struct {
	segment                       // the head packet; its headers become the super-packet's
	hdr     [virtioNetHdrLen]byte // virtio header, set by finish
	first   int                   // batch index of the head packet
	last    int                   // batch index of the last packet merged
	segs    int                   // packets in the write
	size    int                   // bytes of the (super-)packet
	gsoSize int                   // payload bytes of every segment but the last
	nextSeq uint32                // sequence number the next segment must carry
	open    bool                  // accepts further segments
	lead    bool                  // the head passed canLead: its checksum verified
	fixedID bool                  // IPv4: every segment repeats the head's ID (DF set)
	psh     bool                  // the last merged segment carries PSH
}

func newItem(s segment, i int) groItem {
	it := groItem{segment: s, first: i, last: i, segs: 1, size: len(s.pkt)}
	if s.canLead() {
		it.open, it.lead, it.gsoSize = true, true, s.payload()
		it.nextSeq = s.seq() + uint32(it.gsoSize)
	}
	return it
}

// sameFlow reports whether s has the addresses and ports of the TCP packet it.
func (it *groItem) sameFlow(s *segment) bool {
	if it.v6 != s.v6 {
		return false
	}
	addrs, n := ipv4Src, 8
	if it.v6 {
		addrs, n = ipv6Src, 32
	}
	return bytes.Equal(it.pkt[addrs:addrs+n], s.pkt[addrs:addrs+n]) &&
		binary.BigEndian.Uint32(it.pkt[it.ipLen:]) == binary.BigEndian.Uint32(s.pkt[s.ipLen:])
}

// merge appends the segment s of the item's flow if Linux GRO would: the next sequence
// number, payload no larger than the first segment's (a shorter one ends the
// super-packet, as PSH does), no SYN/FIN/RST/URG/CWR, the same data offset, other flags,
// window, ACK and options, and IP headers that differ only in length, checksum and ID.
func (it *groItem) merge(s *segment) bool {
	n := s.payload()
	if n == 0 || n > it.gsoSize || it.size+n > groMaxSize || it.segs == groMaxSegs ||
		s.ipLen != it.ipLen || s.hdrLen != it.hdrLen || s.seq() != it.nextSeq ||
		s.flags()&(tcpSYN|tcpFIN|tcpRST|tcpURG|tcpCWR) != 0 {
		return false
	}
	th, sh := it.tcpHdr(), s.tcpHdr()
	const anyPSHCWR = (tcpPSH | tcpCWR) << 16 // flags byte of the data offset/flags/window word
	if binary.BigEndian.Uint32(th[tcpDataOff:])&^anyPSHCWR != binary.BigEndian.Uint32(sh[tcpDataOff:])&^anyPSHCWR ||
		binary.BigEndian.Uint32(th[tcpAck:]) != binary.BigEndian.Uint32(sh[tcpAck:]) ||
		!bytes.Equal(th[tcpHeaderLen:], sh[tcpHeaderLen:]) {
		return false
	}
	fixedID := false
	if it.v6 {
		// version, traffic class and flow label; hop limit
		if binary.BigEndian.Uint32(it.pkt) != binary.BigEndian.Uint32(s.pkt) ||
			it.pkt[ipv6HopLimit] != s.pkt[ipv6HopLimit] {
			return false
		}
	} else {
		var follows bool
		if follows, fixedID = it.ipv4IDFollows(s); !follows ||
			it.pkt[ipv4TOS] != s.pkt[ipv4TOS] || it.pkt[ipv4TTL] != s.pkt[ipv4TTL] ||
			binary.BigEndian.Uint16(it.pkt[ipv4FragOff:]) != binary.BigEndian.Uint16(s.pkt[ipv4FragOff:]) ||
			!ipv4HeaderValid(s.pkt[:ipv4HeaderLen]) {
			return false
		}
	}
	if !s.csumValid() {
		return false
	}
	it.segs++
	it.size += n
	it.nextSeq += uint32(n)
	it.fixedID = fixedID
	it.psh = s.flags()&tcpPSH != 0
	it.open = n == it.gsoSize && !it.psh
	return true
}

// ipv4IDFollows reports whether the IPv4 ID of s continues the super-packet's: one more
// per segment, or, with DF set, always the head's (RFC 6864 atomic datagrams). Like
// Linux, the second segment decides which, reported as fixed.
func (it *groItem) ipv4IDFollows(s *segment) (follows, fixed bool) {
	step := binary.BigEndian.Uint16(s.pkt[ipv4ID:]) - binary.BigEndian.Uint16(it.pkt[ipv4ID:])
	switch {
	case it.segs == 1:
		fixed = step == 0 && binary.BigEndian.Uint16(it.pkt[ipv4FragOff:])&ipv4DF != 0
		return fixed || step == 1, fixed
	case it.fixedID:
		return step == 0, true
	default:
		return step == uint16(it.segs), false
	}
}

// finish rewrites the head packet's headers for the write and sets the virtio header: a
// super-packet gets its lengths, IPv4 header checksum, the last segment's PSH and GSO
// fields; every packet whose checksum was verified gets its pseudo-header sum for
// CHECKSUM_PARTIAL.
func (it *groItem) finish() {
	var vh virtioNetHdr
	h := it.pkt
	if it.segs > 1 {
		if it.v6 {
			binary.BigEndian.PutUint16(h[ipv6PayloadLen:], uint16(it.size-ipv6HeaderLen))
			vh.gsoType = unix.VIRTIO_NET_HDR_GSO_TCPV6
		} else {
			binary.BigEndian.PutUint16(h[ipv4TotalLen:], uint16(it.size))
			setIPv4Checksum(h[:ipv4HeaderLen])
			vh.gsoType = unix.VIRTIO_NET_HDR_GSO_TCPV4
		}
		if it.psh {
			h[it.ipLen+tcpFlags] |= tcpPSH
		}
		if it.flags()&tcpCWR != 0 {
			// When the kernel splits the packet again, only the first segment keeps CWR
			// (RFC 3168 section 6.1.2), as after tcp4_gro_complete.
			vh.gsoType |= unix.VIRTIO_NET_HDR_GSO_ECN
		}
		vh.gsoSize = uint16(it.gsoSize)
	}
	if it.lead {
		binary.BigEndian.PutUint16(h[it.ipLen+tcpChecksum:], pseudoHeaderSum(h, it.v6, protoTCP, it.size-it.ipLen))
		vh.flags = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
		vh.hdrLen, vh.csumStart, vh.csumOffset = uint16(it.hdrLen), uint16(it.ipLen), tcpChecksum
	}
	vh.encode(&it.hdr)
}

// coalescer turns a batch of inner packets into TUN writes. It reuses its memory from
// batch to batch; one goroutine owns it.
type coalescer struct {
	pkts  [][]byte
	items []groItem
	next  []int // next[i]: batch index of the packet merged after packet i, or -1
}

// coalesce groups pkts, in arrival order, into c.items and rewrites the headers of the
// packets that lead them. Packets of a flow that cannot be merged start a new item, so
// writing the items in order keeps each flow in order. pkts must stay untouched until the
// items are written.
func (c *coalescer) coalesce(pkts [][]byte) {
	c.pkts, c.items = pkts, c.items[:0]
	c.next = slices.Grow(c.next[:0], len(pkts))[:len(pkts)]
	for i, p := range pkts {
		c.next[i] = -1
		s := parseSegment(p)
		if s.tcp {
			if it := c.flowItem(&s); it != nil && it.open && it.merge(&s) {
				c.next[it.last], it.last = i, i
				continue
			}
		}
		c.items = append(c.items, newItem(s, i))
	}
	for i := range c.items {
		c.items[i].finish()
	}
}

// flowItem returns the latest item of the flow of s among the last groLookback TCP items,
// or nil.
func (c *coalescer) flowItem(s *segment) *groItem {
	seen := 0
	for j := len(c.items) - 1; j >= 0 && seen < groLookback; j-- {
		if it := &c.items[j]; it.tcp {
			if it.sameFlow(s) {
				return it
			}
			seen++
		}
	}
	return nil
}

// appendWrite appends to dst the pieces of item i in the order the TUN takes them: the
// virtio header, the head packet, then the payload of each merged segment.
func (c *coalescer) appendWrite(dst [][]byte, i int) [][]byte {
	it := &c.items[i]
	dst = append(dst, it.hdr[:], it.pkt)
	for j := c.next[it.first]; j >= 0; j = c.next[j] {
		dst = append(dst, c.pkts[j][it.hdrLen:])
	}
	return dst
}
