package isakmp

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
)

// IDType is an identification type of the IPsec DOI (RFC 2407 section 4.6.2.1).
type IDType uint8

const (
	IDIPv4Addr       IDType = 1
	IDFQDN           IDType = 2
	IDUserFQDN       IDType = 3
	IDIPv4AddrSubnet IDType = 4
	IDIPv6Addr       IDType = 5
	IDIPv6AddrSubnet IDType = 6
	IDIPv4AddrRange  IDType = 7
	IDIPv6AddrRange  IDType = 8
	IDDERASN1DN      IDType = 9
	IDDERASN1GN      IDType = 10
	IDKeyID          IDType = 11
)

var idNames = map[IDType]string{
	IDIPv4Addr:       "ID_IPV4_ADDR",
	IDFQDN:           "ID_FQDN",
	IDUserFQDN:       "ID_USER_FQDN",
	IDIPv4AddrSubnet: "ID_IPV4_ADDR_SUBNET",
	IDIPv6Addr:       "ID_IPV6_ADDR",
	IDIPv6AddrSubnet: "ID_IPV6_ADDR_SUBNET",
	IDIPv4AddrRange:  "ID_IPV4_ADDR_RANGE",
	IDIPv6AddrRange:  "ID_IPV6_ADDR_RANGE",
	IDDERASN1DN:      "ID_DER_ASN1_DN",
	IDDERASN1GN:      "ID_DER_ASN1_GN",
	IDKeyID:          "ID_KEY_ID",
}

func (t IDType) String() string {
	if s, ok := idNames[t]; ok {
		return s
	}
	return fmt.Sprintf("IDType(%d)", uint8(t))
}

// addrLen returns the data length the address ID types fix (address, address and mask, or
// two addresses), and 0 for the variable-length types.
func (t IDType) addrLen() int {
	switch t {
	case IDIPv4Addr:
		return 4
	case IDIPv4AddrSubnet, IDIPv4AddrRange:
		return 8
	case IDIPv6Addr:
		return 16
	case IDIPv6AddrSubnet, IDIPv6AddrRange:
		return 32
	}
	return 0
}

// Identification is the identification payload with the IPsec DOI layout
// (RFC 2407 section 4.6.2): in phase 1 it names the peer, in quick mode a traffic selector.
type Identification struct {
	IDType     IDType
	ProtocolID uint8 // IP protocol, 0 for any
	Port       uint16
	Data       []byte
}

func (*Identification) Type() PayloadType { return PayloadID }

const idFixedLen = 4 // ID type, protocol ID, port

// decodeIdentification decodes an ID body; address types must have their exact data length
// (INVALID-ID-INFORMATION otherwise).
func decodeIdentification(b []byte) (*Identification, error) {
	id := &Identification{
		IDType:     IDType(b[0]),
		ProtocolID: b[1],
		Port:       binary.BigEndian.Uint16(b[2:]),
		Data:       b[idFixedLen:],
	}
	if n := id.IDType.addrLen(); n != 0 && len(id.Data) != n {
		return nil, &ParseError{Field: id.IDType.String() + " data length", Value: len(id.Data),
			Expected: fmt.Sprint(n), code: NotifyInvalidIDInformation}
	}
	return id, nil
}

func (id *Identification) appendBody(b []byte) []byte {
	b = append(b, byte(id.IDType), id.ProtocolID)
	b = binary.BigEndian.AppendUint16(b, id.Port)
	return append(b, id.Data...)
}

// IDFromPrefix returns the ID for the valid prefix p with protocol and port 0 (any):
// ID_IPV4_ADDR or ID_IPV6_ADDR for a single address, else ID_IPV4_ADDR_SUBNET or
// ID_IPV6_ADDR_SUBNET. IPv4-mapped IPv6 prefixes stay IPv6.
func IDFromPrefix(p netip.Prefix) *Identification {
	p = p.Masked()
	a := p.Addr()
	id := &Identification{Data: a.AsSlice()}
	switch {
	case a.Is4() && p.IsSingleIP():
		id.IDType = IDIPv4Addr
	case a.Is4():
		id.IDType = IDIPv4AddrSubnet
	case p.IsSingleIP():
		id.IDType = IDIPv6Addr
	default:
		id.IDType = IDIPv6AddrSubnet
	}
	if !p.IsSingleIP() {
		for i := range len(id.Data) {
			id.Data = append(id.Data, prefixByte(p.Bits()-8*i))
		}
	}
	return id
}

// Prefix returns the addresses an address or subnet ID names; other types, a subnet mask
// that is not contiguous or a data length that does not match the type are errors.
func (id *Identification) Prefix() (netip.Prefix, error) {
	n := id.IDType.addrLen()
	if n == 0 || id.IDType == IDIPv4AddrRange || id.IDType == IDIPv6AddrRange {
		return netip.Prefix{}, &ParseError{Field: "ID type", Value: id.IDType,
			Expected: "an address or subnet type", code: NotifyInvalidIDInformation}
	}
	if len(id.Data) != n {
		return netip.Prefix{}, &ParseError{Field: id.IDType.String() + " data length", Value: len(id.Data),
			Expected: fmt.Sprint(n), code: NotifyInvalidIDInformation}
	}
	if id.IDType == IDIPv4Addr || id.IDType == IDIPv6Addr {
		a, _ := netip.AddrFromSlice(id.Data)
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	addr, mask := id.Data[:n/2], id.Data[n/2:]
	ones := 0
	for _, m := range mask {
		ones += bits.OnesCount8(m)
	}
	for i, m := range mask {
		if want := prefixByte(ones - 8*i); m != want {
			return netip.Prefix{}, &ParseError{Field: id.IDType.String() + " mask", Value: fmt.Sprintf("%x", mask),
				Expected: "contiguous ones", code: NotifyInvalidIDInformation}
		}
	}
	a, _ := netip.AddrFromSlice(addr)
	return netip.PrefixFrom(a, ones).Masked(), nil
}

// prefixByte returns the mask octet holding the next n prefix bits (n may be <= 0 or > 8).
func prefixByte(n int) byte {
	switch {
	case n <= 0:
		return 0
	case n >= 8:
		return 0xff
	}
	return ^byte(0xff >> n)
}
