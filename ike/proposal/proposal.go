// Package proposal handles algorithm proposals: strongSwan keyword syntax
// ("3des-sha1-modp1024", "aes256gcm16-modp2048", "aes128gcm16-prfsha256-ecp256") in
// configuration and logs, ISAKMP (IKEv1) and IKEv2 SA payloads on the wire, and the
// selection a responder makes between them.
package proposal

// Encryption identifies a cipher. Values are this package's own; the IKE (RFC 2409 App. A)
// and ESP (RFC 2407 4.4.4) transform numbers are mapped in the conversion functions.
type Encryption uint8

const (
	Enc3DES     Encryption = iota + 1 // 3DES-CBC
	EncAESCBC                         // AES-CBC, KeyBits 128/192/256
	EncAESGCM16                       // AES-GCM with 16-octet ICV (ESP only), KeyBits 128/192/256
)

// Hash identifies the phase-1 hash / PRF or the ESP integrity algorithm.
type Hash uint8

const (
	HashNone Hash = iota // only with AES-GCM in ESP
	HashMD5
	HashSHA1
	HashSHA256
	HashSHA384
	HashSHA512
)

// IKE is one phase-1 (ISAKMP SA) transform.
type IKE struct {
	Encryption Encryption
	KeyBits    int // 0 for 3DES
	Hash       Hash
	Group      uint16 // Diffie-Hellman group number (2, 5, 14, 15, 16, 19, 20)
}

// ESP is one phase-2 (quick mode) ESP transform. Group is the PFS group, 0 = no PFS.
type ESP struct {
	Encryption Encryption
	KeyBits    int
	Integrity  Hash
	Group      uint16
}
