package esp

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzOpen feeds arbitrary bytes to Open for every transform: it must never panic, must
// fail with one of the package's errors, and may only succeed with a subslice of its input.
func FuzzOpen(f *testing.F) {
	for i, s := range suites {
		out, _ := s.pair(f, 0xf00d)
		for _, n := range []int{0, 20, 84} {
			inner := icmpEcho([4]byte{10, 10, 1, 1}, [4]byte{10, 20, 0, 1}, 1, uint16(n), max(n-28, 0))
			f.Add(uint8(i), []byte(seal(f, out, inner)))
		}
		f.Add(uint8(i), []byte{0, 0, 0xf0, 0x0d, 0, 0, 0, 1})
	}
	f.Add(uint8(0), []byte{})
	known := []error{ErrTruncated, ErrAuth, ErrReplay, ErrPadding, ErrNextHeader, ErrWrongSPI}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		s := suites[int(which)%len(suites)]
		in, err := NewSA(s.config(0xf00d), Inbound, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		pkt := bytes.Clone(data)
		inner, err := in.Open(pkt)
		if err != nil {
			for _, k := range known {
				if errors.Is(err, k) {
					return
				}
			}
			t.Fatalf("Open error %v is none of the package's errors", err)
		}
		if len(inner) > len(pkt) || (len(inner) > 0 && &inner[0] != &pkt[in.HeaderLen()]) {
			t.Fatalf("Open returned %d bytes not at the payload offset of its %d-byte input", len(inner), len(pkt))
		}
		if p, _ := Parse(pkt); p.SPI() != 0xf00d {
			t.Fatalf("accepted SPI %#x", p.SPI())
		}
	})
}
