// Package ikev2 is the IKEv2 wire codec (RFC 7296 section 3): the header, every payload and
// their substructures, and the encrypted payload's envelope (SK, and SKF from RFC 7383). It
// only encodes and decodes; the exchanges, the keys and the decryption of SK belong to the
// engine. Decode bounds every length by the bytes it was given, so a forged message costs
// at most a copy of its own size.
package ikev2

import "fmt"

// ExchangeType is the header's exchange type (RFC 7296 section 3.1).
type ExchangeType uint8

// Exchange types.
const (
	ExchangeIKESAInit     ExchangeType = 34
	ExchangeIKEAuth       ExchangeType = 35
	ExchangeCreateChildSA ExchangeType = 36
	ExchangeInformational ExchangeType = 37
)

var exchangeNames = map[ExchangeType]string{
	ExchangeIKESAInit:     "IKE_SA_INIT",
	ExchangeIKEAuth:       "IKE_AUTH",
	ExchangeCreateChildSA: "CREATE_CHILD_SA",
	ExchangeInformational: "INFORMATIONAL",
}

func (e ExchangeType) String() string { return name(exchangeNames, e) }

// PayloadType is the type of a payload, named in the previous payload's (or the header's)
// Next Payload field (RFC 7296 section 3.2).
type PayloadType uint8

// Payload types.
const (
	PayloadNone              PayloadType = 0
	PayloadSA                PayloadType = 33
	PayloadKE                PayloadType = 34
	PayloadIDi               PayloadType = 35
	PayloadIDr               PayloadType = 36
	PayloadCert              PayloadType = 37
	PayloadCertReq           PayloadType = 38
	PayloadAuth              PayloadType = 39
	PayloadNonce             PayloadType = 40
	PayloadNotify            PayloadType = 41
	PayloadDelete            PayloadType = 42
	PayloadVendorID          PayloadType = 43
	PayloadTSi               PayloadType = 44
	PayloadTSr               PayloadType = 45
	PayloadEncrypted         PayloadType = 46
	PayloadConfiguration     PayloadType = 47
	PayloadEAP               PayloadType = 48
	PayloadEncryptedFragment PayloadType = 53 // RFC 7383
)

var payloadNames = map[PayloadType]string{
	PayloadNone: "NONE", PayloadSA: "SA", PayloadKE: "KE", PayloadIDi: "IDi", PayloadIDr: "IDr",
	PayloadCert: "CERT", PayloadCertReq: "CERTREQ", PayloadAuth: "AUTH", PayloadNonce: "Ni/Nr",
	PayloadNotify: "N", PayloadDelete: "D", PayloadVendorID: "V", PayloadTSi: "TSi", PayloadTSr: "TSr",
	PayloadEncrypted: "SK", PayloadConfiguration: "CP", PayloadEAP: "EAP", PayloadEncryptedFragment: "SKF",
}

func (p PayloadType) String() string { return name(payloadNames, p) }

// ProtocolID names the protocol of a proposal, a notification or a delete (section 3.3.1).
type ProtocolID uint8

// Protocol IDs.
const (
	ProtocolNone ProtocolID = 0
	ProtocolIKE  ProtocolID = 1
	ProtocolAH   ProtocolID = 2
	ProtocolESP  ProtocolID = 3
)

var protocolNames = map[ProtocolID]string{ProtocolNone: "none", ProtocolIKE: "IKE", ProtocolAH: "AH", ProtocolESP: "ESP"}

func (p ProtocolID) String() string { return name(protocolNames, p) }

// TransformType is the kind of algorithm a transform names (section 3.3.2).
type TransformType uint8

// Transform types.
const (
	TransformENCR  TransformType = 1 // encryption algorithm
	TransformPRF   TransformType = 2 // pseudorandom function
	TransformINTEG TransformType = 3 // integrity algorithm
	TransformDH    TransformType = 4 // Diffie-Hellman group
	TransformESN   TransformType = 5 // extended sequence numbers
)

var transformTypeNames = map[TransformType]string{
	TransformENCR: "ENCR", TransformPRF: "PRF", TransformINTEG: "INTEG", TransformDH: "DH", TransformESN: "ESN",
}

func (t TransformType) String() string { return name(transformTypeNames, t) }

// Transform IDs used by espgw (IANA "IKEv2 Parameters"); the codec carries any value.
const (
	EncrAESCBC     uint16 = 12
	EncrAESGCM16   uint16 = 20 // RFC 4106 / 5282, 16-octet ICV
	Encr3DES       uint16 = 3
	PRFHMACMD5     uint16 = 1
	PRFHMACSHA1    uint16 = 2
	PRFHMACSHA256  uint16 = 5
	PRFHMACSHA384  uint16 = 6
	PRFHMACSHA512  uint16 = 7
	IntegMD5_96    uint16 = 1
	IntegSHA1_96   uint16 = 2
	IntegSHA256128 uint16 = 12
	IntegSHA384192 uint16 = 13
	IntegSHA512256 uint16 = 14
	ESNNone        uint16 = 0
	ESNUsed        uint16 = 1
)

// AttributeKeyLength is the one transform attribute RFC 7296 defines (section 3.3.5).
const AttributeKeyLength uint16 = 14

// IDType is the type of an identification payload (section 3.5).
type IDType uint8

// Identification types.
const (
	IDIPv4Addr  IDType = 1
	IDFQDN      IDType = 2
	IDRFC822    IDType = 3
	IDIPv6Addr  IDType = 5
	IDDERASN1DN IDType = 9
	IDDERASN1GN IDType = 10
	IDKeyID     IDType = 11
)

var idNames = map[IDType]string{
	IDIPv4Addr: "ID_IPV4_ADDR", IDFQDN: "ID_FQDN", IDRFC822: "ID_RFC822_ADDR", IDIPv6Addr: "ID_IPV6_ADDR",
	IDDERASN1DN: "ID_DER_ASN1_DN", IDDERASN1GN: "ID_DER_ASN1_GN", IDKeyID: "ID_KEY_ID",
}

func (t IDType) String() string { return name(idNames, t) }

// AuthMethod is the method of an AUTH payload (section 3.8).
type AuthMethod uint8

// Authentication methods.
const (
	AuthRSASignature AuthMethod = 1
	AuthSharedKeyMIC AuthMethod = 2
	AuthDSSSignature AuthMethod = 3
	AuthDigitalSig   AuthMethod = 14 // RFC 7427
)

var authNames = map[AuthMethod]string{
	AuthRSASignature: "RSA Digital Signature", AuthSharedKeyMIC: "Shared Key Message Integrity Code",
	AuthDSSSignature: "DSS Digital Signature", AuthDigitalSig: "Digital Signature",
}

func (m AuthMethod) String() string { return name(authNames, m) }

// TSType is the type of a traffic selector (section 3.13.1).
type TSType uint8

// Traffic selector types.
const (
	TSIPv4AddrRange TSType = 7
	TSIPv6AddrRange TSType = 8
)

// name returns names[v], or the number for a value without a name.
func name[T ~uint8 | ~uint16](names map[T]string, v T) string {
	if s, ok := names[v]; ok {
		return s
	}
	return fmt.Sprintf("%d", v)
}
