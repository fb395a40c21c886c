package keymat

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"hash"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/internal/testutil"
)

// readVector parses the name=hex lines of testdata/ikev1-psk-kdf.txt.
func readVector(tb testing.TB) map[string][]byte {
	tb.Helper()
	f, err := os.Open("testdata/ikev1-psk-kdf.txt")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	v := make(map[string][]byte)
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			tb.Fatalf("vector line %q has no '='", line)
		}
		v[name] = testutil.Unhex(tb, value)
	}
	if err := s.Err(); err != nil {
		tb.Fatal(err)
	}
	for _, name := range []string{"CKY_I", "CKY_R", "Ni", "Nr", "g^xy", "pre-shared-key", "SKEYID", "SKEYID_d", "SKEYID_a", "SKEYID_e"} {
		if len(v[name]) == 0 {
			tb.Fatalf("vector has no %s", name)
		}
	}
	return v
}

func TestKDFVector(t *testing.T) {
	v := readVector(t)
	skeyid := SKEYIDPSK(proposal.HashSHA1, v["pre-shared-key"], v["Ni"], v["Nr"])
	if !bytes.Equal(skeyid, v["SKEYID"]) {
		t.Fatalf("SKEYID = %x, want %x", skeyid, v["SKEYID"])
	}
	p := DerivePhase1(proposal.HashSHA1, skeyid, v["g^xy"], v["CKY_I"], v["CKY_R"])
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"SKEYID", p.SKEYID, v["SKEYID"]},
		{"SKEYID_d", p.D, v["SKEYID_d"]},
		{"SKEYID_a", p.A, v["SKEYID_a"]},
		{"SKEYID_e", p.E, v["SKEYID_e"]},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s = %x, want %x", c.name, c.got, c.want)
		}
	}
}

// TestPRF checks each Hash maps to the right HMAC with the "Jefe" test case of
// RFC 2202 (MD5, SHA-1) and RFC 4231 section 4.3 (SHA-2), the data split in pieces.
func TestPRF(t *testing.T) {
	tests := []struct {
		h    proposal.Hash
		want string
	}{
		{proposal.HashMD5, "750c783e6ab0b503eaa86e310a5db738"},
		{proposal.HashSHA1, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"},
		{proposal.HashSHA256, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{proposal.HashSHA384, "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"},
		{proposal.HashSHA512, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
	}
	for _, tt := range tests {
		got := PRF(tt.h, []byte("Jefe"), []byte("what do ya "), nil, []byte("want for nothing?"))
		if hex.EncodeToString(got) != tt.want {
			t.Errorf("PRF(%v) = %x, want %s", tt.h, got, tt.want)
		}
	}
}

// hmacOf is the test's own HMAC, independent of PRF.
func hmacOf(newHash func() hash.Hash, key []byte, data ...[]byte) []byte {
	m := hmac.New(newHash, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

func TestEncryptionKey(t *testing.T) {
	v := readVector(t)
	eSHA1 := v["SKEYID_e"]

	// SKEYID_e with MD5, derived step by step from the vector's inputs.
	gxy, ci, cr := v["g^xy"], v["CKY_I"], v["CKY_R"]
	sMD5 := hmacOf(md5.New, v["pre-shared-key"], v["Ni"], v["Nr"])
	dMD5 := hmacOf(md5.New, sMD5, gxy, ci, cr, []byte{0})
	aMD5 := hmacOf(md5.New, sMD5, dMD5, gxy, ci, cr, []byte{1})
	eMD5 := hmacOf(md5.New, sMD5, aMD5, gxy, ci, cr, []byte{2})
	if p := DerivePhase1(proposal.HashMD5, SKEYIDPSK(proposal.HashMD5, v["pre-shared-key"], v["Ni"], v["Nr"]), gxy, ci, cr); !bytes.Equal(p.E, eMD5) {
		t.Fatalf("MD5 SKEYID_e = %x, want %x", p.E, eMD5)
	}

	// Appendix B expansion written out: K1 = prf(SKEYID_e, 0), Ki = prf(SKEYID_e, Ki-1).
	k1SHA1 := hmacOf(sha1.New, eSHA1, []byte{0})
	k2SHA1 := hmacOf(sha1.New, eSHA1, k1SHA1)
	k1MD5 := hmacOf(md5.New, eMD5, []byte{0})
	k2MD5 := hmacOf(md5.New, eMD5, k1MD5)
	k3MD5 := hmacOf(md5.New, eMD5, k2MD5)

	tests := []struct {
		name string
		h    proposal.Hash
		e    []byte
		n    int
		want []byte
	}{
		{"aes128 sha1: truncate", proposal.HashSHA1, eSHA1, 16, eSHA1[:16]},
		{"aes256 sha1: expand", proposal.HashSHA1, eSHA1, 32, append(bytes.Clone(k1SHA1), k2SHA1...)[:32]},
		{"3des sha1: expand", proposal.HashSHA1, eSHA1, 24, append(bytes.Clone(k1SHA1), k2SHA1...)[:24]},
		{"3des md5: expand", proposal.HashMD5, eMD5, 24, append(bytes.Clone(k1MD5), k2MD5...)[:24]},
		{"aes128 md5: exact", proposal.HashMD5, eMD5, 16, eMD5},
		{"three blocks", proposal.HashMD5, eMD5, 40, append(append(bytes.Clone(k1MD5), k2MD5...), k3MD5...)[:40]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EncryptionKey(tt.h, tt.e, tt.n)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("EncryptionKey = %x, want %x", got, tt.want)
			}
			orig := bytes.Clone(tt.e)
			got[0] ^= 0xff
			if !bytes.Equal(tt.e, orig) {
				t.Fatal("EncryptionKey result aliases SKEYID_e")
			}
		})
	}
}

func TestPhase1IV(t *testing.T) {
	gxi := bytes.Repeat([]byte{0x11}, 128)
	gxr := bytes.Repeat([]byte{0x22}, 128)
	sum := sha1.Sum(append(bytes.Clone(gxi), gxr...))
	for _, bs := range []int{8, 16} {
		got := Phase1IV(proposal.HashSHA1, gxi, gxr, bs)
		if !bytes.Equal(got, sum[:bs]) {
			t.Errorf("Phase1IV(block %d) = %x, want %x", bs, got, sum[:bs])
		}
	}
	// The IV is a hash, not the prf: order matters and the result differs from HMAC.
	if bytes.Equal(Phase1IV(proposal.HashSHA1, gxr, gxi, 16), sum[:16]) {
		t.Error("Phase1IV ignores the order of g^xi and g^xr")
	}
	md := md5.Sum(append(bytes.Clone(gxi), gxr...))
	if got := Phase1IV(proposal.HashMD5, gxi, gxr, 16); !bytes.Equal(got, md[:]) {
		t.Errorf("Phase1IV(md5) = %x, want %x", got, md)
	}
}

func TestPhase2IV(t *testing.T) {
	last := testutil.Unhex(t, "00112233445566778899aabbccddeeff")
	mid := testutil.Unhex(t, "a1b2c3d4")
	tests := []struct {
		h    proposal.Hash
		last []byte
		bs   int
		want func() []byte
	}{
		{proposal.HashSHA1, last, 16, func() []byte { s := sha1.Sum(append(bytes.Clone(last), mid...)); return s[:16] }},
		{proposal.HashMD5, last[:8], 8, func() []byte { s := md5.Sum(append(bytes.Clone(last[:8]), mid...)); return s[:8] }},
	}
	for _, tt := range tests {
		got := Phase2IV(tt.h, tt.last, mid, tt.bs)
		if len(got) != tt.bs || !bytes.Equal(got, tt.want()) {
			t.Errorf("Phase2IV(%v, block %d) = %x, want %x", tt.h, tt.bs, got, tt.want())
		}
	}
	other := Phase2IV(proposal.HashSHA1, last, testutil.Unhex(t, "a1b2c3d5"), 16)
	if bytes.Equal(other, Phase2IV(proposal.HashSHA1, last, mid, 16)) {
		t.Error("Phase2IV ignores the message ID")
	}
}

func TestQuickModeKeymat(t *testing.T) {
	v := readVector(t)
	d := v["SKEYID_d"]
	spi := testutil.Unhex(t, "825eed49")
	ni, nr := bytes.Repeat([]byte{0xa5}, 16), bytes.Repeat([]byte{0x5a}, 20)
	gxyQM := bytes.Repeat([]byte{0x3c}, 128)
	const esp = 3

	// RFC 2409 section 5.5 written out, three PRF blocks deep.
	expand := func(gxy []byte, n int) []byte {
		seed := append(append(append(append(bytes.Clone(gxy), esp), spi...), ni...), nr...)
		k1 := hmacOf(sha1.New, d, seed)
		k2 := hmacOf(sha1.New, d, k1, seed)
		k3 := hmacOf(sha1.New, d, k2, seed)
		return append(append(k1, k2...), k3...)[:n]
	}
	tests := []struct {
		name string
		gxy  []byte
		n    int // 3des (24) + hmac-sha1 (20); aes128 (16) + sha1 (20); aes256gcm16 (32 + 4 salt)
	}{
		{"no pfs 3des-sha1", nil, 44},
		{"pfs 3des-sha1", gxyQM, 44},
		{"no pfs aes128-sha1", nil, 36},
		{"pfs aes256gcm16", gxyQM, 36},
		{"short", nil, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := QuickModeKeymat(proposal.HashSHA1, d, tt.gxy, esp, spi, ni, nr, tt.n)
			if want := expand(tt.gxy, tt.n); !bytes.Equal(got, want) {
				t.Fatalf("KEYMAT = %x, want %x", got, want)
			}
		})
	}
	a := QuickModeKeymat(proposal.HashSHA1, d, nil, esp, spi, ni, nr, 20)
	b := QuickModeKeymat(proposal.HashSHA1, d, gxyQM, esp, spi, ni, nr, 20)
	c := QuickModeKeymat(proposal.HashSHA1, d, nil, esp, testutil.Unhex(t, "825eed4a"), ni, nr, 20)
	if bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Error("KEYMAT does not depend on the PFS secret or the SPI")
	}
}

func TestPhase1Redacted(t *testing.T) {
	p := Phase1{SKEYID: []byte("skeyid-secret"), D: []byte("d-secret"), A: []byte("a-secret"), E: []byte("e-secret")}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("phase 1 done", "keys", p)
	out := buf.String() + fmt.Sprintf("%v %s %+v %#v", p, p, p, p)
	if strings.Contains(out, "secret") || strings.Count(out, "[redacted]") != 5 {
		t.Fatalf("keys leaked: %q", out)
	}
}
