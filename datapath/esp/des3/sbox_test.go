package des3

import (
	"fmt"
	"testing"

	"github.com/espgw/espgw/datapath/esp/des3/internal/fips46"
)

var sboxes = [8]func(x0, x1, x2, x3, x4, x5 uint64) (y0, y1, y2, y3 uint64){
	sbox1, sbox2, sbox3, sbox4, sbox5, sbox6, sbox7, sbox8,
}

// TestSboxCircuits evaluates every generated circuit on all 64 inputs at once, input x in
// lane x, against the FIPS 46-3 tables.
func TestSboxCircuits(t *testing.T) {
	var in [6]uint64
	for x := range 64 {
		for i := range in {
			in[i] |= uint64(x>>(5-i)&1) << x
		}
	}
	for s, box := range sboxes {
		t.Run(fmt.Sprintf("S%d", s+1), func(t *testing.T) {
			x := in
			for i := range x {
				if sboxInputComplemented[s][i] {
					x[i] = ^x[i]
				}
			}
			var y [4]uint64
			y[0], y[1], y[2], y[3] = box(x[0], x[1], x[2], x[3], x[4], x[5])
			for k := range y {
				if sboxComplemented[s][k] {
					y[k] = ^y[k]
				}
			}
			for x := range 64 {
				var got byte
				for k := range y {
					got |= byte(y[k]>>x&1) << (3 - k)
				}
				if want := fips46.Lookup(s, byte(x)); got != want {
					t.Errorf("input %06b: got %d, want %d", x, got, want)
				}
			}
		})
	}
}

// TestTranspose checks the lane layout cryptBlocks relies on, and that transposing twice
// restores the blocks.
func TestTranspose(t *testing.T) {
	var m [64]uint64
	for r := range m {
		m[r] = 0x9e3779b97f4a7c15 * uint64(r+1)
	}
	orig := m
	transpose(&m)
	for r := range 64 {
		for c := range 64 {
			if got, want := m[c]>>(63-r)&1, orig[r]>>(63-c)&1; got != want {
				t.Fatalf("word %d lane bit %d = %d, want bit %d of block %d = %d", c, 63-r, got, 63-c, r, want)
			}
		}
	}
	if transpose(&m); m != orig {
		t.Fatal("transposing twice did not restore the blocks")
	}
}

func BenchmarkTranspose(b *testing.B) {
	var m [64]uint64
	for i := range m {
		m[i] = uint64(i) * 0x9e3779b97f4a7c15
	}
	b.SetBytes(int64(len(m) * 8))
	for b.Loop() {
		transpose(&m)
	}
}
