package isakmp

import (
	"encoding/binary"
	"fmt"
)

// PayloadType identifies a payload in the next-payload chain (RFC 2408 section 3.1,
// RFC 3947 section 3).
type PayloadType uint8

const (
	PayloadNone         PayloadType = 0 // end of the chain
	PayloadSA           PayloadType = 1
	PayloadProposal     PayloadType = 2 // only inside an SA payload
	PayloadTransform    PayloadType = 3 // only inside a proposal
	PayloadKE           PayloadType = 4
	PayloadID           PayloadType = 5
	PayloadCERT         PayloadType = 6
	PayloadCR           PayloadType = 7
	PayloadHash         PayloadType = 8
	PayloadSIG          PayloadType = 9
	PayloadNonce        PayloadType = 10
	PayloadNotification PayloadType = 11
	PayloadDelete       PayloadType = 12
	PayloadVendorID     PayloadType = 13
	PayloadNATD         PayloadType = 20  // RFC 3947
	PayloadNATOA        PayloadType = 21  // RFC 3947
	PayloadNATDDraft    PayloadType = 130 // draft-ietf-ipsec-nat-t-ike-02/03
	PayloadNATOADraft   PayloadType = 131 // draft-ietf-ipsec-nat-t-ike-02/03
)

var payloadNames = map[PayloadType]string{
	PayloadNone:         "NONE",
	PayloadSA:           "SA",
	PayloadProposal:     "P",
	PayloadTransform:    "T",
	PayloadKE:           "KE",
	PayloadID:           "ID",
	PayloadCERT:         "CERT",
	PayloadCR:           "CR",
	PayloadHash:         "HASH",
	PayloadSIG:          "SIG",
	PayloadNonce:        "NONCE",
	PayloadNotification: "N",
	PayloadDelete:       "D",
	PayloadVendorID:     "VID",
	PayloadNATD:         "NAT-D",
	PayloadNATOA:        "NAT-OA",
	PayloadNATDDraft:    "NAT-D(draft)",
	PayloadNATOADraft:   "NAT-OA(draft)",
}

func (t PayloadType) String() string {
	if s, ok := payloadNames[t]; ok {
		return s
	}
	return fmt.Sprintf("PayloadType(%d)", uint8(t))
}

// Payload is one decoded payload. The implementations are this package's pointer types
// (*SA, *KeyExchange, *Identification, ..., *Unknown); the encoders accept only those.
type Payload interface {
	Type() PayloadType
}

// RawPayload is the exact wire form of one top-level payload, generic header included,
// as a slice of the decoded buffer. RFC 2409 hashes are computed over these bytes.
type RawPayload struct {
	Type  PayloadType
	Bytes []byte
}

// Body returns the payload without its 4-byte generic header.
func (r RawPayload) Body() []byte { return r.Bytes[genericHeaderLen:] }

// Sanity limits against pathological messages; real ones stay far below them.
const (
	MaxPayloads   = 64 // top-level payloads per message
	MaxProposals  = 64 // proposals per SA payload
	MaxAttributes = 64 // attributes per transform
)

// genericHeaderLen is the next payload, reserved and payload length octets every payload,
// proposal and transform starts with (RFC 2408 section 3.2).
const genericHeaderLen = 4

// bodyCoder is implemented by every Payload of this package.
type bodyCoder interface {
	Payload
	appendBody(b []byte) []byte
}

// splitGeneric splits off the payload of type t at the start of b using its generic header,
// checking that its length covers the generic header and fixed bytes after it and fits b.
// It returns the next-payload field, the whole payload and the rest.
func splitGeneric(t PayloadType, fixed int, b []byte) (next PayloadType, payload, rest []byte, err error) {
	if len(b) < genericHeaderLen {
		return 0, nil, nil, malformed(what(t)+" header size", len(b), fmt.Sprintf(">= %d", genericHeaderLen))
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n < genericHeaderLen+fixed {
		return 0, nil, nil, malformed(what(t)+" length", n, fmt.Sprintf(">= %d", genericHeaderLen+fixed))
	}
	if n > len(b) {
		return 0, nil, nil, malformed(what(t)+" length", n, atMost(len(b)))
	}
	return PayloadType(b[0]), b[:n:n], b[n:], nil
}

// what names a payload, proposal or transform in error fields.
func what(t PayloadType) string {
	switch t {
	case PayloadProposal:
		return "proposal"
	case PayloadTransform:
		return "transform"
	}
	return t.String() + " payload"
}

// DecodePayloads decodes the payload chain in b that starts with a payload of type first,
// following next-payload fields until one is PayloadNone. It returns the payloads, their raw
// wire bytes (same order) and n, the number of bytes the chain occupies. Bytes after the last
// payload are not an error (they are padding in a decrypted body); Decode rejects them.
func DecodePayloads(first PayloadType, b []byte) (ps []Payload, raw []RawPayload, n int, err error) {
	if count := chainLen(first, b); count > 0 {
		ps, raw = make([]Payload, 0, count), make([]RawPayload, 0, count)
	}
	for t, rest := first, b; t != PayloadNone; {
		if len(ps) == MaxPayloads {
			return nil, nil, 0, malformed("payload count", len(ps)+1, fmt.Sprintf("<= %d", MaxPayloads))
		}
		var next PayloadType
		var whole []byte
		next, whole, rest, err = splitGeneric(t, fixedLen(t), rest)
		if err != nil {
			return nil, nil, 0, err
		}
		p, err := decodeBody(t, whole[genericHeaderLen:])
		if err != nil {
			return nil, nil, 0, err
		}
		ps = append(ps, p)
		raw = append(raw, RawPayload{Type: t, Bytes: whole})
		n += len(whole)
		t = next
	}
	return ps, raw, n, nil
}

// chainLen counts the payloads of the chain in b up to MaxPayloads+1 so that DecodePayloads
// allocates once; a malformed generic header ends the count (the decoder reports it).
func chainLen(t PayloadType, b []byte) (n int) {
	for ; t != PayloadNone && n <= MaxPayloads && len(b) >= genericHeaderLen; n++ {
		l := int(binary.BigEndian.Uint16(b[2:]))
		if l < genericHeaderLen || l > len(b) {
			return n + 1
		}
		t, b = PayloadType(b[0]), b[l:]
	}
	return n
}

// fixedLen returns how many bytes a top-level payload of type t has at least after its
// generic header; the body decoders rely on it.
func fixedLen(t PayloadType) int {
	switch t {
	case PayloadSA:
		return saFixedLen
	case PayloadID:
		return idFixedLen
	case PayloadCERT, PayloadCR:
		return certFixedLen
	case PayloadNonce:
		return MinNonceLen
	case PayloadNotification:
		return notificationFixedLen
	case PayloadDelete:
		return deleteFixedLen
	case PayloadNATOA, PayloadNATOADraft:
		return natoaFixedLen
	}
	return 0
}

// decodeBody decodes the body of a top-level payload of type t, which has at least
// fixedLen(t) bytes.
func decodeBody(t PayloadType, body []byte) (Payload, error) {
	switch t {
	case PayloadSA:
		return decodeSA(body)
	case PayloadKE:
		return &KeyExchange{Data: body}, nil
	case PayloadID:
		return decodeIdentification(body)
	case PayloadCERT:
		return &Certificate{Encoding: body[0], Data: body[certFixedLen:]}, nil
	case PayloadCR:
		return &CertificateRequest{Encoding: body[0], Data: body[certFixedLen:]}, nil
	case PayloadHash:
		return &Hash{Data: body}, nil
	case PayloadSIG:
		return &Signature{Data: body}, nil
	case PayloadNonce:
		return decodeNonce(body)
	case PayloadNotification:
		return decodeNotification(body)
	case PayloadDelete:
		return decodeDelete(body)
	case PayloadVendorID:
		return &VendorID{Data: body}, nil
	case PayloadNATD, PayloadNATDDraft:
		return &NATD{Hash: body, Draft: t == PayloadNATDDraft}, nil
	case PayloadNATOA, PayloadNATOADraft:
		return decodeNATOA(body, t == PayloadNATOADraft)
	}
	// Proposal and transform payloads are only valid inside an SA; at top level they are
	// as unexpected as any unknown type.
	return &Unknown{PayloadType: t, Data: body}, nil
}

// AppendPayloads appends the payload chain ps to b, setting each generic header's
// next-payload (PayloadNone for the last) and length. It panics if a payload is not one of
// this package's types or its body exceeds the 16-bit length field.
func AppendPayloads(b []byte, ps []Payload) []byte {
	for i, p := range ps {
		next := PayloadNone
		if i+1 < len(ps) {
			next = ps[i+1].Type()
		}
		b = appendGeneric(b, next, p)
	}
	return b
}

// appendGeneric appends p with a generic header whose next-payload is next.
func appendGeneric(b []byte, next PayloadType, p Payload) []byte {
	start := len(b)
	b = append(b, byte(next), 0, 0, 0)
	b = appendBody(b, p)
	putLength(b, start, p.Type().String())
	return b
}

// putLength stores len(b)-start as the payload length of the generic header at b[start:].
func putLength(b []byte, start int, what string) {
	n := len(b) - start
	if n > 0xffff {
		panic(fmt.Sprintf("isakmp: %s length %d exceeds 65535", what, n))
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(n))
}

// MarshalBody returns the body of p without its generic header, as RFC 2409 hashes it
// (SAi_b, IDii_b). It panics under the same conditions as AppendPayloads.
func MarshalBody(p Payload) []byte {
	return appendBody(nil, p)
}

func appendBody(b []byte, p Payload) []byte {
	c, ok := p.(bodyCoder)
	if !ok {
		panic(fmt.Sprintf("isakmp: cannot encode payload of Go type %T", p))
	}
	return c.appendBody(b)
}
