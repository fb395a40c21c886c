package des3

import "github.com/espgw/espgw/datapath/esp/des3/internal/fips46"

// The S-box circuits may take inputs complemented (sboxInputComplemented) and compute
// outputs complemented (sboxComplemented), whatever saves NOT instructions. An output
// XORed into the state leaves that state word complemented; rather than spend a NOT,
// the cipher keeps such words complemented. Which words are, before each round, depends
// only on the round, so it is worked out once: the round key mask that a state word
// meets on its way into an S-box is complemented if exactly one of the word and the
// S-box input is, and the words leaving the last round are corrected when unloaded.
var polarity = func() (p struct {
	key [3][16][48]uint64 // XORed into the round key masks
	out [64]uint64        // XORed into the output words, FIPS 46-3 bit order
}) {
	var dest [32]int // S-box output bit -> word of the left half it is XORed into
	for i, b := range fips46.P {
		dest[b-1] = i
	}
	var a, b [32]bool // complemented words of the two halves, as passes() uses them
	for pass := range 3 {
		l, r := &a, &b
		if pass == 1 {
			l, r = r, l
		}
		for round := range 16 {
			for j, e := range fips46.E {
				if r[e-1] != sboxInputComplemented[j/6][j%6] {
					p.key[pass][round][j] = ^uint64(0)
				}
			}
			for s, outs := range sboxComplemented {
				for k, c := range outs {
					if c {
						l[dest[4*s+k]] = !l[dest[4*s+k]]
					}
				}
			}
			l, r = r, l
		}
	}
	for q, ip := range fips46.IP {
		if q < 32 && b[q] || q >= 32 && a[q-32] {
			p.out[ip-1] = ^uint64(0)
		}
	}
	return p
}()
