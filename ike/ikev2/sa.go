package ikev2

import (
	"encoding/binary"
	"fmt"
)

// SA is the Security Association payload: the proposals, in order of preference (RFC 7296
// section 3.3).
type SA struct {
	Proposals []Proposal
}

// Proposal is one proposal substructure. Number starts at 1 and rises by one per proposal;
// SPI is empty in an IKE_SA_INIT, 8 bytes when rekeying an IKE SA, 4 bytes for ESP and AH.
type Proposal struct {
	Number     uint8
	Protocol   ProtocolID
	SPI        []byte
	Transforms []Transform
}

// Transform is one transform substructure: a type, an algorithm and its attributes.
type Transform struct {
	Type       TransformType
	ID         uint16
	Attributes []Attribute
}

// Attribute is a transform attribute. RFC 7296 defines only the key length, in TV format
// (Format set, Value the key length in bits); TLV attributes keep their bytes in Data.
type Attribute struct {
	Type  uint16 // without the Format bit
	TV    bool   // Format bit: the value is the 16-bit Value, not Data
	Value uint16
	Data  []byte
}

// KeyLength returns the transform's Key Length attribute in bits, or 0 if it has none.
func (t Transform) KeyLength() int {
	for _, a := range t.Attributes {
		if a.TV && a.Type == AttributeKeyLength {
			return int(a.Value)
		}
	}
	return 0
}

// substructure "last or more" values (sections 3.3.1, 3.3.2)
const (
	lastSubstructure = 0
	moreProposals    = 2
	moreTransforms   = 3
	proposalHdrLen   = 8
	transformHdrLen  = 8
	attrFormatTV     = 0x8000
)

func (*SA) Type() PayloadType { return PayloadSA }

func (s *SA) appendBody(b []byte) []byte {
	for i, p := range s.Proposals {
		more := byte(moreProposals)
		if i == len(s.Proposals)-1 {
			more = lastSubstructure
		}
		start := len(b)
		b = append(b, more, 0, 0, 0, p.Number, byte(p.Protocol), byte(len(p.SPI)), byte(len(p.Transforms)))
		b = append(b, p.SPI...)
		for j, t := range p.Transforms {
			more := byte(moreTransforms)
			if j == len(p.Transforms)-1 {
				more = lastSubstructure
			}
			tstart := len(b)
			b = append(b, more, 0, 0, 0, byte(t.Type), 0)
			b = binary.BigEndian.AppendUint16(b, t.ID)
			for _, a := range t.Attributes {
				if a.TV {
					b = binary.BigEndian.AppendUint16(b, a.Type|attrFormatTV)
					b = binary.BigEndian.AppendUint16(b, a.Value)
					continue
				}
				b = binary.BigEndian.AppendUint16(b, a.Type)
				b = binary.BigEndian.AppendUint16(b, uint16(len(a.Data)))
				b = append(b, a.Data...)
			}
			binary.BigEndian.PutUint16(b[tstart+2:], uint16(len(b)-tstart))
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b
}

func decodeSA(b []byte) (*SA, error) {
	sa := &SA{}
	for more := true; more; {
		if len(b) < proposalHdrLen {
			return nil, invalid("proposal header", len(b), fmt.Sprintf(">= %d bytes", proposalHdrLen))
		}
		switch b[0] {
		case lastSubstructure:
			more = false
		case moreProposals:
		default:
			return nil, invalid("proposal last/more", b[0], "0 or 2")
		}
		n := int(binary.BigEndian.Uint16(b[2:]))
		spiSize := int(b[6])
		if n < proposalHdrLen+spiSize || n > len(b) {
			return nil, invalid("proposal length", n, fmt.Sprintf(">= %d and %s", proposalHdrLen+spiSize, atMost(len(b))))
		}
		p := Proposal{Number: b[4], Protocol: ProtocolID(b[5]), SPI: field(b[proposalHdrLen : proposalHdrLen+spiSize])}
		count := int(b[7])
		ts, err := decodeTransforms(b[proposalHdrLen+spiSize : n])
		if err != nil {
			return nil, err
		}
		if len(ts) != count {
			return nil, invalid("number of transforms", count, fmt.Sprintf("%d (the transforms present)", len(ts)))
		}
		p.Transforms = ts
		sa.Proposals = append(sa.Proposals, p)
		b = b[n:]
	}
	if len(b) != 0 {
		return nil, invalid("bytes after the last proposal", len(b), "0")
	}
	return sa, nil
}

func decodeTransforms(b []byte) ([]Transform, error) {
	var ts []Transform
	for len(b) > 0 {
		if len(b) < transformHdrLen {
			return nil, invalid("transform header", len(b), fmt.Sprintf(">= %d bytes", transformHdrLen))
		}
		last := b[0] == lastSubstructure
		if !last && b[0] != moreTransforms {
			return nil, invalid("transform last/more", b[0], "0 or 3")
		}
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n < transformHdrLen || n > len(b) {
			return nil, invalid("transform length", n, fmt.Sprintf(">= %d and %s", transformHdrLen, atMost(len(b))))
		}
		t := Transform{Type: TransformType(b[4]), ID: binary.BigEndian.Uint16(b[6:])}
		attrs, err := decodeAttributes(b[transformHdrLen:n])
		if err != nil {
			return nil, err
		}
		t.Attributes = attrs
		ts = append(ts, t)
		b = b[n:]
		if last != (len(b) == 0) {
			return nil, invalid("transform last/more", map[bool]string{true: "last", false: "more"}[last],
				"last exactly on the proposal's final transform")
		}
	}
	return ts, nil
}

func decodeAttributes(b []byte) ([]Attribute, error) {
	var as []Attribute
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, invalid("transform attribute", len(b), ">= 4 bytes")
		}
		t := binary.BigEndian.Uint16(b)
		v := binary.BigEndian.Uint16(b[2:])
		if t&attrFormatTV != 0 {
			as = append(as, Attribute{Type: t &^ attrFormatTV, TV: true, Value: v})
			b = b[4:]
			continue
		}
		if int(v) > len(b)-4 {
			return nil, invalid("transform attribute length", v, atMost(len(b)-4))
		}
		as = append(as, Attribute{Type: t, Data: field(b[4 : 4+int(v)])})
		b = b[4+int(v):]
	}
	return as, nil
}
