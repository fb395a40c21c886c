package proposal

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/espgw/espgw/ike/dh"
)

func TestParseIKE(t *testing.T) {
	aes128 := func(h Hash, g uint16) IKE { return IKE{EncAESCBC, 128, h, g} }
	aes256 := func(h Hash, g uint16) IKE { return IKE{EncAESCBC, 256, h, g} }
	tests := []struct {
		in   string
		want []IKE
	}{
		{"3des-sha1-modp1024", []IKE{{Enc3DES, 0, HashSHA1, 2}}},
		{"aes256-sha256-modp2048", []IKE{aes256(HashSHA256, 14)}},
		{"aes-sha-modp1536", []IKE{aes128(HashSHA1, 5)}},
		{"aes192-md5-modp3072", []IKE{{EncAESCBC, 192, HashMD5, 15}}},
		{"aes256-sha2_384-modp4096", []IKE{aes256(HashSHA384, 16)}},
		{"aes256-sha2_512-ecp384", []IKE{aes256(HashSHA512, 20)}},
		{"aes128-sha2_256-ecp256", []IKE{aes128(HashSHA256, 19)}},
		{"  AES256-SHA256-MODP2048 ", []IKE{aes256(HashSHA256, 14)}},
		{"modp2048-sha1-aes128", []IKE{aes128(HashSHA1, 14)}},
		{"aes128-aes256-sha1-sha256-modp2048-modp1024", []IKE{
			aes128(HashSHA1, 14), aes128(HashSHA1, 2), aes128(HashSHA256, 14), aes128(HashSHA256, 2),
			aes256(HashSHA1, 14), aes256(HashSHA1, 2), aes256(HashSHA256, 14), aes256(HashSHA256, 2),
		}},
		{"aes256-sha256-modp2048, 3des-sha1-modp1024", []IKE{aes256(HashSHA256, 14), {Enc3DES, 0, HashSHA1, 2}}},
	}
	for _, tt := range tests {
		got, err := ParseIKE(tt.in)
		if err != nil {
			t.Errorf("ParseIKE(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseIKE(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseESP(t *testing.T) {
	tests := []struct {
		in   string
		want []ESP
	}{
		{"3des-sha1", []ESP{{Enc3DES, 0, HashSHA1, 0}}},
		{"3des-sha1-modp1024", []ESP{{Enc3DES, 0, HashSHA1, 2}}},
		{"aes256-sha256-modp2048", []ESP{{EncAESCBC, 256, HashSHA256, 14}}},
		{"aes-md5", []ESP{{EncAESCBC, 128, HashMD5, 0}}},
		{"aes256gcm16-modp2048", []ESP{{EncAESGCM16, 256, HashNone, 14}}},
		{"aes128gcm16", []ESP{{EncAESGCM16, 128, HashNone, 0}}},
		{"aes192gcm128", []ESP{{EncAESGCM16, 192, HashNone, 0}}},
		{"aes256gcm", []ESP{{EncAESGCM16, 256, HashNone, 0}}},
		{"aes128-sha1-noesn", []ESP{{EncAESCBC, 128, HashSHA1, 0}}},
		{"aes128gcm16-aes256gcm16-ecp256-ecp384", []ESP{
			{EncAESGCM16, 128, HashNone, 19}, {EncAESGCM16, 128, HashNone, 20},
			{EncAESGCM16, 256, HashNone, 19}, {EncAESGCM16, 256, HashNone, 20},
		}},
		{"aes256-sha512-sha384", []ESP{{EncAESCBC, 256, HashSHA512, 0}, {EncAESCBC, 256, HashSHA384, 0}}},
		{"aes256gcm16, aes128-sha1-modp1024", []ESP{{EncAESGCM16, 256, HashNone, 0}, {EncAESCBC, 128, HashSHA1, 2}}},
	}
	for _, tt := range tests {
		got, err := ParseESP(tt.in)
		if err != nil {
			t.Errorf("ParseESP(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseESP(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		esp  bool
		in   string
		want string // substring of the error
	}{
		{false, "", `invalid proposal "": empty`},
		{false, " , ", `empty proposal between commas`},
		{false, "aes128-sha1-modp2048,", `empty proposal between commas`},
		{false, "aes128-foo-modp2048", `unknown IKE keyword "foo", want one of 3des, aes128, aes192, aes256, aes, md5, sha1, sha, sha256, sha2_256, sha384, sha2_384, sha512, sha2_512, modp1024, modp1536, modp2048, modp3072, modp4096, ecp256, ecp384`},
		{false, "aes128--modp2048", `unknown IKE keyword ""`},
		{false, "aes128gcm16-sha256-modp2048", `unknown IKE keyword "aes128gcm16"`},
		{false, "aes128-sha1-modp2048-noesn", `unknown IKE keyword "noesn"`},
		{false, "modp768-sha1-aes128", `unknown IKE keyword "modp768"`},
		{false, "aes128-sha1", `an IKE proposal needs a cipher (3des, aes128, aes192, aes256, aes), a hash (md5, sha1, sha, sha256, sha2_256, sha384, sha2_384, sha512, sha2_512) and a group (modp1024,`},
		{false, "sha1-modp2048", `needs a cipher`},
		{false, "aes128-modp2048", `needs a cipher`},
		{true, "", `empty`},
		{true, "aes128-sha1-esn", `"esn": IKEv1 cannot negotiate extended sequence numbers, want noesn or nothing`},
		{true, "aes128-sha1-bogus", `unknown ESP keyword "bogus", want one of 3des, aes128, aes192, aes256, aes, aes128gcm16,`},
		{true, "aes128", `a CBC cipher needs an integrity algorithm (md5, sha1,`},
		{true, "sha1-modp2048", `an ESP proposal needs a cipher (3des, aes128,`},
		{true, "aes256gcm16-sha256", `AES-GCM authenticates by itself, want no integrity keyword (sha256)`},
		{true, "aes128-aes128gcm16-sha1", `mixes AES-GCM with CBC ciphers`},
		{true, "aes128gcm16-aes128", `mixes AES-GCM with CBC ciphers`},
		{true, "aes128gcm8", `unknown ESP keyword "aes128gcm8"`},
	}
	for _, tt := range tests {
		var err error
		if tt.esp {
			_, err = ParseESP(tt.in)
		} else {
			_, err = ParseIKE(tt.in)
		}
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(esp=%t, %q) error = %v, want ErrSyntax containing %q", tt.esp, tt.in, err, tt.want)
		}
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		p    interface{ String() string }
		want string
	}{
		{IKE{EncAESCBC, 256, HashSHA256, 14}, "aes256-sha256-modp2048"},
		{IKE{Enc3DES, 0, HashSHA1, 2}, "3des-sha1-modp1024"},
		{IKE{EncAESCBC, 128, HashMD5, 20}, "aes128-md5-ecp384"},
		{ESP{EncAESGCM16, 256, HashNone, 14}, "aes256gcm16-modp2048"},
		{ESP{Enc3DES, 0, HashSHA1, 0}, "3des-sha1"},
		{ESP{EncAESCBC, 192, HashSHA512, 19}, "aes192-sha512-ecp256"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
	if got := FormatIKE([]IKE{{EncAESCBC, 256, HashSHA256, 14}, {Enc3DES, 0, HashMD5, 2}}); got != "aes256-sha256-modp2048, 3des-md5-modp1024" {
		t.Errorf("FormatIKE = %q", got)
	}
	if got := FormatESP(nil); got != "" {
		t.Errorf("FormatESP(nil) = %q", got)
	}
}

// allIKE and allESP are every proposal the keywords can express.
func allIKE(t *testing.T) []IKE {
	t.Helper()
	ps, err := ParseIKE("3des-aes128-aes192-aes256-md5-sha1-sha256-sha384-sha512-" + groupKeywords)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func allESP(t *testing.T) []ESP {
	t.Helper()
	cbc, err := ParseESP("3des-aes128-aes192-aes256-md5-sha1-sha256-sha384-sha512-" + groupKeywords)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := ParseESP("aes128gcm16-aes192gcm16-aes256gcm16-" + groupKeywords)
	if err != nil {
		t.Fatal(err)
	}
	noPFS, err := ParseESP("3des-aes256-sha1, aes128gcm16")
	if err != nil {
		t.Fatal(err)
	}
	return append(append(cbc, gcm...), noPFS...)
}

const groupKeywords = "modp1024-modp1536-modp2048-modp3072-modp4096-ecp256-ecp384"

func TestStringRoundTrip(t *testing.T) {
	ike := allIKE(t)
	if len(ike) != 4*5*7 {
		t.Fatalf("%d IKE proposals, want %d", len(ike), 4*5*7)
	}
	back, err := ParseIKE(FormatIKE(ike))
	if err != nil || !reflect.DeepEqual(back, ike) {
		t.Fatalf("ParseIKE(FormatIKE(all)) = %v, %v", back, err)
	}
	esp := allESP(t)
	backESP, err := ParseESP(FormatESP(esp))
	if err != nil || !reflect.DeepEqual(backESP, esp) {
		t.Fatalf("ParseESP(FormatESP(all)) = %v, %v", backESP, err)
	}
}

// TestGroupsImplemented keeps the group keywords and package dh in step.
func TestGroupsImplemented(t *testing.T) {
	for _, p := range allIKE(t) {
		if _, err := dh.ByID(p.Group); err != nil {
			t.Errorf("%v: %v", p, err)
		}
	}
}
