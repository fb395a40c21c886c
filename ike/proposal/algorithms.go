package proposal

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
)

// New returns a new hash.Hash computing h, for HMAC and the IKEv1 PRF. It panics for
// HashNone: callers only reach it with a validated phase-1 or integrity proposal.
func (h Hash) New() hash.Hash {
	switch h {
	case HashMD5:
		return md5.New()
	case HashSHA1:
		return sha1.New()
	case HashSHA256:
		return sha256.New()
	case HashSHA384:
		return sha512.New384()
	case HashSHA512:
		return sha512.New()
	}
	panic(fmt.Sprintf("proposal: %v has no hash function", h))
}

// Size is the digest length of h in bytes (0 for HashNone). It is also the HMAC key
// length of h as an ESP integrity algorithm (RFC 2403, 2404, 4868).
func (h Hash) Size() int {
	switch h {
	case HashMD5:
		return md5.Size
	case HashSHA1:
		return sha1.Size
	case HashSHA256:
		return sha256.Size
	case HashSHA384:
		return sha512.Size384
	case HashSHA512:
		return sha512.Size
	}
	return 0
}

// String is h's swanctl keyword ("sha256"); HashNone is "none".
func (h Hash) String() string {
	switch h {
	case HashNone:
		return "none"
	case HashMD5:
		return "md5"
	case HashSHA1:
		return "sha1"
	case HashSHA256:
		return "sha256"
	case HashSHA384:
		return "sha384"
	case HashSHA512:
		return "sha512"
	}
	return fmt.Sprintf("Hash(%d)", uint8(h))
}

// String names the cipher family without a key size: "3des", "aes-cbc", "aes-gcm16".
func (e Encryption) String() string {
	switch e {
	case Enc3DES:
		return "3des"
	case EncAESCBC:
		return "aes-cbc"
	case EncAESGCM16:
		return "aes-gcm16"
	}
	return fmt.Sprintf("Encryption(%d)", uint8(e))
}

// BlockSize is the cipher's block size in bytes (1 for GCM, a counter mode).
func (e Encryption) BlockSize() int {
	switch e {
	case Enc3DES:
		return 8
	case EncAESCBC:
		return 16
	case EncAESGCM16:
		return 1
	}
	return 0
}

// keyLen is the cipher key length in bytes: 24 for 3DES, keyBits/8 for AES.
func (e Encryption) keyLen(keyBits int) int {
	if e == Enc3DES {
		return 24
	}
	return keyBits / 8
}

// KeyLen is the phase-1 encryption key length in bytes (RFC 2409 Appendix B).
func (p IKE) KeyLen() int { return p.Encryption.keyLen(p.KeyBits) }

// BlockSize is the phase-1 cipher block size: the length of IVs and of the padding unit.
func (p IKE) BlockSize() int { return p.Encryption.BlockSize() }

// gcmSaltLen is the salt appended to an AES-GCM ESP key (RFC 4106 section 8.1).
const gcmSaltLen = 4

// EncKeyLen is the length of the ESP encryption KEYMAT: the cipher key, plus the 4-byte
// salt for AES-GCM.
func (p ESP) EncKeyLen() int {
	if p.Encryption == EncAESGCM16 {
		return p.KeyBits/8 + gcmSaltLen
	}
	return p.Encryption.keyLen(p.KeyBits)
}

// IntegKeyLen is the length of the ESP integrity KEYMAT, 0 for AES-GCM.
func (p ESP) IntegKeyLen() int { return p.Integrity.Size() }

// ICVLen is the length of the ESP integrity check value: the truncated HMAC (HMAC-MD5-96
// and HMAC-SHA1-96 per RFC 2403/2404, half the digest for SHA-2 per RFC 4868) or the
// 16-byte GCM tag.
func (p ESP) ICVLen() int {
	switch {
	case p.Encryption == EncAESGCM16:
		return 16
	case p.Integrity == HashMD5, p.Integrity == HashSHA1:
		return 12
	}
	return p.Integrity.Size() / 2
}

// IVLen is the length of the IV carried in each ESP packet: the block size for CBC,
// 8 bytes for GCM (RFC 4106 section 3.1).
func (p ESP) IVLen() int {
	if p.Encryption == EncAESGCM16 {
		return 8
	}
	return p.Encryption.BlockSize()
}

// BlockSize is the unit the ESP payload is padded to: the cipher block for CBC, and the
// 4-byte alignment RFC 4303 section 2.4 requires for GCM.
func (p ESP) BlockSize() int {
	if p.Encryption == EncAESGCM16 {
		return 4
	}
	return p.Encryption.BlockSize()
}
