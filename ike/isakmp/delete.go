package isakmp

import (
	"encoding/binary"
	"fmt"
)

// Delete is the delete payload (RFC 2408 section 3.15): SPIs of one protocol, all SPISize
// octets long (16, the cookie pair, for ISAKMP).
type Delete struct {
	DOI        uint32
	ProtocolID ProtocolID
	SPISize    uint8
	SPIs       [][]byte
}

func (*Delete) Type() PayloadType { return PayloadDelete }

const deleteFixedLen = 8 // DOI, protocol, SPI size, number of SPIs

// MaxDeleteSPIs caps the SPIs of one Delete payload. Payloads are decoded before their
// HASH is verified, and a datagram of 1-byte SPIs could otherwise make 65535 slices (1.5 MB)
// per message; peers delete SA by SA, a few per payload.
const MaxDeleteSPIs = 256

// decodeDelete requires the SPIs to fill the payload exactly, a nonzero SPI size when
// there are SPIs (a zero size would let 4 bytes claim 65535 of them) and at most
// MaxDeleteSPIs of them.
func decodeDelete(b []byte) (*Delete, error) {
	d := &Delete{DOI: binary.BigEndian.Uint32(b), ProtocolID: ProtocolID(b[4]), SPISize: b[5]}
	count := int(binary.BigEndian.Uint16(b[6:]))
	b = b[deleteFixedLen:]
	if d.SPISize == 0 && count != 0 {
		return nil, malformed("D SPI size", 0, fmt.Sprintf(">= 1 with %d SPIs", count))
	}
	if count > MaxDeleteSPIs {
		return nil, malformed("D number of SPIs", count, fmt.Sprintf("at most %d", MaxDeleteSPIs))
	}
	if count*int(d.SPISize) != len(b) {
		return nil, malformed("D number of SPIs", count, fmt.Sprintf("%d (%d bytes of %d-byte SPIs)", len(b)/max(int(d.SPISize), 1), len(b), d.SPISize))
	}
	d.SPIs = make([][]byte, count)
	for i := range d.SPIs {
		d.SPIs[i], b = b[:d.SPISize:d.SPISize], b[d.SPISize:]
	}
	return d, nil
}

// appendBody panics if an SPI's length differs from SPISize or there are more than 65535.
func (d *Delete) appendBody(b []byte) []byte {
	if len(d.SPIs) > 0xffff {
		panic(fmt.Sprintf("isakmp: delete payload with %d SPIs exceeds 65535", len(d.SPIs)))
	}
	b = binary.BigEndian.AppendUint32(b, d.DOI)
	b = append(b, byte(d.ProtocolID), d.SPISize)
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.SPIs)))
	for _, spi := range d.SPIs {
		if len(spi) != int(d.SPISize) {
			panic(fmt.Sprintf("isakmp: delete payload SPI of %d bytes, SPI size %d", len(spi), d.SPISize))
		}
		b = append(b, spi...)
	}
	return b
}
