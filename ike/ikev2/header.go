package ikev2

import (
	"encoding/binary"
	"fmt"
)

// HeaderLen is the size of the IKE header (RFC 7296 section 3.1).
const HeaderLen = 28

// Version is the header's version octet espgw sends: major 2, minor 0.
const Version = 0x20

// Flags are the header flags.
type Flags uint8

// Header flags.
const (
	FlagInitiator Flags = 0x08 // sent by the original initiator of the IKE SA
	FlagVersion   Flags = 0x10 // the sender could speak a higher major version
	FlagResponse  Flags = 0x20 // this message answers a request with the same message ID
)

// SPI is an IKE SA SPI (the IKEv1 "cookie").
type SPI [8]byte

func (s SPI) String() string { return fmt.Sprintf("%x", s[:]) }

// Header is the IKE header.
type Header struct {
	SPIi, SPIr  SPI
	NextPayload PayloadType
	Version     uint8 // major << 4 | minor
	Exchange    ExchangeType
	Flags       Flags
	MessageID   uint32
	Length      uint32
}

// byte offsets of the header fields
const (
	posNext     = 16
	posVersion  = 17
	posExchange = 18
	posFlags    = 19
	posMsgID    = 20
	posLength   = 24
)

// ParseHeader decodes the header at the start of b. A major version other than 2 is an
// INVALID_MAJOR_VERSION error (section 2.5: minor versions are ignored).
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, invalid("message size", len(b), fmt.Sprintf(">= %d (the header)", HeaderLen))
	}
	var h Header
	copy(h.SPIi[:], b)
	copy(h.SPIr[:], b[8:])
	h.NextPayload = PayloadType(b[posNext])
	h.Version = b[posVersion]
	h.Exchange = ExchangeType(b[posExchange])
	h.Flags = Flags(b[posFlags])
	h.MessageID = binary.BigEndian.Uint32(b[posMsgID:])
	h.Length = binary.BigEndian.Uint32(b[posLength:])
	if h.Version>>4 != 2 {
		return Header{}, &ParseError{Field: "major version", Value: h.Version >> 4, Expected: "2",
			code: NotifyInvalidMajorVersion}
	}
	return h, nil
}

// AppendTo appends the encoded header to b.
func (h Header) AppendTo(b []byte) []byte {
	b = append(b, h.SPIi[:]...)
	b = append(b, h.SPIr[:]...)
	b = append(b, byte(h.NextPayload), h.Version, byte(h.Exchange), byte(h.Flags))
	b = binary.BigEndian.AppendUint32(b, h.MessageID)
	return binary.BigEndian.AppendUint32(b, h.Length)
}

// IsResponse reports whether the message answers a request.
func (h Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }
