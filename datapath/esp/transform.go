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
	"github.com/espgw/espgw/datapath/esp/des3"
)

// gcmSaltLen is the implicit part of the RFC 4106 nonce, taken from the end of the key.
const (
	gcmSaltLen = 4
	gcmIVLen   = 8
	gcmICVLen  = 16
)

// cbcMode encrypts several independent CBC messages per call, so that bitsliced 3DES can
// run them side by side, and decrypts one message.
type cbcMode interface {
	EncryptCBC(chains []des3.Chain)
	DecryptCBC(dst, src, iv []byte)
}

// ivSetter is implemented by the CBC modes of crypto/cipher: it lets one BlockMode serve
// every packet instead of allocating a new one per IV.
type ivSetter interface {
	cipher.BlockMode
	SetIV([]byte)
}

// blockCBC is CBC over a cipher.Block, one message at a time: the fast way for AES (with
// AES-NI), and for 3DES when there are too few blocks to fill the bit slices.
type blockCBC struct{ enc, dec ivSetter }

func newBlockCBC(b cipher.Block) (*blockCBC, error) {
	zero := make([]byte, b.BlockSize())
	enc, ok1 := cipher.NewCBCEncrypter(b, zero).(ivSetter)
	dec, ok2 := cipher.NewCBCDecrypter(b, zero).(ivSetter)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("esp: CBC mode without SetIV: %w", ErrBadTransform)
	}
	return &blockCBC{enc, dec}, nil
}

func (c *blockCBC) EncryptCBC(chains []des3.Chain) {
	for _, m := range chains {
		c.enc.SetIV(m.IV)
		c.enc.CryptBlocks(m.Data, m.Data)
	}
}

func (c *blockCBC) DecryptCBC(dst, src, iv []byte) {
	c.dec.SetIV(iv)
	c.dec.CryptBlocks(dst, src)
}

// bitslicedMin is how many blocks the table-driven 3DES of crypto/des processes in the time
// of one bitsliced pass over 64 lanes (~14, measured with bench/esp): below it a pass
// would mostly compute idle lanes.
const bitslicedMin = 14

// tripleDES is 3DES-CBC that takes the bitsliced implementation when a call has enough
// parallel blocks (a batch of full-size packets, the blocks of one packet when decrypting)
// and crypto/des for the rest (a ping, an ACK).
type tripleDES struct {
	bits  *des3.Cipher
	table *blockCBC
}

func newTripleDES(key []byte) (*tripleDES, error) {
	bits, err := des3.New(key)
	if err != nil {
		return nil, err
	}
	b, err := des.NewTripleDESCipher(key)
	if err != nil {
		return nil, err
	}
	table, err := newBlockCBC(b)
	if err != nil {
		return nil, err
	}
	return &tripleDES{bits, table}, nil
}

// EncryptCBC runs the chains in bit slices when the blocks of all of them fill at least
// bitslicedMin passes' worth of the longest one, which is what a pass costs.
func (c *tripleDES) EncryptCBC(chains []des3.Chain) {
	total, longest := 0, 0
	for _, m := range chains {
		total += len(m.Data)
		longest = max(longest, len(m.Data))
	}
	if total >= bitslicedMin*longest && len(chains) > 1 {
		c.bits.EncryptCBC(chains)
		return
	}
	c.table.EncryptCBC(chains)
}

func (c *tripleDES) DecryptCBC(dst, src, iv []byte) {
	if len(src) >= bitslicedMin*des3.BlockSize {
		c.bits.DecryptCBC(dst, src, iv)
		return
	}
	c.table.DecryptCBC(dst, src, iv)
}

// transform is the precomputed crypto state of one SA direction.
type transform struct {
	ivLen, blockLen, icvLen int // blockLen: padding alignment (4 for GCM, RFC 4303 2.4)

	aead cipher.AEAD // GCM, or nil
	salt [gcmSaltLen]byte

	cbc cbcMode
	mac hash.Hash // keyed HMAC, Reset per packet
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
		c, err := newTripleDES(encKey)
		if err != nil {
			return nil, fmt.Errorf("esp: 3DES key: %w", err)
		}
		t.cbc, t.ivLen, t.blockLen = c, des3.BlockSize, des3.BlockSize
	case datapath.EncAESCBC:
		if n := len(encKey); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("esp: AES-CBC key length %d, expected 16, 24 or 32: %w", n, ErrKeyLength)
		}
		b, err := aes.NewCipher(encKey)
		if err != nil {
			return nil, fmt.Errorf("esp: AES key: %w", err)
		}
		if t.cbc, err = newBlockCBC(b); err != nil {
			return nil, err
		}
		t.ivLen, t.blockLen = aes.BlockSize, aes.BlockSize
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

// icv computes the HMAC of authenticated into out[:icvLen] (RFC 4868 truncation: the
// leftmost bits). out must have room for the full digest.
func (t *transform) icv(authenticated, out []byte) []byte {
	t.mac.Reset()
	t.mac.Write(authenticated)
	return t.mac.Sum(out[:0])[:t.icvLen]
}
