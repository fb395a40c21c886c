package ikev2

import (
	"encoding/binary"
	"fmt"
)

// KE is the Key Exchange payload (RFC 7296 section 3.4).
type KE struct {
	Group uint16 // Diffie-Hellman group number
	Data  []byte
}

func (*KE) Type() PayloadType { return PayloadKE }

func (k *KE) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, k.Group)
	return append(append(b, 0, 0), k.Data...)
}

func decodeKE(b []byte) (*KE, error) {
	if len(b) < 4 {
		return nil, invalid("KE payload body", len(b), ">= 4 bytes")
	}
	return &KE{Group: binary.BigEndian.Uint16(b), Data: field(b[4:])}, nil
}

// ID is an Identification payload, IDi or IDr (section 3.5).
type ID struct {
	Responder bool // IDr rather than IDi
	IDType    IDType
	Data      []byte
}

func (i *ID) Type() PayloadType {
	if i.Responder {
		return PayloadIDr
	}
	return PayloadIDi
}

func (i *ID) appendBody(b []byte) []byte {
	return append(append(b, byte(i.IDType), 0, 0, 0), i.Data...)
}

func decodeID(typ PayloadType, b []byte) (*ID, error) {
	if len(b) < 4 {
		return nil, invalid(fmt.Sprintf("%v payload body", typ), len(b), ">= 4 bytes")
	}
	return &ID{Responder: typ == PayloadIDr, IDType: IDType(b[0]), Data: field(b[4:])}, nil
}

// Cert is a Certificate or Certificate Request payload (sections 3.6, 3.7): an encoding and
// its data, kept as they came (espgw authenticates with pre-shared keys).
type Cert struct {
	Request  bool // CERTREQ rather than CERT
	Encoding uint8
	Data     []byte
}

func (c *Cert) Type() PayloadType {
	if c.Request {
		return PayloadCertReq
	}
	return PayloadCert
}

func (c *Cert) appendBody(b []byte) []byte { return append(append(b, c.Encoding), c.Data...) }

func decodeCert(typ PayloadType, b []byte) (*Cert, error) {
	if len(b) < 1 {
		return nil, invalid(fmt.Sprintf("%v payload body", typ), len(b), ">= 1 byte")
	}
	return &Cert{Request: typ == PayloadCertReq, Encoding: b[0], Data: field(b[1:])}, nil
}

// Auth is the Authentication payload (section 3.8).
type Auth struct {
	Method AuthMethod
	Data   []byte
}

func (*Auth) Type() PayloadType { return PayloadAuth }

func (a *Auth) appendBody(b []byte) []byte {
	return append(append(b, byte(a.Method), 0, 0, 0), a.Data...)
}

func decodeAuth(b []byte) (*Auth, error) {
	if len(b) < 4 {
		return nil, invalid("AUTH payload body", len(b), ">= 4 bytes")
	}
	return &Auth{Method: AuthMethod(b[0]), Data: field(b[4:])}, nil
}

// Nonce is the Nonce payload, Ni or Nr (section 3.9): 16 to 256 bytes.
type Nonce struct {
	Data []byte
}

// Nonce sizes allowed by section 3.9.
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

func (*Nonce) Type() PayloadType            { return PayloadNonce }
func (n *Nonce) appendBody(b []byte) []byte { return append(b, n.Data...) }

func decodeNonce(b []byte) (*Nonce, error) {
	if len(b) < MinNonceLen || len(b) > MaxNonceLen {
		return nil, invalid("nonce length", len(b), fmt.Sprintf("%d..%d bytes", MinNonceLen, MaxNonceLen))
	}
	return &Nonce{Data: b}, nil
}

// Notify is the Notify payload (section 3.10).
type Notify struct {
	Protocol   ProtocolID // of the SA the notification is about; 0 if none
	SPI        []byte
	NotifyType NotifyType
	Data       []byte
}

func (*Notify) Type() PayloadType { return PayloadNotify }

func (n *Notify) appendBody(b []byte) []byte {
	b = append(b, byte(n.Protocol), byte(len(n.SPI)))
	b = binary.BigEndian.AppendUint16(b, uint16(n.NotifyType))
	return append(append(b, n.SPI...), n.Data...)
}

func decodeNotify(b []byte) (*Notify, error) {
	if len(b) < 4 {
		return nil, invalid("Notify payload body", len(b), ">= 4 bytes")
	}
	spiSize := int(b[1])
	if spiSize > len(b)-4 {
		return nil, invalid("Notify SPI size", spiSize, atMost(len(b)-4))
	}
	return &Notify{Protocol: ProtocolID(b[0]), NotifyType: NotifyType(binary.BigEndian.Uint16(b[2:])),
		SPI: field(b[4 : 4+spiSize]), Data: field(b[4+spiSize:])}, nil
}

// Delete is the Delete payload (section 3.11): no SPI deletes the IKE SA itself, 4-byte SPIs
// name ESP or AH SAs by the deleting side's inbound SPI.
type Delete struct {
	Protocol ProtocolID
	SPISize  uint8
	SPIs     [][]byte
}

func (*Delete) Type() PayloadType { return PayloadDelete }

func (d *Delete) appendBody(b []byte) []byte {
	b = append(b, byte(d.Protocol), d.SPISize)
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.SPIs)))
	for _, s := range d.SPIs {
		b = append(b, s...)
	}
	return b
}

func decodeDelete(b []byte) (*Delete, error) {
	if len(b) < 4 {
		return nil, invalid("Delete payload body", len(b), ">= 4 bytes")
	}
	d := &Delete{Protocol: ProtocolID(b[0]), SPISize: b[1]}
	count, size := int(binary.BigEndian.Uint16(b[2:])), int(d.SPISize)
	// The count must match the bytes that are there, so a forged count allocates nothing.
	if size == 0 && count != 0 || size > 0 && count*size != len(b)-4 || size == 0 && len(b) != 4 {
		return nil, invalid("Delete SPIs", fmt.Sprintf("%d of %d bytes in %d", count, size, len(b)-4),
			"number of SPIs × SPI size == the bytes present")
	}
	if count > 0 {
		d.SPIs = make([][]byte, count)
		for i := range d.SPIs {
			d.SPIs[i] = b[4+i*size : 4+(i+1)*size]
		}
	}
	return d, nil
}

// VendorID is the Vendor ID payload (section 3.12).
type VendorID struct {
	Data []byte
}

func (*VendorID) Type() PayloadType            { return PayloadVendorID }
func (v *VendorID) appendBody(b []byte) []byte { return append(b, v.Data...) }

// EAP is the Extensible Authentication payload (section 3.16), kept as it came.
type EAP struct {
	Data []byte
}

func (*EAP) Type() PayloadType            { return PayloadEAP }
func (e *EAP) appendBody(b []byte) []byte { return append(b, e.Data...) }

// Configuration is the Configuration payload (section 3.15).
type Configuration struct {
	CFGType    uint8 // 1 request, 2 reply, 3 set, 4 ack
	Attributes []ConfigAttribute
}

// ConfigAttribute is one configuration attribute (section 3.15.1).
type ConfigAttribute struct {
	Type  uint16 // 15 bits
	Value []byte
}

func (*Configuration) Type() PayloadType { return PayloadConfiguration }

func (c *Configuration) appendBody(b []byte) []byte {
	b = append(b, c.CFGType, 0, 0, 0)
	for _, a := range c.Attributes {
		b = binary.BigEndian.AppendUint16(b, a.Type&0x7fff)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
		b = append(b, a.Value...)
	}
	return b
}

func decodeCP(b []byte) (*Configuration, error) {
	if len(b) < 4 {
		return nil, invalid("CP payload body", len(b), ">= 4 bytes")
	}
	c := &Configuration{CFGType: b[0]}
	for b = b[4:]; len(b) > 0; {
		if len(b) < 4 {
			return nil, invalid("configuration attribute", len(b), ">= 4 bytes")
		}
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n > len(b)-4 {
			return nil, invalid("configuration attribute length", n, atMost(len(b)-4))
		}
		c.Attributes = append(c.Attributes, ConfigAttribute{Type: binary.BigEndian.Uint16(b) & 0x7fff, Value: field(b[4 : 4+n])})
		b = b[4+n:]
	}
	return c, nil
}
