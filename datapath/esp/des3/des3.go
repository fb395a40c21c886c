// Package des3 is Triple DES (DES-EDE3, FIPS 46-3 / NIST SP 800-67) in CBC mode for the
// ESP datapath (RFC 2451), bitsliced: 64 blocks travel together, word i of the state
// holding bit i of every block, so each S-box is a Boolean circuit evaluated on 64 lanes
// at once instead of a table lookup. There are no secret-dependent memory accesses or
// branches. The permutations (IP, E, P, the final one) cost nothing: they only decide
// which word a step reads.
//
// Lanes need independent blocks. CBC decryption has them within one message; CBC
// encryption is serial within a message, so EncryptCBC runs up to 64 messages side by
// side. Lanes without a block idle but cost the same: a pass over 64 lanes takes about
// as long as crypto/des takes for 12 blocks, so one short message is much slower than
// with crypto/des, and 64 long ones about 5 times faster.
//
// The S-box circuits come from sboxes.netlist (written by internal/synth); gen.go turns
// them into sbox_gen.go.
package des3

//go:generate go run gen.go

import "fmt"

// KeySize is the length of a DES-EDE3 key: K1, K2 and K3, 8 bytes each.
const KeySize = 24

// BlockSize is the DES block length.
const BlockSize = 8

// Cipher is DES-EDE3 with one key. It only holds the round keys, so it is immutable after
// New and safe for concurrent use; the working state lives on the caller's stack.
type Cipher struct {
	enc, dec schedule
}

// Chain is one independent CBC message, encrypted in place: len(IV) == 8 and
// len(Data) a multiple of 8.
type Chain struct {
	IV   []byte
	Data []byte
}

// New expands a 24-byte key (K1, K2, K3). Parity bits are ignored, as in crypto/des.
func New(key []byte) (*Cipher, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("des3: key length %d, expected %d", len(key), KeySize)
	}
	var k [3][16]uint64
	for i := range k {
		k[i] = roundKeys(key[8*i : 8*i+8])
	}
	c := new(Cipher)
	// EDE3 encryption is E(K1), D(K2), E(K3); decryption undoes it in reverse order.
	c.enc.expand(k[0], k[1], k[2], false, true, false)
	c.dec.expand(k[2], k[1], k[0], true, false, true)
	return c, nil
}
