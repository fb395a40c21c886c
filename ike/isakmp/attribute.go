package isakmp

import (
	"encoding/binary"
	"fmt"
)

// Attribute is one data attribute of a transform (RFC 2408 section 3.3). Basic attributes
// use the TV form (AF bit set) and carry exactly two value octets; the others use the TLV
// form with a value of up to 65535 octets.
type Attribute struct {
	Type  uint16 // the attribute class, without the AF bit
	Basic bool
	Value []byte
}

const (
	attrFormatTV  = 0x8000 // the AF bit
	attrHeaderLen = 4      // type and length, or type and value
)

// Phase 1 (ISAKMP SA) attribute classes, RFC 2409 Appendix A. The Basic ones must be sent in
// TV form; the Variable ones (marked V) use TLV but may be sent as TV when the value fits in
// two octets.
const (
	AttrEncryptionAlgorithm = 1
	AttrHashAlgorithm       = 2
	AttrAuthMethod          = 3
	AttrGroupDescription    = 4
	AttrGroupType           = 5
	AttrGroupPrime          = 6  // V
	AttrGroupGeneratorOne   = 7  // V
	AttrGroupGeneratorTwo   = 8  // V
	AttrGroupCurveA         = 9  // V
	AttrGroupCurveB         = 10 // V
	AttrLifeType            = 11
	AttrLifeDuration        = 12 // V
	AttrPRF                 = 13
	AttrKeyLength           = 14
	AttrFieldSize           = 15
	AttrGroupOrder          = 16 // V
)

// IPsec DOI (phase 2) attribute classes, RFC 2407 section 4.5; same Basic/Variable rule.
const (
	IPsecAttrLifeType          = 1
	IPsecAttrLifeDuration      = 2 // V
	IPsecAttrGroupDescription  = 3
	IPsecAttrEncapsulationMode = 4
	IPsecAttrAuthAlgorithm     = 5
	IPsecAttrKeyLength         = 6
	IPsecAttrKeyRounds         = 7
	IPsecAttrCompressDictSize  = 8
	IPsecAttrCompressPrivAlg   = 9 // V
)

// BasicOnly reports whether attribute class t must be sent in TV form: per RFC 2409
// Appendix A when proto is ProtoISAKMP, per RFC 2407 section 4.5 otherwise. Unknown classes
// report false.
func BasicOnly(proto ProtocolID, t uint16) bool {
	if proto == ProtoISAKMP {
		switch t {
		case AttrGroupPrime, AttrGroupGeneratorOne, AttrGroupGeneratorTwo, AttrGroupCurveA,
			AttrGroupCurveB, AttrLifeDuration, AttrGroupOrder:
			return false
		}
		return t >= AttrEncryptionAlgorithm && t <= AttrFieldSize
	}
	switch t {
	case IPsecAttrLifeDuration, IPsecAttrCompressPrivAlg:
		return false
	}
	return t >= IPsecAttrLifeType && t <= IPsecAttrCompressDictSize
}

// BasicAttribute returns the TV attribute t = v.
func BasicAttribute(t, v uint16) Attribute {
	return Attribute{Type: t, Basic: true, Value: binary.BigEndian.AppendUint16(nil, v)}
}

// VarAttribute returns the TLV attribute t = v.
func VarAttribute(t uint16, v []byte) Attribute {
	return Attribute{Type: t, Value: v}
}

// LifeAttribute returns a life duration (or any variable integer) attribute in the shortest
// form: TV up to 0xffff, otherwise TLV with a 4-octet or, above 0xffffffff, 8-octet value.
func LifeAttribute(t uint16, v uint64) Attribute {
	switch {
	case v <= 0xffff:
		return BasicAttribute(t, uint16(v))
	case v <= 0xffffffff:
		return VarAttribute(t, binary.BigEndian.AppendUint32(nil, uint32(v)))
	}
	return VarAttribute(t, binary.BigEndian.AppendUint64(nil, v))
}

// Uint returns the value as an unsigned integer: the two octets of a TV attribute or the
// big-endian TLV value of 1 to 8 octets.
func (a Attribute) Uint() (uint64, error) {
	if len(a.Value) == 0 || len(a.Value) > 8 || a.Basic && len(a.Value) != 2 {
		return 0, malformed(fmt.Sprintf("attribute %d value length", a.Type), len(a.Value), "1..8 (2 if basic)")
	}
	var v uint64
	for _, c := range a.Value {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// ParseAttributes decodes the attributes filling b (the rest of a transform payload). The
// values alias b.
func ParseAttributes(b []byte) ([]Attribute, error) {
	var as []Attribute
	if n := countAttributes(b); n > 0 {
		as = make([]Attribute, 0, n)
	}
	for len(b) > 0 {
		if len(as) == MaxAttributes {
			return nil, badProposal("attribute count", len(as)+1, fmt.Sprintf("<= %d", MaxAttributes))
		}
		if len(b) < attrHeaderLen {
			return nil, badProposal("attribute header size", len(b), fmt.Sprintf(">= %d", attrHeaderLen))
		}
		typ := binary.BigEndian.Uint16(b)
		a := Attribute{Type: typ &^ attrFormatTV, Basic: typ&attrFormatTV != 0}
		if a.Basic {
			a.Value, b = b[2:attrHeaderLen:attrHeaderLen], b[attrHeaderLen:]
		} else {
			n := int(binary.BigEndian.Uint16(b[2:]))
			b = b[attrHeaderLen:]
			if n > len(b) {
				return nil, badProposal(fmt.Sprintf("attribute %d length", a.Type), n, atMost(len(b)))
			}
			a.Value, b = b[:n:n], b[n:]
		}
		as = append(as, a)
	}
	return as, nil
}

// countAttributes counts the attributes in b up to MaxAttributes+1 so that ParseAttributes
// allocates once; a truncated attribute ends the count (the parser reports it).
func countAttributes(b []byte) (n int) {
	for ; len(b) >= attrHeaderLen && n <= MaxAttributes; n++ {
		l := attrHeaderLen
		if binary.BigEndian.Uint16(b)&attrFormatTV == 0 {
			l += int(binary.BigEndian.Uint16(b[2:]))
		}
		b = b[min(l, len(b)):]
	}
	return n
}

// AppendAttributes appends the wire form of as to b. A Basic attribute's Value must be two
// octets and a TLV value at most 65535; AppendAttributes panics otherwise.
func AppendAttributes(b []byte, as []Attribute) []byte {
	for _, a := range as {
		if a.Basic && len(a.Value) != 2 || len(a.Value) > 0xffff {
			panic(fmt.Sprintf("isakmp: attribute %d (basic %t) with %d-byte value", a.Type, a.Basic, len(a.Value)))
		}
		if a.Basic {
			b = binary.BigEndian.AppendUint16(b, a.Type|attrFormatTV)
		} else {
			b = binary.BigEndian.AppendUint16(b, a.Type&^attrFormatTV)
			b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
		}
		b = append(b, a.Value...)
	}
	return b
}
