package isakmp

import (
	"encoding/binary"
	"fmt"
)

// ProtocolID is the protocol a proposal, notification or delete refers to
// (RFC 2407 section 4.4.1).
type ProtocolID uint8

const (
	ProtoISAKMP ProtocolID = 1
	ProtoAH     ProtocolID = 2
	ProtoESP    ProtocolID = 3
	ProtoIPComp ProtocolID = 4
)

func (p ProtocolID) String() string {
	switch p {
	case ProtoISAKMP:
		return "ISAKMP"
	case ProtoAH:
		return "AH"
	case ProtoESP:
		return "ESP"
	case ProtoIPComp:
		return "IPCOMP"
	}
	return fmt.Sprintf("ProtocolID(%d)", uint8(p))
}

// IPsec DOI values (RFC 2407 sections 4.2 and 4.6.1).
const (
	DOIIPsec              = 1
	SituationIdentityOnly = 0x01
	SituationSecrecy      = 0x02 // adds labeled domain fields; not supported
	SituationIntegrity    = 0x04 // adds labeled domain fields; not supported
)

// SA is the Security Association payload (RFC 2408 section 3.4). Its proposals are listed in
// wire order; consecutive proposals with the same Number form one logical (AND) proposal.
type SA struct {
	DOI       uint32
	Situation uint32
	Proposals []Proposal
}

// Proposal is a proposal payload inside an SA (RFC 2408 section 3.5). Its transforms are
// alternatives (OR) in the order of preference.
type Proposal struct {
	Number     uint8
	ProtocolID ProtocolID
	SPI        []byte
	Transforms []Transform
}

// Transform is a transform payload inside a proposal (RFC 2408 section 3.6).
type Transform struct {
	Number     uint8
	ID         uint8 // e.g. TransformKeyIKE for ISAKMP, an ESP transform ID for ESP
	Attributes []Attribute
}

func (*SA) Type() PayloadType { return PayloadSA }

const (
	saFixedLen        = 8 // DOI, situation
	proposalFixedLen  = 4 // number, protocol, SPI size, transform count
	transformFixedLen = 4 // number, ID, 2 reserved
)

// decodeSA decodes an SA body. The situation is 4 octets; with the IPsec DOI the secrecy and
// integrity bits, which append labeled domain fields, are answered SITUATION-NOT-SUPPORTED.
func decodeSA(b []byte) (*SA, error) {
	sa := &SA{DOI: binary.BigEndian.Uint32(b), Situation: binary.BigEndian.Uint32(b[4:])}
	if sa.DOI == DOIIPsec && sa.Situation&(SituationSecrecy|SituationIntegrity) != 0 {
		return nil, &ParseError{Field: "SA situation", Value: sa.Situation,
			Expected: "no SIT_SECRECY or SIT_INTEGRITY bit", code: NotifySituationNotSupported}
	}
	rest := b[saFixedLen:]
	for next := PayloadProposal; next != PayloadNone; {
		if next != PayloadProposal {
			return nil, badProposal("proposal next payload", next, "P (2) or NONE (0)")
		}
		if len(sa.Proposals) == MaxProposals {
			return nil, badProposal("proposal count", len(sa.Proposals)+1, fmt.Sprintf("<= %d", MaxProposals))
		}
		var whole []byte
		var err error
		next, whole, rest, err = splitGeneric(PayloadProposal, proposalFixedLen, rest)
		if err != nil {
			return nil, err
		}
		p, err := decodeProposal(whole[genericHeaderLen:])
		if err != nil {
			return nil, err
		}
		sa.Proposals = append(sa.Proposals, p)
	}
	if len(rest) != 0 {
		return nil, badProposal("bytes after last proposal", len(rest), "0")
	}
	return sa, nil
}

func decodeProposal(b []byte) (Proposal, error) {
	p := Proposal{Number: b[0], ProtocolID: ProtocolID(b[1])}
	spiSize, count := int(b[2]), int(b[3])
	b = b[proposalFixedLen:]
	if spiSize > len(b) {
		return Proposal{}, malformed("proposal SPI size", spiSize, atMost(len(b)))
	}
	p.SPI, b = b[:spiSize:spiSize], b[spiSize:]
	// Every transform takes at least a generic header and its fixed part, which also bounds
	// the allocation below.
	const minTransform = genericHeaderLen + transformFixedLen
	if count == 0 {
		return Proposal{}, badProposal("proposal transform count", count, ">= 1")
	}
	if count*minTransform > len(b) {
		return Proposal{}, badProposal("proposal transform count", count, fmt.Sprintf("<= %d (fitting %d bytes)", len(b)/minTransform, len(b)))
	}
	p.Transforms = make([]Transform, count)
	for i := range p.Transforms {
		next, whole, rest, err := splitGeneric(PayloadTransform, transformFixedLen, b)
		if err != nil {
			return Proposal{}, err
		}
		if next != PayloadTransform && next != PayloadNone {
			return Proposal{}, badProposal("transform next payload", next, "T (3) or NONE (0)")
		}
		if last := i == count-1; last != (next == PayloadNone) {
			return Proposal{}, badProposal("proposal transform count", count, chained(i, next)+" (transforms chained)")
		}
		if p.Transforms[i], err = decodeTransform(whole[genericHeaderLen:]); err != nil {
			return Proposal{}, err
		}
		b = rest
	}
	if len(b) != 0 {
		return Proposal{}, badProposal("bytes after last transform", len(b), "0")
	}
	return p, nil
}

// chained returns how many transforms the chain announces when transform i (0-based) has
// the next-payload field next: i+1 if it ends there, more if it continues.
func chained(i int, next PayloadType) string {
	if next == PayloadNone {
		return fmt.Sprint(i + 1)
	}
	return fmt.Sprintf("> %d", i+1)
}

func decodeTransform(b []byte) (Transform, error) {
	attrs, err := ParseAttributes(b[transformFixedLen:])
	if err != nil {
		return Transform{}, err
	}
	return Transform{Number: b[0], ID: b[1], Attributes: attrs}, nil
}

func (sa *SA) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, sa.DOI)
	b = binary.BigEndian.AppendUint32(b, sa.Situation)
	for i := range sa.Proposals {
		next := PayloadProposal
		if i == len(sa.Proposals)-1 {
			next = PayloadNone
		}
		b = sa.Proposals[i].appendTo(b, next)
	}
	return b
}

// appendTo appends p as a proposal payload with the given next-payload field.
// It panics if p has more than 255 transforms or an SPI longer than 255 bytes.
func (p *Proposal) appendTo(b []byte, next PayloadType) []byte {
	if len(p.Transforms) > 0xff {
		panic(fmt.Sprintf("isakmp: proposal with %d transforms exceeds 255", len(p.Transforms)))
	}
	start := len(b)
	b = append(b, byte(next), 0, 0, 0, p.Number, byte(p.ProtocolID), spiSize(p.SPI), byte(len(p.Transforms)))
	b = append(b, p.SPI...)
	for i := range p.Transforms {
		next := PayloadTransform
		if i == len(p.Transforms)-1 {
			next = PayloadNone
		}
		b = p.Transforms[i].appendTo(b, next)
	}
	putLength(b, start, "proposal")
	return b
}

// appendTo appends t as a transform payload with the given next-payload field.
func (t *Transform) appendTo(b []byte, next PayloadType) []byte {
	start := len(b)
	b = append(b, byte(next), 0, 0, 0, t.Number, t.ID, 0, 0)
	b = AppendAttributes(b, t.Attributes)
	putLength(b, start, "transform")
	return b
}
