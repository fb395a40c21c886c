package ikev2

import (
	"encoding/binary"
	"fmt"
)

// genericHeaderLen is the size of the generic payload header (RFC 7296 section 3.2).
const genericHeaderLen = 4

// flagCritical is the critical bit of the generic payload header.
const flagCritical = 0x80

// Payload is one decoded payload.
type Payload interface {
	Type() PayloadType
	// appendBody appends the payload's body (after the generic header) to b.
	appendBody(b []byte) []byte
}

// Unknown is a payload of a type this codec does not know and whose critical bit is clear,
// kept as it came for the engine to skip (RFC 7296 section 2.5). One with the critical bit set
// is a decoding error that asks for UNSUPPORTED_CRITICAL_PAYLOAD.
type Unknown struct {
	PayloadType PayloadType
	Body        []byte
}

func (u *Unknown) Type() PayloadType          { return u.PayloadType }
func (u *Unknown) appendBody(b []byte) []byte { return append(b, u.Body...) }

// DecodePayloads decodes the chain of payloads in b that starts with type first. An Encrypted
// (SK) or EncryptedFragment (SKF) payload ends the chain: it must be the last one (section
// 3.14), its Next Payload field names the first payload inside it. The payloads alias b.
func DecodePayloads(first PayloadType, b []byte) ([]Payload, error) {
	var ps []Payload
	next := first
	for next != PayloadNone {
		if len(b) < genericHeaderLen {
			return nil, invalid(fmt.Sprintf("%v payload header", next), len(b), fmt.Sprintf(">= %d bytes", genericHeaderLen))
		}
		typ := next
		next = PayloadType(b[0])
		critical := b[1]&flagCritical != 0
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n < genericHeaderLen || n > len(b) {
			return nil, invalid(fmt.Sprintf("%v payload length", typ), n, fmt.Sprintf(">= %d and %s", genericHeaderLen, atMost(len(b))))
		}
		body := b[genericHeaderLen:n]
		b = b[n:]
		p, err := decodeBody(typ, next, critical, body)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
		if typ == PayloadEncrypted || typ == PayloadEncryptedFragment {
			if len(b) != 0 {
				return nil, invalid(fmt.Sprintf("bytes after the %v payload", typ), len(b), "0 (it must be the last payload)")
			}
			return ps, nil
		}
	}
	if len(b) != 0 {
		return nil, invalid("bytes after the last payload", len(b), "0")
	}
	return ps, nil
}

// decodeBody decodes one payload's body; next is its Next Payload field (for SK and SKF, the
// first inner payload).
func decodeBody(typ, next PayloadType, critical bool, body []byte) (Payload, error) {
	switch typ {
	case PayloadSA:
		return decodeSA(body)
	case PayloadKE:
		return decodeKE(body)
	case PayloadIDi, PayloadIDr:
		return decodeID(typ, body)
	case PayloadCert, PayloadCertReq:
		return decodeCert(typ, body)
	case PayloadAuth:
		return decodeAuth(body)
	case PayloadNonce:
		return decodeNonce(body)
	case PayloadNotify:
		return decodeNotify(body)
	case PayloadDelete:
		return decodeDelete(body)
	case PayloadVendorID:
		return &VendorID{Data: field(body)}, nil
	case PayloadTSi, PayloadTSr:
		return decodeTS(typ, body)
	case PayloadEncrypted:
		return &Encrypted{Inner: next, Data: field(body)}, nil
	case PayloadEncryptedFragment:
		return decodeFragment(next, body)
	case PayloadConfiguration:
		return decodeCP(body)
	case PayloadEAP:
		return &EAP{Data: field(body)}, nil
	}
	if critical {
		return nil, &ParseError{Field: "critical payload type", Value: uint8(typ), Expected: "a type this implementation supports",
			code: NotifyUnsupportedCriticalPayload}
	}
	return &Unknown{PayloadType: typ, Body: field(body)}, nil
}

// field returns b, or nil when b is empty, so that decoded payloads compare equal to built ones.
func field(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// AppendPayloads appends ps, each with its generic header, to b. The Next Payload fields chain
// the payloads; an Encrypted or EncryptedFragment payload's names its first inner payload.
func AppendPayloads(b []byte, ps []Payload) []byte {
	for i, p := range ps {
		next := PayloadNone
		if i+1 < len(ps) {
			next = ps[i+1].Type()
		}
		switch q := p.(type) {
		case *Encrypted:
			next = q.Inner
		case *EncryptedFragment:
			next = q.Inner
		}
		start := len(b)
		b = append(b, byte(next), 0, 0, 0)
		b = p.appendBody(b)
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b
}
