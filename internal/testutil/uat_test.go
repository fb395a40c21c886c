package testutil

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseESPSALine(t *testing.T) {
	tests := []struct {
		name, line string
		want       ESPSAEntry
		err        string
	}{
		{"3des-sha1",
			`"IPv4","192.0.2.2","192.0.2.1","0x825eed49","TripleDES-CBC [RFC2451]","0x0102","HMAC-SHA-1-96 [RFC2404]","0x0a0b"`,
			ESPSAEntry{"IPv4", "192.0.2.2", "192.0.2.1", 0x825eed49, WSEnc3DESCBC, []byte{1, 2}, WSIntegSHA1, []byte{10, 11}}, ""},
		{"gcm without auth key",
			`"IPv4","*","192.0.2.1","0x00000001","AES-GCM with 16 octet ICV [RFC4106]","0xff","NULL",""`,
			ESPSAEntry{"IPv4", "*", "192.0.2.1", 1, WSEncAESGCM16, []byte{0xff}, WSIntegNull, nil}, ""},
		{"too few fields", `"IPv4","a","b","0x1"`, ESPSAEntry{}, "4 fields, want 8"},
		{"spi too long", `"IPv4","a","b","0x123456789","NULL","","NULL",""`, ESPSAEntry{}, "field spi"},
		{"bad key", `"IPv4","a","b","0x1","NULL","0xzz","NULL",""`, ESPSAEntry{}, "encryption key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseESPSALine(tt.line)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want it to mention %q", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
			if again, err := ParseESPSALine(got.Line()); err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("round trip via %s: %+v, %v", got.Line(), again, err)
			}
		})
	}
}

func TestParseIKEv1Line(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
	}{
		{"0011223344556677,000102030405060708090a0b0c0d0e0f1011121314151617", true},
		{`"0011223344556677","00010203"`, true},
		{"00112233445566,00", false}, // 7-byte cookie
		{"0011223344556677,", false},
		{"0011223344556677", false},
	}
	for _, tt := range tests {
		k, err := ParseIKEv1Line(tt.line)
		if (err == nil) != tt.ok {
			t.Errorf("%q: err %v, want ok=%v", tt.line, err, tt.ok)
			continue
		}
		if tt.ok && (k.ICookie != [8]byte{0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77} || !strings.HasPrefix(k.Line(), "0011223344556677,0001")) {
			t.Errorf("%q: parsed %x / line %s", tt.line, k.ICookie, k.Line())
		}
	}
}

func TestReadKeyDir(t *testing.T) {
	dir := t.TempDir()
	esp := "# written by espgw\n" +
		`"IPv4","192.0.2.1","192.0.2.2","0x00000100","AES-CBC [RFC3602]","0x00","HMAC-SHA-256-128 [RFC4868]","0x01"` + "\n\n" +
		`"IPv4","192.0.2.2","192.0.2.1","0x00000200","AES-CBC [RFC3602]","0x02","HMAC-SHA-256-128 [RFC4868]","0x03"` + "\n"
	if err := os.WriteFile(filepath.Join(dir, ESPSAFile), []byte(esp), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := ReadKeyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.ESP) != 2 || k.ESP[1].SPI != 0x200 || len(k.IKEv1) != 0 {
		t.Fatalf("keys %+v, want 2 ESP SAs (second SPI 0x200) and no IKEv1 key", k)
	}
	opts := k.Options()
	if len(opts) != 8 || opts[5] != "uat:esp_sa:"+k.ESP[0].Line() {
		t.Errorf("options %q", opts)
	}
	if err := os.WriteFile(filepath.Join(dir, IKEv1TableFile), []byte("nothex,00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyDir(dir); err == nil || !strings.Contains(err.Error(), IKEv1TableFile+":1:") {
		t.Errorf("bad ikev1 table: err %v, want file:line", err)
	}
}
