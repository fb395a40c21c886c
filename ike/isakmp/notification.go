package isakmp

import (
	"encoding/binary"
	"fmt"
)

// Notification is the notification payload (RFC 2408 section 3.14). The notify message
// type is the field NotifyType, since Type is the Payload method.
type Notification struct {
	DOI        uint32
	ProtocolID ProtocolID
	SPI        []byte
	NotifyType NotifyType
	Data       []byte
}

func (*Notification) Type() PayloadType { return PayloadNotification }

const notificationFixedLen = 8 // DOI, protocol, SPI size, notify message type

func decodeNotification(b []byte) (*Notification, error) {
	n := &Notification{
		DOI:        binary.BigEndian.Uint32(b),
		ProtocolID: ProtocolID(b[4]),
		NotifyType: NotifyType(binary.BigEndian.Uint16(b[6:])),
	}
	spiSize := int(b[5])
	b = b[notificationFixedLen:]
	if spiSize > len(b) {
		return nil, malformed("N SPI size", spiSize, atMost(len(b)))
	}
	n.SPI, n.Data = b[:spiSize:spiSize], b[spiSize:]
	return n, nil
}

func (n *Notification) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, n.DOI)
	b = append(b, byte(n.ProtocolID), spiSize(n.SPI))
	b = binary.BigEndian.AppendUint16(b, uint16(n.NotifyType))
	b = append(b, n.SPI...)
	return append(b, n.Data...)
}

// spiSize returns the one-octet SPI size field for spi; it panics if spi is too long.
func spiSize(spi []byte) byte {
	if len(spi) > 0xff {
		panic(fmt.Sprintf("isakmp: SPI length %d exceeds 255", len(spi)))
	}
	return byte(len(spi))
}
