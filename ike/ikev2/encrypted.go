package ikev2

import (
	"encoding/binary"
	"fmt"
)

// Encrypted is the Encrypted and Authenticated payload, SK (RFC 7296 section 3.14): the IV,
// the ciphertext of the inner payloads with their padding, and the integrity checksum, which
// the engine separates with the negotiated algorithms. Inner names the first inner payload.
type Encrypted struct {
	Inner PayloadType
	Data  []byte
}

func (*Encrypted) Type() PayloadType            { return PayloadEncrypted }
func (e *Encrypted) appendBody(b []byte) []byte { return append(b, e.Data...) }

// EncryptedFragment is one fragment of an SK payload, SKF (RFC 7383 section 2.5). Inner is
// the first inner payload's type in fragment 1 and zero in the others.
type EncryptedFragment struct {
	Inner     PayloadType
	Number    uint16 // 1..Total
	Total     uint16
	Encrypted []byte // IV, ciphertext and checksum, as in SK
}

func (*EncryptedFragment) Type() PayloadType { return PayloadEncryptedFragment }

func (f *EncryptedFragment) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, f.Number)
	b = binary.BigEndian.AppendUint16(b, f.Total)
	return append(b, f.Encrypted...)
}

func decodeFragment(inner PayloadType, b []byte) (*EncryptedFragment, error) {
	if len(b) < 4 {
		return nil, invalid("SKF payload body", len(b), ">= 4 bytes")
	}
	f := &EncryptedFragment{Inner: inner, Number: binary.BigEndian.Uint16(b), Total: binary.BigEndian.Uint16(b[2:]), Encrypted: field(b[4:])}
	if f.Number == 0 || f.Number > f.Total {
		return nil, invalid("fragment number", fmt.Sprintf("%d of %d", f.Number, f.Total), "1..total fragments")
	}
	if f.Number != 1 && inner != PayloadNone {
		return nil, invalid("next payload of a non-first fragment", uint8(inner), "0 (RFC 7383 section 2.5)")
	}
	return f, nil
}
