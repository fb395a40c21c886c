// Package isakmp encodes and decodes IKEv1 ISAKMP messages: the RFC 2408 header and generic
// payload chain, every payload RFC 2408 defines with its RFC 2407 IPsec DOI layout, and the
// RFC 3947 NAT-T payloads (also under their draft numbers 130 and 131).
//
// Decoding is strict about lengths and liberal about reserved bytes, and never panics.
// Decoded payloads alias the input: byte slices in them (Data, SPI, Value, ...) point into
// the buffer passed to Decode or DecodePayloads, so the caller must not reuse that buffer
// while it uses them. Their capacity ends with their length, so appending to one copies.
package isakmp

import (
	"encoding/binary"
	"fmt"
)

const (
	HeaderLen = 28   // the fixed ISAKMP header
	Version   = 0x10 // major version 1, minor version 0
)

// Offsets of the ISAKMP header fields (RFC 2408 section 3.1).
const (
	posInitiatorCookie = 0
	posResponderCookie = 8
	posNextPayload     = 16
	posVersion         = 17
	posExchange        = 18
	posFlags           = 19
	posMessageID       = 20
	posLength          = 24
)

// ExchangeType is the exchange type of an ISAKMP message (RFC 2408 section 3.1, RFC 2409).
type ExchangeType uint8

const (
	ExchangeBase               ExchangeType = 1
	ExchangeIdentityProtection ExchangeType = 2 // main mode
	ExchangeAuthOnly           ExchangeType = 3
	ExchangeAggressive         ExchangeType = 4
	ExchangeInformational      ExchangeType = 5
	ExchangeTransaction        ExchangeType = 6 // mode config (draft-ietf-ipsec-isakmp-mode-cfg)
	ExchangeQuickMode          ExchangeType = 32
	ExchangeNewGroupMode       ExchangeType = 33
)

var exchangeNames = map[ExchangeType]string{
	ExchangeBase:               "Base",
	ExchangeIdentityProtection: "Main Mode",
	ExchangeAuthOnly:           "Authentication Only",
	ExchangeAggressive:         "Aggressive",
	ExchangeInformational:      "Informational",
	ExchangeTransaction:        "Transaction",
	ExchangeQuickMode:          "Quick Mode",
	ExchangeNewGroupMode:       "New Group Mode",
}

func (e ExchangeType) String() string {
	if s, ok := exchangeNames[e]; ok {
		return s
	}
	return fmt.Sprintf("ExchangeType(%d)", uint8(e))
}

// Header flags (RFC 2408 section 3.1).
const (
	FlagEncryption = 1 << 0 // payloads after the header are encrypted
	FlagCommit     = 1 << 1
	FlagAuthOnly   = 1 << 2
)

// Header is the fixed ISAKMP header.
type Header struct {
	InitiatorCookie, ResponderCookie [8]byte
	NextPayload                      PayloadType
	Version                          uint8 // major in the high nibble, minor in the low one
	Exchange                         ExchangeType
	Flags                            uint8
	MessageID                        uint32
	Length                           uint32 // of the whole message, header included
}

// ParseHeader decodes the header at the start of b. It accepts version 1.0 only
// (INVALID-MAJOR-VERSION / INVALID-MINOR-VERSION otherwise) and a Length of at least
// HeaderLen; it does not compare Length with len(b), Decode does.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, malformed("message length", len(b), fmt.Sprintf(">= %d", HeaderLen))
	}
	h := Header{
		NextPayload: PayloadType(b[posNextPayload]),
		Version:     b[posVersion],
		Exchange:    ExchangeType(b[posExchange]),
		Flags:       b[posFlags],
		MessageID:   binary.BigEndian.Uint32(b[posMessageID:]),
		Length:      binary.BigEndian.Uint32(b[posLength:]),
	}
	copy(h.InitiatorCookie[:], b[posInitiatorCookie:posResponderCookie])
	copy(h.ResponderCookie[:], b[posResponderCookie:posNextPayload])
	if major := h.Version >> 4; major != Version>>4 {
		return Header{}, &ParseError{Field: "major version", Value: major, Expected: "1", code: NotifyInvalidMajorVersion}
	}
	if minor := h.Version & 0x0f; minor != Version&0x0f {
		return Header{}, &ParseError{Field: "minor version", Value: minor, Expected: "0", code: NotifyInvalidMinorVersion}
	}
	if h.Length < HeaderLen {
		return Header{}, &ParseError{Field: "header length", Value: h.Length, Expected: fmt.Sprintf(">= %d", HeaderLen), code: NotifyUnequalPayloadLengths}
	}
	return h, nil
}

// AppendTo appends the header's wire form to b, fields as they are (Length is not computed).
func (h Header) AppendTo(b []byte) []byte {
	b = append(b, h.InitiatorCookie[:]...)
	b = append(b, h.ResponderCookie[:]...)
	b = append(b, byte(h.NextPayload), h.Version, byte(h.Exchange), h.Flags)
	b = binary.BigEndian.AppendUint32(b, h.MessageID)
	return binary.BigEndian.AppendUint32(b, h.Length)
}
