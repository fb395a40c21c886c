package isakmp

import "fmt"

// NATD is the NAT discovery payload (RFC 3947 section 3.2): HASH(CKY-I | CKY-R | IP | port).
// Draft is set when it travels under the pre-RFC number 130, which the reply must mirror.
type NATD struct {
	Hash  []byte
	Draft bool
}

// NATOA is the NAT original address payload (RFC 3947 section 5.2): ID type, three reserved
// octets, then an IPv4 (4) or IPv6 (16 octets) address. Draft means payload number 131.
type NATOA struct {
	IDType  IDType
	Address []byte
	Draft   bool
}

func (p *NATD) Type() PayloadType {
	if p.Draft {
		return PayloadNATDDraft
	}
	return PayloadNATD
}

func (p *NATOA) Type() PayloadType {
	if p.Draft {
		return PayloadNATOADraft
	}
	return PayloadNATOA
}

const natoaFixedLen = 4 // ID type, 3 reserved

func decodeNATOA(b []byte, draft bool) (*NATOA, error) {
	oa := &NATOA{IDType: IDType(b[0]), Address: b[natoaFixedLen:], Draft: draft}
	if oa.IDType != IDIPv4Addr && oa.IDType != IDIPv6Addr {
		return nil, malformed("NAT-OA ID type", oa.IDType, "ID_IPV4_ADDR or ID_IPV6_ADDR")
	}
	if n := oa.IDType.addrLen(); len(oa.Address) != n {
		return nil, malformed("NAT-OA address length", len(oa.Address), fmt.Sprint(n))
	}
	return oa, nil
}

func (p *NATD) appendBody(b []byte) []byte { return append(b, p.Hash...) }

func (p *NATOA) appendBody(b []byte) []byte {
	return append(append(b, byte(p.IDType), 0, 0, 0), p.Address...)
}
