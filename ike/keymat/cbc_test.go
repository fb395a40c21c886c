package keymat

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/internal/testutil"
)

// sp80038aPlain is the plaintext of NIST SP 800-38A Appendix F.2.
const sp80038aPlain = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51" +
	"30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"

func TestCBCKnownAnswer(t *testing.T) {
	tests := []struct {
		name           string
		enc            proposal.Encryption
		key, iv, plain string
		cipher         string
	}{
		{
			name: "SP 800-38A F.2.1 CBC-AES128", enc: proposal.EncAESCBC,
			key: "2b7e151628aed2a6abf7158809cf4f3c", iv: "000102030405060708090a0b0c0d0e0f", plain: sp80038aPlain,
			cipher: "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2" +
				"73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
		},
		{
			name: "SP 800-38A F.2.3 CBC-AES192", enc: proposal.EncAESCBC,
			key: "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b", iv: "000102030405060708090a0b0c0d0e0f", plain: sp80038aPlain,
			cipher: "4f021db243bc633d7178183a9fa071e8b4d9ada9ad7dedf4e5e738763f69145a" +
				"571b242012fb7ae07fa9baac3df102e008b0e27988598881d920a9e64f5615cd",
		},
		{
			name: "SP 800-38A F.2.5 CBC-AES256", enc: proposal.EncAESCBC,
			key: "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", iv: "000102030405060708090a0b0c0d0e0f", plain: sp80038aPlain,
			cipher: "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d" +
				"39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
		},
		{
			// FIPS 81 Appendix C's DES-CBC example: 3DES with K1 = K2 = K3 is single DES.
			name: "FIPS 81 DES-CBC as 3DES", enc: proposal.Enc3DES,
			key: "0123456789abcdef0123456789abcdef0123456789abcdef", iv: "1234567890abcdef",
			plain:  "4e6f77206973207468652074696d6520666f7220616c6c20", // "Now is the time for all "
			cipher: "e5c7cdde872bf27c43e934008c389c0f683788499a7c05f6",
		},
		{
			// Three distinct keys, checking K1 | K2 | K3 key order.
			name: "3DES-CBC three keys", enc: proposal.Enc3DES,
			key: "385d7189a5c3d485e1370aa5d408082b5ccccb5e19f2d90e", iv: "c141b5fccd28dc8a",
			plain:  "6e1bd7c6120947a464a6aab293a0f89a563d8d40d3461b68",
			cipher: "6235a461afd312973e3b4f7aa7d23e34e03371f8e8c376c9",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewCBC(tt.enc, testutil.Unhex(t, tt.key))
			if err != nil {
				t.Fatal(err)
			}
			iv, plain, want := testutil.Unhex(t, tt.iv), testutil.Unhex(t, tt.plain), testutil.Unhex(t, tt.cipher)
			got := EncryptCBC(b, iv, plain)
			if !bytes.Equal(got, want) {
				t.Fatalf("EncryptCBC = %x, want %x", got, want)
			}
			back, err := DecryptCBC(b, iv, want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, plain) {
				t.Fatalf("DecryptCBC = %x, want %x", back, plain)
			}
		})
	}
}

func TestNewCBCErrors(t *testing.T) {
	tests := []struct {
		enc    proposal.Encryption
		keyLen int
		want   string
	}{
		{proposal.Enc3DES, 16, "3des key is 16 bytes, want 24"},
		{proposal.Enc3DES, 32, "3des key is 32 bytes, want 24"},
		{proposal.EncAESCBC, 0, "aes-cbc key is 0 bytes, want 16, 24 or 32"},
		{proposal.EncAESCBC, 20, "aes-cbc key is 20 bytes, want 16, 24 or 32"},
		{proposal.EncAESGCM16, 16, "encryption aes-gcm16 is not an IKEv1 phase-1 cipher"},
		{proposal.Encryption(0), 16, "encryption Encryption(0) is not"},
	}
	for _, tt := range tests {
		_, err := NewCBC(tt.enc, make([]byte, tt.keyLen))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewCBC(%v, %d bytes) error = %v, want %q", tt.enc, tt.keyLen, err, tt.want)
		}
	}
}

func TestCBCRoundTrip(t *testing.T) {
	keys := []struct {
		enc proposal.Encryption
		key []byte
	}{
		{proposal.Enc3DES, bytes.Repeat([]byte{1, 2, 3}, 8)},
		{proposal.EncAESCBC, bytes.Repeat([]byte{4}, 16)},
		{proposal.EncAESCBC, bytes.Repeat([]byte{5}, 24)},
		{proposal.EncAESCBC, bytes.Repeat([]byte{6}, 32)},
	}
	for _, k := range keys {
		b, err := NewCBC(k.enc, k.key)
		if err != nil {
			t.Fatal(err)
		}
		bs := b.BlockSize()
		iv := bytes.Repeat([]byte{0x77}, bs)
		for n := 0; n <= 3*bs+1; n++ {
			plain := bytes.Repeat([]byte{0xab}, n)
			ct := EncryptCBC(b, iv, plain)
			if len(ct)%bs != 0 || len(ct) < n || len(ct) >= n+bs {
				t.Fatalf("%v/%d: %d-byte plaintext gave %d-byte ciphertext", k.enc, len(k.key), n, len(ct))
			}
			if n == 0 {
				continue
			}
			back, err := DecryptCBC(b, iv, ct)
			if err != nil {
				t.Fatal(err)
			}
			padded := append(bytes.Clone(plain), make([]byte, len(ct)-n)...)
			if !bytes.Equal(back, padded) {
				t.Fatalf("%v/%d: round trip of %d bytes = %x, want %x", k.enc, len(k.key), n, back, padded)
			}
		}
	}
}

// TestCBCChain checks the IV chain the caller keeps: the next message's IV is the last
// ciphertext block of the previous one, as if both were one CBC stream.
func TestCBCChain(t *testing.T) {
	b, err := NewCBC(proposal.EncAESCBC, bytes.Repeat([]byte{9}, 16))
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, 16)
	m1, m2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 48)
	c1 := EncryptCBC(b, iv, m1)
	c2 := EncryptCBC(b, c1[len(c1)-16:], m2)
	whole := EncryptCBC(b, iv, append(bytes.Clone(m1), m2...))
	if !bytes.Equal(append(c1, c2...), whole) {
		t.Fatal("chained messages differ from one CBC stream")
	}
}

func TestDecryptCBCErrors(t *testing.T) {
	b, err := NewCBC(proposal.EncAESCBC, make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 15, 17, 31} {
		if _, err := DecryptCBC(b, make([]byte, 16), make([]byte, n)); !errors.Is(err, ErrCiphertextLength) {
			t.Errorf("DecryptCBC(%d bytes) error = %v, want ErrCiphertextLength", n, err)
		}
	}
	if _, err := DecryptCBC(b, make([]byte, 8), make([]byte, 16)); err == nil || !strings.Contains(err.Error(), "IV is 8 bytes, want 16") {
		t.Errorf("DecryptCBC with an 8-byte IV: error = %v", err)
	}
}

// FuzzDecryptCBC feeds peer-controlled encrypted bodies to DecryptCBC: it must reject
// partial blocks with ErrCiphertextLength and otherwise invert EncryptCBC.
func FuzzDecryptCBC(f *testing.F) {
	f.Add(false, []byte{})
	f.Add(false, make([]byte, 16))
	f.Add(true, make([]byte, 24))
	f.Add(true, make([]byte, 7))
	aes, err := NewCBC(proposal.EncAESCBC, bytes.Repeat([]byte{3}, 32))
	if err != nil {
		f.Fatal(err)
	}
	tdes, err := NewCBC(proposal.Enc3DES, bytes.Repeat([]byte{4, 5, 6}, 8))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, use3DES bool, body []byte) {
		b := aes
		if use3DES {
			b = tdes
		}
		iv := make([]byte, b.BlockSize())
		plain, err := DecryptCBC(b, iv, body)
		if err != nil {
			if !errors.Is(err, ErrCiphertextLength) {
				t.Fatalf("DecryptCBC(%d bytes): %v", len(body), err)
			}
			return
		}
		if again := EncryptCBC(b, iv, plain); !bytes.Equal(again, body) {
			t.Fatalf("EncryptCBC(DecryptCBC(x)) != x for %d bytes", len(body))
		}
	})
}
