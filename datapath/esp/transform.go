package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"github.com/espgw/espgw/datapath"
)

// gcmSaltLen is the implicit part of the RFC 4106 nonce, taken from the end of the key.
const (
	gcmSaltLen = 4
	gcmIVLen   = 8
	gcmICVLen  = 16
)

// ivSetter is implemented by the CBC modes of crypto/cipher (generic and AES): it lets one
// BlockMode serve every packet instead of allocating a new one per IV.
type ivSetter interface {
	cipher.BlockMode
	SetIV([]byte)
}

// transform is the precomputed crypto state of one SA direction.
type transform struct {
	ivLen, blockLen, icvLen int // blockLen: padding alignment (4 for GCM, RFC 4303 2.4)

	aead cipher.AEAD // GCM, or nil
	salt [gcmSaltLen]byte

	cbcEnc, cbcDec ivSetter
	mac            hash.Hash // keyed HMAC, Reset per packet
}

func integrity(alg datapath.Integrity) (newHash func() hash.Hash, keyLen, icvLen int, ok bool) {
	switch alg {
	case datapath.IntegHMACSHA1_96:
		return sha1.New, 20, 12, true
	case datapath.IntegHMACSHA256_128:
		return sha256.New, 32, 16, true
	case datapath.IntegHMACSHA384_192:
		return sha512.New384, 48, 24, true
	case datapath.IntegHMACSHA512_256:
		return sha512.New, 64, 32, true
	}
	return nil, 0, 0, false
}

func newTransform(enc datapath.Encryption, encKey []byte, integ datapath.Integrity, integKey []byte) (*transform, error) {
	t := new(transform)
	switch enc {
	case datapath.EncAESGCM16:
		if integ != datapath.IntegNone {
			return nil, fmt.Errorf("esp: integrity %d with AES-GCM, expected none (GCM authenticates): %w", integ, ErrBadTransform)
		}
		if n := len(encKey); n != 16+gcmSaltLen && n != 24+gcmSaltLen && n != 32+gcmSaltLen {
			return nil, fmt.Errorf("esp: AES-GCM key length %d, expected 20, 28 or 36 (AES key + 4-byte salt): %w", n, ErrKeyLength)
		}
		k := len(encKey) - gcmSaltLen
		b, err := aes.NewCipher(encKey[:k])
		if err != nil {
			return nil, fmt.Errorf("esp: AES key: %w", err)
		}
		if t.aead, err = cipher.NewGCM(b); err != nil {
			return nil, fmt.Errorf("esp: GCM: %w", err)
		}
		copy(t.salt[:], encKey[k:])
		t.ivLen, t.blockLen, t.icvLen = gcmIVLen, 4, gcmICVLen
		return t, nil
	case datapath.Enc3DESCBC:
		if len(encKey) != 24 {
			return nil, fmt.Errorf("esp: 3DES key length %d, expected 24: %w", len(encKey), ErrKeyLength)
		}
		b, err := des.NewTripleDESCipher(encKey)
		if err != nil {
			return nil, fmt.Errorf("esp: 3DES key: %w", err)
		}
		if err := t.setCBC(b); err != nil {
			return nil, err
		}
	case datapath.EncAESCBC:
		if n := len(encKey); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("esp: AES-CBC key length %d, expected 16, 24 or 32: %w", n, ErrKeyLength)
		}
		b, err := aes.NewCipher(encKey)
		if err != nil {
			return nil, fmt.Errorf("esp: AES key: %w", err)
		}
		if err := t.setCBC(b); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("esp: encryption %d, expected 3DES-CBC, AES-CBC or AES-GCM-16: %w", enc, ErrBadTransform)
	}
	newHash, keyLen, icvLen, ok := integrity(integ)
	if !ok {
		return nil, fmt.Errorf("esp: integrity %d with a CBC cipher, expected an HMAC: %w", integ, ErrBadTransform)
	}
	if len(integKey) != keyLen {
		return nil, fmt.Errorf("esp: integrity key length %d, expected %d: %w", len(integKey), keyLen, ErrKeyLength)
	}
	t.mac = hmac.New(newHash, integKey)
	t.icvLen = icvLen
	return t, nil
}

func (t *transform) setCBC(b cipher.Block) error {
	zero := make([]byte, b.BlockSize())
	enc, ok1 := cipher.NewCBCEncrypter(b, zero).(ivSetter)
	dec, ok2 := cipher.NewCBCDecrypter(b, zero).(ivSetter)
	if !ok1 || !ok2 {
		return fmt.Errorf("esp: CBC mode without SetIV: %w", ErrBadTransform)
	}
	t.cbcEnc, t.cbcDec = enc, dec
	t.ivLen, t.blockLen = b.BlockSize(), b.BlockSize()
	return nil
}

// icv computes the HMAC of authenticated into out[:icvLen] (RFC 4868 truncation: the
// leftmost bits). out must have room for the full digest.
func (t *transform) icv(authenticated, out []byte) []byte {
	t.mac.Reset()
	t.mac.Write(authenticated)
	return t.mac.Sum(out[:0])[:t.icvLen]
}
