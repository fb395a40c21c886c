package dh

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// arctanInv returns arctan(1/x) * 2^prec, truncated.
func arctanInv(x int64, prec uint) *big.Int {
	x2 := big.NewInt(x * x)
	term := new(big.Int).Lsh(big.NewInt(1), prec)
	term.Quo(term, big.NewInt(x))
	sum := new(big.Int).Set(term)
	for k := int64(1); term.Sign() != 0; k++ {
		term.Quo(term, x2)
		t := new(big.Int).Quo(term, big.NewInt(2*k+1))
		if k%2 == 1 {
			sum.Sub(sum, t)
		} else {
			sum.Add(sum, t)
		}
	}
	return sum
}

// TestMODPPrimes recomputes each prime from its definition in RFC 2409 / RFC 3526,
// p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) pi) + c), with pi from Machin's
// formula, and checks that p and (p-1)/2 are prime.
func TestMODPPrimes(t *testing.T) {
	const prec = 4200 // bits of pi; 4096-130 are used, the rest absorbs truncation error
	pi := new(big.Int).Mul(arctanInv(5, prec), big.NewInt(16))
	pi.Sub(pi, new(big.Int).Mul(arctanInv(239, prec), big.NewInt(4)))

	tests := []struct {
		id   uint16
		bits uint
		c    int64
	}{
		{2, 1024, 129093},
		{5, 1536, 741804},
		{14, 2048, 124476},
		{15, 3072, 1690314},
		{16, 4096, 240904},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.id), func(t *testing.T) {
			n := tt.bits
			want := new(big.Int).Lsh(big.NewInt(1), n)
			want.Sub(want, new(big.Int).Lsh(big.NewInt(1), n-64))
			want.Sub(want, big.NewInt(1))
			f := new(big.Int).Rsh(pi, prec-(n-130))
			f.Add(f, big.NewInt(tt.c))
			want.Add(want, f.Lsh(f, 64))

			g := mustGroup(t, tt.id).(*modpGroup)
			if g.p.Cmp(want) != 0 {
				t.Fatalf("prime of group %d differs from its definition", tt.id)
			}
			if g.size*8 != int(n) {
				t.Fatalf("size = %d bytes, want %d", g.size, n/8)
			}
			q := new(big.Int).Rsh(g.p, 1)
			if testing.Short() {
				testutil.NotApplicable(t, "-short: skipping primality tests")
			}
			if !g.p.ProbablyPrime(1) || !q.ProbablyPrime(1) {
				t.Fatalf("group %d: p or (p-1)/2 is not prime", tt.id)
			}
		})
	}
}

// TestMODPPadding pins exponent 2 through rand: the public value 2^2 and the secret
// 4^2 must come out left-padded to the prime length.
func TestMODPPadding(t *testing.T) {
	for _, id := range []uint16{2, 5, 14, 15, 16} {
		g := mustGroup(t, id)
		x := make([]byte, g.(*modpGroup).expBytes)
		x[len(x)-1] = 2
		k, err := g.GenerateKey(bytes.NewReader(x))
		if err != nil {
			t.Fatal(err)
		}
		four := make([]byte, g.PublicLen())
		four[len(four)-1] = 4
		if !bytes.Equal(k.Public(), four) {
			t.Fatalf("group %d: public value for x=2 is %x, want %x", id, k.Public(), four)
		}
		z, err := k.SharedSecret(four)
		if err != nil {
			t.Fatal(err)
		}
		sixteen := make([]byte, g.PublicLen())
		sixteen[len(sixteen)-1] = 16
		if !bytes.Equal(z, sixteen) {
			t.Fatalf("group %d: 4^2 = %x, want %x", id, z, sixteen)
		}
	}
}

// readSizes records the sizes of the reads from crypto/rand.
type readSizes []int

func (r *readSizes) Read(p []byte) (int, error) {
	*r = append(*r, len(p))
	return rand.Read(p)
}

// TestMODPExponentLength pins each group's private exponent length (modp.go): twice the
// group's security strength, at least 256 bits.
func TestMODPExponentLength(t *testing.T) {
	for id, bits := range map[uint16]int{2: 256, 5: 256, 14: 256, 15: 256, 16: 304} {
		var reads readSizes
		k, err := mustGroup(t, id).GenerateKey(&reads)
		if err != nil {
			t.Fatal(err)
		}
		if len(reads) != 1 || reads[0]*8 != bits || k.(*modpKey).x.BitLen() > bits {
			t.Errorf("group %d: read %v bytes for an exponent of %d bits, want one read of %d bits",
				id, reads, k.(*modpKey).x.BitLen(), bits)
		}
	}
}

func TestMODPInvalidPublic(t *testing.T) {
	for _, id := range []uint16{2, 5, 14, 15, 16} {
		g := mustGroup(t, id).(*modpGroup)
		k, err := g.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pad := func(v *big.Int) []byte { return v.FillBytes(make([]byte, g.size)) }
		valid := k.Public()
		tests := []struct {
			name string
			y    []byte
		}{
			{"zero", pad(big.NewInt(0))},
			{"one", pad(big.NewInt(1))},
			{"p-1", pad(g.pMinus1)},
			{"p", pad(g.p)},
			{"p+1", pad(new(big.Int).Add(g.p, big.NewInt(1)))},
			{"all ones", bytes.Repeat([]byte{0xff}, g.size)},
			{"empty", nil},
			{"one byte short", valid[1:]},
			{"one byte long", append([]byte{0}, valid...)},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%d/%s", id, tt.name), func(t *testing.T) {
				z, err := k.SharedSecret(tt.y)
				if !errors.Is(err, ErrInvalidPublic) {
					t.Fatalf("SharedSecret = %x, %v; want ErrInvalidPublic", z, err)
				}
			})
		}
		// The smallest and largest accepted values.
		for _, y := range []*big.Int{big.NewInt(2), new(big.Int).Sub(g.pMinus1, big.NewInt(1))} {
			if _, err := k.SharedSecret(pad(y)); err != nil {
				t.Errorf("group %d: boundary value rejected: %v", id, err)
			}
		}
	}
}
