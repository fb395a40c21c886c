package des3

import "github.com/espgw/espgw/datapath/esp/des3/internal/fips46"

// swapBits exchanges the bits of x under mask with the bits of y under mask<<j: one step
// of transpose (transpose_gen.go).
func swapBits(x, y uint64, j uint, mask uint64) (uint64, uint64) {
	t := (x ^ y>>j) & mask
	return x ^ t, y ^ t<<j
}

// ipWord maps the state halves to the words of a transposed block: left half word j is
// word ipWord[j], right half word j is ipWord[32+j] (the initial permutation). The final
// permutation, its inverse, is the same map read backwards.
var ipWord = func() (w [64]byte) {
	for j, p := range fips46.IP {
		w[j] = p - 1
	}
	return w
}()

// cryptBlocks runs 64 blocks (one per word of m, big-endian) through the three passes of
// s in place.
func cryptBlocks(s *schedule, m *[64]uint64) {
	transpose(m)
	var a, b [32]uint64
	for j := range a {
		a[j] = m[ipWord[j]&63]
		b[j] = m[ipWord[32+j]&63]
	}
	passes(s, &a, &b)
	// The output is R16 L16 of the last pass, through the final permutation.
	for j := range a {
		m[ipWord[j]&63] = b[j] ^ polarity.out[ipWord[j]&63]
		m[ipWord[32+j]&63] = a[j] ^ polarity.out[ipWord[32+j]&63]
	}
	transpose(m)
}

// passes is DES-EDE3 on the halves l (L0) and r (R0). Each DES pass ends by swapping the
// halves, so the middle pass runs with their roles exchanged.
func passes(s *schedule, l, r *[32]uint64) {
	pass(&s[0], l, r)
	pass(&s[1], r, l)
	pass(&s[2], l, r)
}

// pass runs the 16 rounds of one DES operation in place, the halves taking turns as the
// one updated.
func pass(k *[16][48]uint64, l, r *[32]uint64) {
	for i := 0; i < 16; i += 2 {
		feistel(l, r, &k[i])
		feistel(r, l, &k[i+1])
	}
}
