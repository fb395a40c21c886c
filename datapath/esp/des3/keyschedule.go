package des3

import (
	"encoding/binary"

	"github.com/espgw/espgw/datapath/esp/des3/internal/fips46"
)

// schedule holds the 48 round keys of the three DES passes as lane masks: word j of a
// round is all ones where round key bit j+1 is 1, complemented where the S-box input
// it makes must be (see polarity).
type schedule [3][16][48]uint64

// roundKeys returns the 16 round keys of one DES key, bit 1 of each in bit 47.
func roundKeys(key []byte) (rk [16]uint64) {
	k := binary.BigEndian.Uint64(key)
	var cd uint64 // 56 bits: C in bits 55..28, D in bits 27..0
	for i, p := range fips46.PC1 {
		cd |= k >> (64 - uint(p)) & 1 << (55 - i)
	}
	const mask28 = 1<<28 - 1
	c, d := cd>>28, cd&mask28
	for r, s := range fips46.Shifts {
		c = (c<<s | c>>(28-s)) & mask28
		d = (d<<s | d>>(28-s)) & mask28
		cd = c<<28 | d
		for i, p := range fips46.PC2 {
			rk[r] |= cd >> (56 - uint(p)) & 1 << (47 - i)
		}
	}
	return rk
}

// expand fills the schedule for three DES passes with keys k1, k2, k3; a pass marked
// decrypt uses its round keys in reverse order.
func (s *schedule) expand(k1, k2, k3 [16]uint64, dec1, dec2, dec3 bool) {
	for pass, p := range [3]struct {
		k   [16]uint64
		dec bool
	}{{k1, dec1}, {k2, dec2}, {k3, dec3}} {
		for r := range 16 {
			rk := p.k[r]
			if p.dec {
				rk = p.k[15-r]
			}
			for j := range 48 {
				s[pass][r][j] = -(rk >> (47 - j) & 1) ^ polarity.key[pass][r][j]
			}
		}
	}
}
