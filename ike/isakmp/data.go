package isakmp

import "fmt"

// The payloads in this file carry one opaque value after the generic header (RFC 2408
// sections 3.7-3.13 and 3.16), with an encoding octet in front for CERT and CR.

// KeyExchange is the key exchange payload: the Diffie-Hellman public value.
type KeyExchange struct{ Data []byte }

// Hash is the hash payload: HASH_I, HASH_R or a quick mode / informational HASH(n).
type Hash struct{ Data []byte }

// Signature is the signature payload.
type Signature struct{ Data []byte }

// Nonce is the nonce payload; RFC 2409 section 5 limits it to 8-256 octets.
type Nonce struct{ Data []byte }

// VendorID is the vendor ID payload.
type VendorID struct{ Data []byte }

const certFixedLen = 1 // the encoding octet of CERT and CR

// Certificate is the certificate payload; Encoding is e.g. 4 for an X.509 signature cert.
type Certificate struct {
	Encoding uint8
	Data     []byte
}

// CertificateRequest is the certificate request payload; Data is the certificate authority.
type CertificateRequest struct {
	Encoding uint8
	Data     []byte
}

// Unknown is a payload of a type this package does not decode (or a proposal or transform
// outside an SA). A responder answers it with INVALID-PAYLOAD-TYPE.
type Unknown struct {
	PayloadType PayloadType
	Data        []byte
}

func (*KeyExchange) Type() PayloadType        { return PayloadKE }
func (*Hash) Type() PayloadType               { return PayloadHash }
func (*Signature) Type() PayloadType          { return PayloadSIG }
func (*Nonce) Type() PayloadType              { return PayloadNonce }
func (*VendorID) Type() PayloadType           { return PayloadVendorID }
func (*Certificate) Type() PayloadType        { return PayloadCERT }
func (*CertificateRequest) Type() PayloadType { return PayloadCR }
func (u *Unknown) Type() PayloadType          { return u.PayloadType }

func (p *KeyExchange) appendBody(b []byte) []byte { return append(b, p.Data...) }
func (p *Hash) appendBody(b []byte) []byte        { return append(b, p.Data...) }
func (p *Signature) appendBody(b []byte) []byte   { return append(b, p.Data...) }
func (p *Nonce) appendBody(b []byte) []byte       { return append(b, p.Data...) }
func (p *VendorID) appendBody(b []byte) []byte    { return append(b, p.Data...) }
func (p *Unknown) appendBody(b []byte) []byte     { return append(b, p.Data...) }
func (p *Certificate) appendBody(b []byte) []byte { return append(append(b, p.Encoding), p.Data...) }
func (p *CertificateRequest) appendBody(b []byte) []byte {
	return append(append(b, p.Encoding), p.Data...)
}

// Nonce length limits, RFC 2409 section 5.
const (
	MinNonceLen = 8
	MaxNonceLen = 256
)

func decodeNonce(b []byte) (*Nonce, error) {
	if len(b) > MaxNonceLen {
		return nil, malformed("NONCE data length", len(b), fmt.Sprintf("<= %d", MaxNonceLen))
	}
	return &Nonce{Data: b}, nil
}
