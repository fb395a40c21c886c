package ike

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/ike/keymat"
	"github.com/espgw/espgw/ike/proposal"
)

// The Encrypted and Authenticated payload, SK (RFC 7296 3.14): IV | ciphertext of
// (inner payloads | padding | pad length) | ICV. With AES-CBC the ICV is the truncated
// HMAC of the whole message up to it; with AES-GCM (RFC 5282) the IV is 8 bytes, the
// nonce the key's 4-byte salt followed by it, and the associated data the IKE header and
// the SK payload's generic header.

// errSKIntegrity is wrapped when an SK payload's ICV or GCM tag does not verify: the message
// is not from the peer (or the keys differ) and is dropped.
var errSKIntegrity = errors.New("SK payload integrity check failed")

// v2Direction is the protection of one direction of an IKE SA.
type v2Direction struct {
	aead  cipher.AEAD // AES-GCM
	salt  []byte
	block cipher.Block // AES-CBC
	integ []byte       // HMAC key (CBC)
}

// v2Cipher protects the messages of an IKE SA in both directions.
type v2Cipher struct {
	prop    proposal.IKEv2
	in, out v2Direction
}

const (
	gcmIVLen  = 8
	gcmICVLen = 16
)

// icvLen is the checksum length of an integrity algorithm (RFC 2404, 4868).
func icvLen(h proposal.Hash) int {
	if h == proposal.HashMD5 || h == proposal.HashSHA1 {
		return 12
	}
	return h.Size() / 2
}

// newV2Direction makes the protection of one direction from its SK_e and SK_a.
func newV2Direction(p proposal.IKEv2, enc, integ []byte) (v2Direction, error) {
	if p.Encryption == proposal.EncAESGCM16 {
		n := len(enc) - 4
		b, err := aes.NewCipher(enc[:n])
		if err != nil {
			return v2Direction{}, fmt.Errorf("ike: IKEv2 SK cipher: %w", err)
		}
		g, err := cipher.NewGCM(b)
		if err != nil {
			return v2Direction{}, fmt.Errorf("ike: IKEv2 SK cipher: %w", err)
		}
		return v2Direction{aead: g, salt: enc[n:]}, nil
	}
	b, err := keymat.NewCBC(p.Encryption, enc)
	if err != nil {
		return v2Direction{}, fmt.Errorf("ike: IKEv2 SK cipher: %w", err)
	}
	return v2Direction{block: b, integ: integ}, nil
}

// overhead is the size of the IV and the ICV around the ciphertext.
func (c *v2Cipher) ivICV() (iv, icv int) {
	if c.prop.Encryption == proposal.EncAESGCM16 {
		return gcmIVLen, gcmICVLen
	}
	return c.prop.Encryption.BlockSize(), icvLen(c.prop.Integrity)
}

// seal encodes a protected message: header h with an SK payload carrying ps.
func (c *v2Cipher) seal(rand io.Reader, h ikev2.Header, ps []ikev2.Payload) ([]byte, error) {
	first := ikev2.PayloadNone
	if len(ps) > 0 {
		first = ps[0].Type()
	}
	return c.sealSK(rand, h, ikev2.PayloadEncrypted, first, nil, ikev2.AppendPayloads(nil, ps))
}

// sealSK encodes a message of header h whose only payload, of type sk (SK or SKF), protects
// inner; first is the payload's next-payload field and fixed the rest of its header (SKF's
// fragment number and total), covered by the ICV like the IKE header.
func (c *v2Cipher) sealSK(rand io.Reader, h ikev2.Header, sk, first ikev2.PayloadType, fixed, inner []byte) ([]byte, error) {
	ivLen, icvN := c.ivICV()
	pad := 0
	if c.out.block != nil {
		bs := c.out.block.BlockSize()
		pad = (bs - (len(inner)+1)%bs) % bs
	}
	plain := append(append(make([]byte, 0, len(inner)+pad+1), inner...), make([]byte, pad+1)...) // inner may be part of a longer message
	plain[len(plain)-1] = byte(pad)
	skLen := 4 + len(fixed) + ivLen + len(plain) + icvN
	h.NextPayload = sk
	h.Version = ikev2.Version
	h.Length = uint32(ikev2.HeaderLen + skLen)
	msg := h.AppendTo(make([]byte, 0, h.Length))
	msg = append(msg, byte(first), 0)
	msg = binary.BigEndian.AppendUint16(msg, uint16(skLen))
	msg = append(msg, fixed...)
	aadEnd := len(msg)
	iv := make([]byte, ivLen)
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, fmt.Errorf("ike: IV: %w", err)
	}
	msg = append(msg, iv...)
	if c.out.aead != nil {
		nonce := append(append(make([]byte, 0, 12), c.out.salt...), iv...)
		return c.out.aead.Seal(msg, nonce, plain, msg[:aadEnd]), nil
	}
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(c.out.block, iv).CryptBlocks(ct, plain)
	msg = append(msg, ct...)
	mac := keymat.PRF(c.prop.Integrity, c.out.integ, msg)
	return append(msg, mac[:icvN]...), nil
}

// open verifies and decrypts the SK payload sk, the last payload of raw, and decodes the
// inner payloads.
func (c *v2Cipher) open(raw []byte, sk *ikev2.Encrypted) ([]ikev2.Payload, error) {
	inner, err := c.decrypt(raw, sk.Data)
	if err != nil {
		return nil, err
	}
	ps, err := ikev2.DecodePayloads(sk.Inner, inner)
	if err != nil {
		return nil, fmt.Errorf("SK inner payloads: %w", err)
	}
	return ps, nil
}

// decrypt verifies and decrypts data (IV, ciphertext, ICV), the end of the SK or SKF
// payload that ends raw, and returns the plaintext without its padding.
func (c *v2Cipher) decrypt(raw, data []byte) ([]byte, error) {
	ivLen, icvN := c.ivICV()
	if len(data) < ivLen+icvN+1 {
		return nil, fmt.Errorf("SK payload of %d bytes, want at least %d (IV, pad length, ICV)", len(data), ivLen+icvN+1)
	}
	bodyAt := len(raw) - len(data)
	iv, ct := data[:ivLen], data[ivLen:]
	var plain []byte
	if c.in.aead != nil {
		nonce := append(append(make([]byte, 0, 12), c.in.salt...), iv...)
		var err error
		if plain, err = c.in.aead.Open(nil, nonce, ct, raw[:bodyAt]); err != nil {
			return nil, errSKIntegrity
		}
	} else {
		ct, icv := ct[:len(ct)-icvN], ct[len(ct)-icvN:]
		mac := keymat.PRF(c.prop.Integrity, c.in.integ, raw[:len(raw)-icvN])
		if !hmac.Equal(mac[:icvN], icv) {
			return nil, errSKIntegrity
		}
		if len(ct) == 0 || len(ct)%c.in.block.BlockSize() != 0 {
			return nil, fmt.Errorf("SK ciphertext of %d bytes, want a non-zero multiple of %d", len(ct), c.in.block.BlockSize())
		}
		plain = make([]byte, len(ct))
		cipher.NewCBCDecrypter(c.in.block, iv).CryptBlocks(plain, ct)
	}
	pad := int(plain[len(plain)-1])
	if pad+1 > len(plain) {
		return nil, fmt.Errorf("SK pad length %d, want at most %d", pad, len(plain)-1)
	}
	return plain[:len(plain)-pad-1], nil
}

// newV2Cipher sets up the SK protection of an IKE SA from its keys, for the side that is
// (or is not) the original initiator.
func newV2Cipher(p proposal.IKEv2, k *keymat.IKESAKeys, initiator bool) (*v2Cipher, error) {
	ei, ai, er, ar := k.EI, k.AI, k.ER, k.AR
	if !initiator {
		ei, ai, er, ar = er, ar, ei, ai
	}
	out, err := newV2Direction(p, ei, ai)
	if err != nil {
		return nil, err
	}
	in, err := newV2Direction(p, er, ar)
	if err != nil {
		return nil, err
	}
	return &v2Cipher{prop: p, in: in, out: out}, nil
}
