package userspace

import (
	"encoding/binary"
	"net/netip"

	"github.com/espgw/espgw/datapath"
)

// flow is the part of an inner packet that selectors match (RFC 4301 section 4.4.1.1).
type flow struct {
	src, dst         netip.Addr
	proto            uint8
	srcPort, dstPort uint16 // zero for protocols without ports and for non-first fragments
}

// IANA protocol numbers with 16-bit ports at the start of their header.
const (
	protoTCP     = 6
	protoUDP     = 17
	protoUDPLite = 136
	protoSCTP    = 132
)

// parseFlow reads the selector fields of an IPv4 or IPv6 (no extension headers) packet.
func parseFlow(p []byte) (f flow, ok bool) {
	if len(p) < 1 {
		return f, false
	}
	var l4 []byte
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0x0f) * 4
		if ihl < 20 || len(p) < ihl {
			return f, false
		}
		f.src = netip.AddrFrom4([4]byte(p[12:16]))
		f.dst = netip.AddrFrom4([4]byte(p[16:20]))
		f.proto = p[9]
		if binary.BigEndian.Uint16(p[6:])&0x1fff == 0 { // first fragment carries the ports
			l4 = p[ihl:]
		}
	case 6:
		if len(p) < 40 {
			return f, false
		}
		f.src = netip.AddrFrom16([16]byte(p[8:24]))
		f.dst = netip.AddrFrom16([16]byte(p[24:40]))
		f.proto = p[6]
		l4 = p[40:]
	default:
		return f, false
	}
	switch f.proto {
	case protoTCP, protoUDP, protoUDPLite, protoSCTP:
		if len(l4) >= 4 {
			f.srcPort = binary.BigEndian.Uint16(l4[0:])
			f.dstPort = binary.BigEndian.Uint16(l4[2:])
		}
	}
	return f, true
}

// prefixContains treats an unset prefix as "any address".
func prefixContains(p netip.Prefix, a netip.Addr) bool {
	return !p.IsValid() || p.Contains(a)
}

// outboundMatch reports whether a packet leaving the protected side matches s.
func outboundMatch(s *datapath.Selector, f *flow) bool {
	return prefixContains(s.Local, f.src) && prefixContains(s.Remote, f.dst) &&
		(s.Proto == 0 || s.Proto == f.proto) &&
		(s.LocalPort == 0 || s.LocalPort == f.srcPort) &&
		(s.RemotePort == 0 || s.RemotePort == f.dstPort)
}

// carries reports whether an SA with selectors sels carries flow f, which match reports for
// one selector; an SA without selectors carries anything.
func carries(sels []datapath.Selector, f *flow, match func(*datapath.Selector, *flow) bool) bool {
	if len(sels) == 0 {
		return true
	}
	for i := range sels {
		if match(&sels[i], f) {
			return true
		}
	}
	return false
}

// inboundMatch reports whether a decapsulated packet is allowed by s: it must come from
// the remote protected side to the local one (RFC 4301 section 5.2, step 4).
func inboundMatch(s *datapath.Selector, f *flow) bool {
	return prefixContains(s.Remote, f.src) && prefixContains(s.Local, f.dst) &&
		(s.Proto == 0 || s.Proto == f.proto) &&
		(s.RemotePort == 0 || s.RemotePort == f.srcPort) &&
		(s.LocalPort == 0 || s.LocalPort == f.dstPort)
}
