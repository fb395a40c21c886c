package des3

import (
	"bytes"
	"crypto/cipher"
	"crypto/des"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// reference returns crypto/des's CBC encryption and decryption of data.
func reference(tb testing.TB, key, iv, data []byte) (enc, dec []byte) {
	tb.Helper()
	b, err := des.NewTripleDESCipher(key)
	if err != nil {
		tb.Fatal(err)
	}
	enc, dec = make([]byte, len(data)), make([]byte, len(data))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(enc, data)
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(dec, data)
	return enc, dec
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	return b
}

func mustNew(tb testing.TB, key []byte) *Cipher {
	tb.Helper()
	c, err := New(key)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestNewKeyLength(t *testing.T) {
	for _, n := range []int{0, 8, 16, 23, 25, 32} {
		_, err := New(make([]byte, n))
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("length %d, expected 24", n)) {
			t.Errorf("New(%d bytes) = %v, want an error naming length %d and 24", n, err, n)
		}
	}
}

// TestKnownAnswer uses single-block chains with a zero IV, which is plain DES-EDE3.
func TestKnownAnswer(t *testing.T) {
	tests := []struct {
		name, key, plain, cipher string
	}{
		// NIST SP 800-67 Rev. 1, appendix B: three distinct keys, "The quick brown fox jump".
		{"SP800-67", "0123456789abcdef23456789abcdef01456789abcdef0123",
			"54686520717566636b2062726f776e20666f78206a756d70",
			"a826fd8ce53b855fcce21c8112256fe668d5c05dd9b6b900"},
		// K1 = K2 = K3 is single DES: the FIPS 46 worked example.
		{"single-DES", "133457799bbcdff1133457799bbcdff1133457799bbcdff1",
			"0123456789abcdef", "85e813540f0ab405"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustNew(t, testutil.Unhex(t, tt.key))
			plain, want := testutil.Unhex(t, tt.plain), testutil.Unhex(t, tt.cipher)
			zero := make([]byte, BlockSize)
			got := bytes.Clone(plain)
			var chains []Chain
			for off := 0; off < len(got); off += BlockSize {
				chains = append(chains, Chain{IV: zero, Data: got[off : off+BlockSize]})
			}
			c.EncryptCBC(chains)
			if !bytes.Equal(got, want) {
				t.Fatalf("encrypt: got %x, want %x", got, want)
			}
			for off := 0; off < len(got); off += BlockSize {
				c.DecryptCBC(got[off:off+BlockSize], got[off:off+BlockSize], zero)
			}
			if !bytes.Equal(got, plain) {
				t.Fatalf("decrypt: got %x, want %x", got, plain)
			}
		})
	}
}

// firstDiff describes where got and want (of equal length) first differ, by block.
func firstDiff(got, want []byte) string {
	for off := 0; off < len(want); off += BlockSize {
		if !bytes.Equal(got[off:off+BlockSize], want[off:off+BlockSize]) {
			return fmt.Sprintf("block %d of %d: got %x, want %x", off/BlockSize, len(want)/BlockSize,
				got[off:off+BlockSize], want[off:off+BlockSize])
		}
	}
	return "equal"
}

func TestDecryptCBC(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, blocks := range []int{0, 1, 2, 63, 64, 65, 128, 175, 176, 200, 513} {
		for _, alias := range []bool{false, true} {
			t.Run(fmt.Sprintf("%dB/alias=%t", 8*blocks, alias), func(t *testing.T) {
				key, iv := randomBytes(rng, KeySize), randomBytes(rng, BlockSize)
				src := randomBytes(rng, 8*blocks)
				_, want := reference(t, key, iv, src)
				dst := make([]byte, len(src))
				if alias {
					dst = src
				}
				mustNew(t, key).DecryptCBC(dst, src, iv)
				if !bytes.Equal(dst, want) {
					t.Fatal(firstDiff(dst, want))
				}
			})
		}
	}
}

func TestEncryptCBC(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, n := range []int{0, 1, 2, 46, 63, 64, 65, 128, 200} {
		for _, ragged := range []bool{false, true} {
			t.Run(fmt.Sprintf("%dchains/ragged=%t", n, ragged), func(t *testing.T) {
				key := randomBytes(rng, KeySize)
				chains := make([]Chain, n)
				want := make([][]byte, n)
				for i := range chains {
					blocks := 175
					if ragged {
						blocks = rng.Intn(180) // 0 .. 1432 bytes
					}
					chains[i] = Chain{IV: randomBytes(rng, BlockSize), Data: randomBytes(rng, 8*blocks)}
					want[i], _ = reference(t, key, chains[i].IV, chains[i].Data)
				}
				mustNew(t, key).EncryptCBC(chains)
				for i, ch := range chains {
					if !bytes.Equal(ch.Data, want[i]) {
						t.Fatalf("chain %d (%d bytes): %s", i, len(ch.Data), firstDiff(ch.Data, want[i]))
					}
				}
			})
		}
	}
}

func TestLengthPanics(t *testing.T) {
	c := mustNew(t, make([]byte, KeySize))
	tests := []struct {
		name string
		call func()
		want string
	}{
		{"short IV", func() { c.DecryptCBC(make([]byte, 8), make([]byte, 8), make([]byte, 7)) }, "IV length 7"},
		{"partial block", func() { c.DecryptCBC(make([]byte, 12), make([]byte, 12), make([]byte, 8)) }, "ciphertext length 12"},
		{"short dst", func() { c.DecryptCBC(make([]byte, 8), make([]byte, 16), make([]byte, 8)) }, "output length 8"},
		{"chain IV", func() { c.EncryptCBC([]Chain{{IV: make([]byte, 8)}, {IV: nil}}) }, "chain 1: IV length 0"},
		{"chain data", func() { c.EncryptCBC([]Chain{{IV: make([]byte, 8), Data: make([]byte, 9)}}) }, "chain 0: data length 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), tt.want) {
					t.Fatalf("panic %v, want one containing %q", r, tt.want)
				}
			}()
			tt.call()
		})
	}
}

func TestZeroAllocs(t *testing.T) {
	c := mustNew(t, make([]byte, KeySize))
	iv, buf := make([]byte, BlockSize), make([]byte, 1400)
	chains := make([]Chain, 70)
	for i := range chains {
		chains[i] = Chain{IV: iv, Data: make([]byte, 1400)}
	}
	for name, f := range map[string]func(){
		"DecryptCBC": func() { c.DecryptCBC(buf, buf, iv) },
		"EncryptCBC": func() { c.EncryptCBC(chains) },
	} {
		if n := testing.AllocsPerRun(5, f); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, n)
		}
	}
}
