package des3

import (
	"bytes"
	"testing"
)

// fit stretches or cuts b to n bytes, so that every fuzz input is usable.
func fit(b []byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		if len(b) > 0 {
			out[i] = b[i%len(b)]
		}
	}
	return out
}

// FuzzCBC compares both directions with crypto/des: data as one message, and cut into
// ragged messages (0, 8, 16, 24, 32 bytes, repeating) encrypted side by side.
func FuzzCBC(f *testing.F) {
	f.Add([]byte("0123456789abcdef23456789abcdef01456789abcdef0123"), []byte("\x00\x00\x00\x00\x00\x00\x00\x00"), []byte("The quick brown fox jump"))
	f.Add([]byte("\x13\x34\x57\x79\x9b\xbc\xdf\xf1"), []byte("iv-iv-iv"), bytes.Repeat([]byte{0xa5}, 1400))
	f.Add([]byte{}, []byte{}, []byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 24), bytes.Repeat([]byte{0xff}, 8), bytes.Repeat([]byte{0}, 8*65))
	f.Fuzz(func(t *testing.T, key, iv, data []byte) {
		key, iv = fit(key, KeySize), fit(iv, BlockSize)
		data = data[:len(data)/BlockSize*BlockSize]
		c := mustNew(t, key)
		wantEnc, wantDec := reference(t, key, iv, data)

		got := bytes.Clone(data)
		c.DecryptCBC(got, got, iv)
		if !bytes.Equal(got, wantDec) {
			t.Fatalf("DecryptCBC in place: %s", firstDiff(got, wantDec))
		}
		got = bytes.Clone(data)
		c.EncryptCBC([]Chain{{IV: iv, Data: got}})
		if !bytes.Equal(got, wantEnc) {
			t.Fatalf("EncryptCBC, one chain: %s", firstDiff(got, wantEnc))
		}

		got = bytes.Clone(data)
		var chains []Chain
		var offsets []int
		for off, i := 0, 0; off < len(got); i++ {
			n := min(8*(i%5), len(got)-off)
			chains = append(chains, Chain{IV: iv, Data: got[off : off+n]})
			offsets = append(offsets, off)
			off += n
		}
		c.EncryptCBC(chains)
		for i, ch := range chains {
			want, _ := reference(t, key, iv, data[offsets[i]:offsets[i]+len(ch.Data)])
			if !bytes.Equal(ch.Data, want) {
				t.Fatalf("EncryptCBC, chain %d of %d: %s", i, len(chains), firstDiff(ch.Data, want))
			}
		}
	})
}
