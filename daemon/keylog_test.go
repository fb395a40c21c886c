package daemon

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/ike/keymat"
	"github.com/espgw/espgw/ike/proposal"
)

func mustESP(t testing.TB, s string) proposal.ESP {
	t.Helper()
	ps, err := proposal.ParseESP(s)
	if err != nil || len(ps) != 1 {
		t.Fatalf("ParseESP(%q) = %v, %v", s, ps, err)
	}
	return ps[0]
}

// seq returns n bytes counting up from start.
func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func testChildSA(t testing.TB, prop string) *ike.ChildSA {
	p := mustESP(t, prop)
	sa := &ike.ChildSA{
		Connection: "mega", Tunnel: "api",
		Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("192.0.2.2"),
		Proposal: p, SPIIn: 0x825eed49, SPIOut: 0x0000c0de,
		EncKeyIn: seq(0x10, p.EncKeyLen()), EncKeyOut: seq(0x40, p.EncKeyLen()),
	}
	if n := p.IntegKeyLen(); n > 0 {
		sa.IntegKeyIn, sa.IntegKeyOut = seq(0xa0, n), seq(0xc0, n)
	}
	return sa
}

func TestESPSALines(t *testing.T) {
	tests := []struct {
		prop    string
		in, out string
	}{{
		prop: "3des-sha1",
		in:   `"IPv4","192.0.2.2","192.0.2.1","0x825eed49","TripleDES-CBC [RFC2451]","0x101112131415161718191a1b1c1d1e1f2021222324252627","HMAC-SHA-1-96 [RFC2404]","0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3"`,
		out:  `"IPv4","192.0.2.1","192.0.2.2","0x0000c0de","TripleDES-CBC [RFC2451]","0x404142434445464748494a4b4c4d4e4f5051525354555657","HMAC-SHA-1-96 [RFC2404]","0xc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3"`,
	}, {
		prop: "aes128-sha256-modp2048",
		in:   `"IPv4","192.0.2.2","192.0.2.1","0x825eed49","AES-CBC [RFC3602]","0x101112131415161718191a1b1c1d1e1f","HMAC-SHA-256-128 [RFC4868]","0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"`,
		out:  `"IPv4","192.0.2.1","192.0.2.2","0x0000c0de","AES-CBC [RFC3602]","0x404142434445464748494a4b4c4d4e4f","HMAC-SHA-256-128 [RFC4868]","0xc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"`,
	}, {
		prop: "aes256-sha384",
		in:   `"IPv4","192.0.2.2","192.0.2.1","0x825eed49","AES-CBC [RFC3602]","0x101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f","HMAC-SHA-384-192 [RFC4868]","0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf"`,
		out:  `"IPv4","192.0.2.1","192.0.2.2","0x0000c0de","AES-CBC [RFC3602]","0x404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f","HMAC-SHA-384-192 [RFC4868]","0xc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef"`,
	}, {
		prop: "aes192-sha512",
		in:   `"IPv4","192.0.2.2","192.0.2.1","0x825eed49","AES-CBC [RFC3602]","0x101112131415161718191a1b1c1d1e1f2021222324252627","HMAC-SHA-512-256 [RFC4868]","0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"`,
		out:  `"IPv4","192.0.2.1","192.0.2.2","0x0000c0de","AES-CBC [RFC3602]","0x404142434445464748494a4b4c4d4e4f5051525354555657","HMAC-SHA-512-256 [RFC4868]","0xc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"`,
	}, {
		// GCM: the key is the AES key followed by the 4-byte salt; no integrity.
		prop: "aes256gcm16-modp2048",
		in:   `"IPv4","192.0.2.2","192.0.2.1","0x825eed49","AES-GCM with 16 octet ICV [RFC4106]","0x101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30313233","NULL",""`,
		out:  `"IPv4","192.0.2.1","192.0.2.2","0x0000c0de","AES-GCM with 16 octet ICV [RFC4106]","0x404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263","NULL",""`,
	}}
	for _, tt := range tests {
		t.Run(tt.prop, func(t *testing.T) {
			in, out := ESPSALines(testChildSA(t, tt.prop))
			if in != tt.in || out != tt.out {
				t.Errorf("ESPSALines =\n%s\n%s\nwant\n%s\n%s", in, out, tt.in, tt.out)
			}
		})
	}
}

func TestIKEv1Line(t *testing.T) {
	got := IKEv1Line([8]byte{0x35, 0x6a, 0x7e, 0x11, 0x11, 0x1a, 0x93, 0xf0}, seq(0, 24))
	if want := "356a7e11111a93f0,000102030405060708090a0b0c0d0e0f1011121314151617"; got != want {
		t.Errorf("IKEv1Line = %s, want %s", got, want)
	}
}

func TestKeyLogFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Keys of an earlier run stay: old captures need them.
	old := `"IPv4","192.0.2.2","192.0.2.1","0x00000101","AES-CBC [RFC3602]","0x00","HMAC-SHA-1-96 [RFC2404]","0x00"`
	if err := os.WriteFile(filepath.Join(dir, ESPSAFile), []byte(old+"\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	kl, err := NewKeyLog(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "save_keys is on: ESP and IKE keys are written to "+dir) {
		t.Errorf("no loud warning at start, log:\n%s", logs.String())
	}
	sa := testChildSA(t, "3des-sha1-modp1024")
	kl.ChildSA(sa)
	kl.ChildSA(sa) // reported twice, written once
	in, out := ESPSALines(sa)
	if got, want := fileLines(t, filepath.Join(dir, ESPSAFile)), []string{old, in, out}; !slices.Equal(got, want) {
		t.Errorf("esp_sa =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The IKE table keeps the newest maxKeyLines entries, and up to keySlack more.
	var want []string
	for i := range maxKeyLines + keySlack + 1 {
		cookie := [8]byte{byte(i >> 8), byte(i)}
		kl.IKESA(cookie, seq(byte(i), 24))
		want = append(want, IKEv1Line(cookie, seq(byte(i), 24)))
	}
	if got := fileLines(t, filepath.Join(dir, IKEv1File)); !slices.Equal(got, want[len(want)-maxKeyLines:]) {
		t.Errorf("ikev1 table has %d lines, first %q; want the last %d", len(got), got[0], maxKeyLines)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if name := e.Name(); name != ESPSAFile && name != IKEv1File {
			t.Errorf("stray file %s (a temporary file not renamed?)", name)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
}

// TestKeyLogAppends checks the esp_sa file against the table it should hold after every
// change: entries appended (the file is rewritten, a new inode, only at its first write and
// when the oldest entries go), duplicates ignored, the oldest dropped in one rewrite once
// keySlack entries are over maxKeyLines, a file deleted behind KeyLog's back written again,
// and a restart continuing the table. No key material goes to the log, even on errors.
func TestKeyLogAppends(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, ESPSAFile)
	var logs bytes.Buffer
	start := func() *KeyLog {
		kl, err := NewKeyLog(dir, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		return kl
	}
	kl := start()
	var want []string // the table the file must hold
	spi := uint32(0)
	// add reports n new child SAs and returns their ESP lines.
	add := func(n int) {
		t.Helper()
		for range n {
			spi++
			sa := testChildSA(t, "aes256gcm16")
			sa.SPIIn, sa.SPIOut = spi<<1, spi<<1|1
			kl.ChildSA(sa)
			in, out := ESPSALines(sa)
			want = append(want, in, out)
		}
	}
	check := func(what string) {
		t.Helper()
		if got := fileLines(t, name); !slices.Equal(got, want) {
			t.Fatalf("%s: esp_sa has %d lines, want %d (first %.40q, want %.40q)", what, len(got), len(want), got[0], want[0])
		}
	}

	add(1)
	check("first SA")
	ino := inode(t, name)
	add(10)
	kl.ChildSA(testChildSA(t, "aes256gcm16")) // SPIs 0x825eed49/0xc0de
	kl.ChildSA(testChildSA(t, "aes256gcm16")) // again: written once
	in, out := ESPSALines(testChildSA(t, "aes256gcm16"))
	want = append(want, in, out)
	add((maxKeyLines+keySlack)/2 - len(want)/2)
	check("full with slack")
	if got := inode(t, name); got != ino {
		t.Errorf("esp_sa rewritten (inode %d, was %d) before its slack was used up", got, ino)
	}
	add(1) // over the slack: the oldest go
	want = want[len(want)-maxKeyLines:]
	check("trimmed")
	if got := inode(t, name); got == ino {
		t.Error("esp_sa not rewritten when its oldest entries went")
	}

	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
	add(1)
	want = want[len(want)-maxKeyLines:]
	check("after the file was deleted") // written again, the newest maxKeyLines entries

	// A restart keeps the entries and appends after its first write, a rewrite.
	kl = start()
	add(1)
	want = want[len(want)-maxKeyLines:]
	check("after a restart")
	ino = inode(t, name)
	add(3)
	check("after a restart, appended")
	if got := inode(t, name); got != ino {
		t.Errorf("esp_sa rewritten (inode %d, was %d) after the restart's first write", got, ino)
	}
	if fi, err := os.Stat(name); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("esp_sa: %v, %v; want mode 0600", fi.Mode().Perm(), err)
	}

	// An unwritable file is logged without its keys.
	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(name, 0o700); err != nil {
		t.Fatal(err)
	}
	add(1)
	if !strings.Contains(logs.String(), "cannot write key file") {
		t.Errorf("no error logged for an unwritable esp_sa, log:\n%s", logs.String())
	}
	for _, l := range want {
		key := strings.Split(l, ",")[5]
		if strings.Contains(logs.String(), strings.Trim(key, `"0x`)) {
			t.Fatalf("key %s in the log:\n%s", key, logs.String())
		}
	}
}

// inode is the inode number of the file name: a rename gives a new one.
func inode(t *testing.T, name string) uint64 {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// fileLines returns the lines of a file.
func fileLines(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestIKEv2Line pins the entry format (tshark checks the names in keylog_v2_tshark_test.go):
// SPIs and keys in hex without 0x, AES-GCM with empty integrity keys and NONE.
func TestIKEv2Line(t *testing.T) {
	spiI, spiR := [8]byte{0x6b, 0x78, 0xd4, 0x26, 0x6c, 0xbe, 0xd7, 0x33}, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	for prop, want := range map[string]string{
		"aes256-sha256-modp2048":       `6b78d4266cbed733,0102030405060708,1011,2021,"AES-CBC-256 [RFC3602]",a0a1,b0b1,"HMAC_SHA2_256_128 [RFC4868]"`,
		"3des-sha1-modp1024":           `6b78d4266cbed733,0102030405060708,1011,2021,"3DES [RFC2451]",a0a1,b0b1,"HMAC_SHA1_96 [RFC2404]"`,
		"aes128gcm16-prfsha256-ecp256": `6b78d4266cbed733,0102030405060708,1011,2021,"AES-GCM-128 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"`,
	} {
		ps, err := proposal.ParseIKEv2(prop)
		if err != nil {
			t.Fatal(err)
		}
		k := keymat.IKESAKeys{EI: seq(0x10, 2), ER: seq(0x20, 2), D: seq(0x30, 2), PI: seq(0x50, 2)}
		if ps[0].Integrity != proposal.HashNone {
			k.AI, k.AR = seq(0xa0, 2), seq(0xb0, 2)
		}
		if got := IKEv2Line(spiI, spiR, ps[0], k); got != want {
			t.Errorf("IKEv2Line(%s) =\n %s\nwant\n %s", prop, got, want)
		}
	}
}

// BenchmarkKeyLog1000 records the child SAs of 1,000 tunnels in a fresh save_keys
// directory, as bench/setup's espgw does while it brings them up.
func BenchmarkKeyLog1000(b *testing.B) {
	sa := testChildSA(b, "aes256gcm16")
	for b.Loop() {
		kl, err := NewKeyLog(b.TempDir(), slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		for i := range uint32(1000) {
			sa.SPIIn, sa.SPIOut = i<<1, i<<1|1
			kl.ChildSA(sa)
		}
	}
}
