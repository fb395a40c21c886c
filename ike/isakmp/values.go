package isakmp

// Attribute and transform values used by this gateway; the full registries are RFC 2409
// Appendix A (phase 1) and RFC 2407 sections 4.4 and 4.5 (IPsec DOI).

// TransformKeyIKE is the only transform ID of the ISAKMP protocol (RFC 2407 section 4.4.2).
const TransformKeyIKE = 1

// Phase 1 attribute values (RFC 2409 Appendix A, RFC 3602, RFC 4868).
const (
	EncDES3   = 5 // AttrEncryptionAlgorithm: 3DES-CBC
	EncAESCBC = 7 // AttrEncryptionAlgorithm: AES-CBC, with AttrKeyLength

	HashMD5    = 1 // AttrHashAlgorithm
	HashSHA1   = 2
	HashSHA256 = 4
	HashSHA384 = 5
	HashSHA512 = 6

	AuthMethodPSK = 1 // AttrAuthMethod: pre-shared key

	GroupTypeMODP = 1 // AttrGroupType
)

// Life types for AttrLifeType and IPsecAttrLifeType.
const (
	LifeTypeSeconds   = 1
	LifeTypeKilobytes = 2
)

// Encapsulation modes for IPsecAttrEncapsulationMode (RFC 2407, RFC 3947 and the
// draft-ietf-ipsec-nat-t-ike values still sent by older peers).
const (
	EncapTunnel            = 1
	EncapTransport         = 2
	EncapUDPTunnel         = 3
	EncapUDPTransport      = 4
	EncapUDPTunnelDraft    = 61443
	EncapUDPTransportDraft = 61444
)

// ESP transform IDs (RFC 2407 section 4.4.4, RFC 4106).
const (
	ESPTransform3DES     = 3
	ESPTransformNull     = 11
	ESPTransformAESCBC   = 12
	ESPTransformAESGCM16 = 20
)

// Authentication algorithms for IPsecAttrAuthAlgorithm (RFC 2407 section 4.5, RFC 4868).
const (
	AuthHMACMD5    = 1
	AuthHMACSHA1   = 2
	AuthHMACSHA256 = 5
	AuthHMACSHA384 = 6
	AuthHMACSHA512 = 7
)
