package ikev2

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// TrafficSelectors is a Traffic Selector payload, TSi or TSr (RFC 7296 section 3.13).
type TrafficSelectors struct {
	Responder bool // TSr rather than TSi
	Selectors []TrafficSelector
}

// TrafficSelector is one address range, port range and IP protocol (section 3.13.1). Start
// and End are both IPv4 (TS_IPV4_ADDR_RANGE) or both IPv6 (TS_IPV6_ADDR_RANGE).
type TrafficSelector struct {
	Protocol   uint8 // IP protocol; 0 = any
	StartPort  uint16
	EndPort    uint16
	Start, End netip.Addr
}

func (t *TrafficSelectors) Type() PayloadType {
	if t.Responder {
		return PayloadTSr
	}
	return PayloadTSi
}

func (t *TrafficSelectors) appendBody(b []byte) []byte {
	b = append(b, byte(len(t.Selectors)), 0, 0, 0)
	for _, s := range t.Selectors {
		typ, n := TSIPv4AddrRange, 16
		if s.Start.Is6() {
			typ, n = TSIPv6AddrRange, 40
		}
		b = append(b, byte(typ), s.Protocol)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		b = binary.BigEndian.AppendUint16(b, s.StartPort)
		b = binary.BigEndian.AppendUint16(b, s.EndPort)
		b = append(b, s.Start.AsSlice()...)
		b = append(b, s.End.AsSlice()...)
	}
	return b
}

func decodeTS(typ PayloadType, b []byte) (*TrafficSelectors, error) {
	if len(b) < 4 {
		return nil, invalid(fmt.Sprintf("%v payload body", typ), len(b), ">= 4 bytes")
	}
	count := int(b[0])
	t := &TrafficSelectors{Responder: typ == PayloadTSr}
	for b = b[4:]; len(b) > 0; {
		if len(b) < 4 {
			return nil, invalid("traffic selector header", len(b), ">= 4 bytes")
		}
		var addrLen int
		switch TSType(b[0]) {
		case TSIPv4AddrRange:
			addrLen = 4
		case TSIPv6AddrRange:
			addrLen = 16
		default:
			return nil, invalid("traffic selector type", b[0], "7 (IPv4 range) or 8 (IPv6 range)")
		}
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n != 8+2*addrLen || n > len(b) {
			return nil, invalid("traffic selector length", n, fmt.Sprintf("%d and %s", 8+2*addrLen, atMost(len(b))))
		}
		start, _ := netip.AddrFromSlice(b[8 : 8+addrLen])
		end, _ := netip.AddrFromSlice(b[8+addrLen : n])
		t.Selectors = append(t.Selectors, TrafficSelector{Protocol: b[1],
			StartPort: binary.BigEndian.Uint16(b[4:]), EndPort: binary.BigEndian.Uint16(b[6:]), Start: start, End: end})
		b = b[n:]
	}
	if len(t.Selectors) != count || count == 0 {
		return nil, invalid("number of traffic selectors", count, fmt.Sprintf("%d (the selectors present), at least 1", len(t.Selectors)))
	}
	return t, nil
}
