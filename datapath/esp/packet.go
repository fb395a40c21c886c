// Package esp implements tunnel-mode ESP (RFC 4303) packet protection in Go: 3DES-CBC and
// AES-CBC with HMAC-SHA1-96 or HMAC-SHA2 (RFC 2451, 3602, 2404, 4868), and AES-GCM with a
// 16-byte ICV (RFC 4106). Packets are built and opened in place in caller buffers; the
// steady state does not allocate.
package esp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire layout of the ESP header (RFC 4303 section 2).
const (
	posSPI     = 0
	posSeq     = 4
	HeaderLen  = 8 // SPI + sequence number; the IV follows
	trailerLen = 2 // pad length + next header
)

// Next header values carried in tunnel mode (IANA protocol numbers).
const (
	NextHeaderIPv4  = 4
	NextHeaderIPv6  = 41
	NextHeaderDummy = 59 // RFC 4303 section 2.6 dummy packet, always dropped
)

// Headroom and Tailroom are what Seal needs around the payload for the largest transform:
// header + 16-byte IV in front; up to 15 bytes padding + trailer + 32-byte ICV behind.
const (
	Headroom = HeaderLen + 16
	Tailroom = 15 + trailerLen + 32
)

// Errors returned by Open and Seal; match them with errors.Is.
var (
	ErrTruncated      = errors.New("esp: packet truncated")
	ErrAuth           = errors.New("esp: ICV mismatch")
	ErrReplay         = errors.New("esp: replayed or too old sequence number")
	ErrPadding        = errors.New("esp: bad padding")
	ErrNextHeader     = errors.New("esp: unexpected next header")
	ErrSeqOverflow    = errors.New("esp: sequence number exhausted, rekey required")
	ErrHardLifetime   = errors.New("esp: hard lifetime reached")
	ErrBuffer         = errors.New("esp: buffer too small")
	ErrWrongSPI       = errors.New("esp: packet SPI does not match the SA")
	ErrBadTransform   = errors.New("esp: unsupported transform")
	ErrKeyLength      = errors.New("esp: wrong key length")
	errShortForSPI    = fmt.Errorf("esp: header shorter than %d bytes: %w", HeaderLen, ErrTruncated)
	errWrongDirection = errors.New("esp: operation not valid for the SA direction")
)

// Packet is a view of an ESP packet starting at the SPI. Accessors assume the length was
// checked with Parse.
type Packet []byte

// Parse checks that b holds at least an ESP header and returns it as a Packet.
func Parse(b []byte) (Packet, error) {
	if len(b) < HeaderLen {
		return nil, errShortForSPI
	}
	return Packet(b), nil
}

// SPI is the Security Parameters Index (host byte order).
func (p Packet) SPI() uint32 { return binary.BigEndian.Uint32(p[posSPI:]) }

// Seq is the low 32 bits of the sequence number (no ESN).
func (p Packet) Seq() uint32 { return binary.BigEndian.Uint32(p[posSeq:]) }

func (p Packet) setHeader(spi, seq uint32) {
	binary.BigEndian.PutUint32(p[posSPI:], spi)
	binary.BigEndian.PutUint32(p[posSeq:], seq)
}
