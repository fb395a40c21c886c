package des3

import (
	"encoding/binary"
	"fmt"
)

// lanes is how many blocks one bitsliced pass processes.
const lanes = 64

// DecryptCBC decrypts src into dst with iv (RFC 2451: P_i = D(C_i) xor C_i-1, C_0 = IV).
// len(src) must be a multiple of 8, len(dst) at least len(src), len(iv) 8; dst may be
// src itself but must not overlap it otherwise. Up to 64 blocks are deciphered at once.
// It panics on wrong lengths, as crypto/cipher's modes do.
func (c *Cipher) DecryptCBC(dst, src, iv []byte) {
	if len(iv) != BlockSize {
		panic(fmt.Sprintf("des3: IV length %d, expected %d", len(iv), BlockSize))
	}
	if len(src)%BlockSize != 0 {
		panic(fmt.Sprintf("des3: ciphertext length %d, expected a multiple of %d", len(src), BlockSize))
	}
	if len(dst) < len(src) {
		panic(fmt.Sprintf("des3: output length %d, expected at least %d", len(dst), len(src)))
	}
	prev := binary.BigEndian.Uint64(iv)
	for len(src) > 0 {
		n := min(lanes, len(src)/BlockSize)
		var ct, m [lanes]uint64
		for i := range n {
			ct[i] = binary.BigEndian.Uint64(src[8*i:])
		}
		m = ct
		cryptBlocks(&c.dec, &m)
		for i := range n {
			binary.BigEndian.PutUint64(dst[8*i:], m[i]^prev)
			prev = ct[i]
		}
		src, dst = src[8*n:], dst[8*n:]
	}
}

// EncryptCBC encrypts every chain in place (C_i = E(P_i xor C_i-1), C_0 = IV). Up to 64
// chains advance in lock step, one block each per pass, so it pays to pass many chains
// of similar length; more than 64 are done in groups of 64, in order. It panics on wrong
// lengths, as crypto/cipher's modes do.
func (c *Cipher) EncryptCBC(chains []Chain) {
	for i, ch := range chains {
		if len(ch.IV) != BlockSize {
			panic(fmt.Sprintf("des3: chain %d: IV length %d, expected %d", i, len(ch.IV), BlockSize))
		}
		if len(ch.Data)%BlockSize != 0 {
			panic(fmt.Sprintf("des3: chain %d: data length %d, expected a multiple of %d", i, len(ch.Data), BlockSize))
		}
	}
	for len(chains) > 0 {
		n := min(lanes, len(chains))
		c.encryptGroup(chains[:n])
		chains = chains[n:]
	}
}

// encryptGroup encrypts up to 64 chains, chain i in lane i.
func (c *Cipher) encryptGroup(chains []Chain) {
	var prev [lanes]uint64
	longest := 0
	for i, ch := range chains {
		prev[i] = binary.BigEndian.Uint64(ch.IV)
		longest = max(longest, len(ch.Data))
	}
	for off := 0; off < longest; off += BlockSize {
		var m [lanes]uint64
		for i, ch := range chains {
			if off < len(ch.Data) {
				m[i] = binary.BigEndian.Uint64(ch.Data[off:]) ^ prev[i]
			}
		}
		cryptBlocks(&c.enc, &m)
		for i, ch := range chains {
			if off < len(ch.Data) {
				binary.BigEndian.PutUint64(ch.Data[off:], m[i])
				prev[i] = m[i]
			}
		}
	}
}
