package keymat

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/internal/pcapfile"
)

// The IKEv2 vectors come from one strongSwan ⇄ strongSwan exchange (aes256-sha256-modp2048,
// ESP aes256gcm16): the capture holds the messages, the initiator's charon log (level 4) the
// DH secret and every key it derived.
var (
	v2Capture = filepath.Join("..", "ikev2", "testdata", "strongswan-ikev2-aes256-sha256-modp2048.pcap")
	v2Log     = filepath.Join("..", "ikev2", "testdata", "strongswan-ikev2-left-charon.log")
	v2PSK     = []byte("lab-preshared-key-0123456789")
)

var (
	dumpHead = regexp.MustCompile(`<s2s\|1> (.+) => (\d+) bytes @`)
	dumpLine = regexp.MustCompile(`<s2s\|1>\s+\d+: ((?:[0-9A-F]{2} )+)`)
)

// charonDump returns the first hex dump charon logged under label.
func charonDump(t *testing.T, label string) []byte {
	t.Helper()
	f, err := os.Open(v2Log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := dumpHead.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != label {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		var out []byte
		for len(out) < n && sc.Scan() {
			l := dumpLine.FindStringSubmatch(sc.Text())
			if l == nil {
				break
			}
			b, err := hex.DecodeString(strings.ReplaceAll(l[1], " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b...)
		}
		if len(out) != n {
			t.Fatalf("%s: dump %q has %d of %d bytes", v2Log, label, len(out), n)
		}
		return out
	}
	t.Fatalf("%s: no dump %q", v2Log, label)
	return nil
}

// ikeSAInit returns the two IKE_SA_INIT messages and their nonces, found by walking the
// generic payload headers (this package does not depend on the codec).
func ikeSAInit(t *testing.T) (req, resp, ni, nr []byte) {
	t.Helper()
	msgs, err := pcapfile.ReadIKE(v2Capture)
	if err != nil || len(msgs) < 2 {
		t.Fatalf("%s: %v (%d messages)", v2Capture, err, len(msgs))
	}
	nonce := func(m []byte) []byte {
		next, b := m[16], m[28:]
		for len(b) >= 4 {
			n := int(b[2])<<8 | int(b[3])
			if next == 40 { // Nonce
				return b[4:n]
			}
			next, b = b[0], b[n:]
		}
		t.Fatal("IKE_SA_INIT without a nonce")
		return nil
	}
	req, resp = msgs[0].Data, msgs[1].Data
	return req, resp, nonce(req), nonce(resp)
}

// TestIKEv2AgainstCharon derives every IKEv2 key from the wire and the DH secret and compares
// each with what charon derived: SKEYSEED, the seven SK_*, the initiator's signed octets and
// PSK AUTH, and the first child SA's KEYMAT.
func TestIKEv2AgainstCharon(t *testing.T) {
	h := proposal.HashSHA256
	req, resp, ni, nr := ikeSAInit(t)
	spii, spir := req[:8], resp[8:16]

	skeyseed := SKEYSEED(h, ni, nr, charonDump(t, "shared Diffie Hellman secret"))
	check(t, "SKEYSEED", skeyseed, charonDump(t, "SKEYSEED"))
	k := DeriveIKESA(h, skeyseed, ni, nr, spii, spir, 32, 32) // HMAC-SHA256-128 and AES-256-CBC keys
	for _, c := range []struct {
		label string
		got   []byte
	}{{"Sk_d secret", k.D}, {"Sk_ai secret", k.AI}, {"Sk_ar secret", k.AR}, {"Sk_ei secret", k.EI},
		{"Sk_er secret", k.ER}, {"Sk_pi secret", k.PI}, {"Sk_pr secret", k.PR}} {
		check(t, c.label, c.got, charonDump(t, c.label))
	}

	octets := SignedOctets(h, req, nr, k.PI, charonDump(t, "IDx'"))
	check(t, "initiator's signed octets", octets, charonDump(t, "octets = message + nonce + prf(Sk_px, IDx')"))
	check(t, "initiator's AUTH", PSKAuth(h, v2PSK, octets), charonDump(t, "AUTH = prf(prf(secret, keypad), octets)"))

	// ESP aes256gcm16 without PFS: 36 bytes (key and salt) each way, no integrity key.
	keymat := ChildSAKeymat(h, k.D, nil, ni, nr, 72)
	check(t, "child SA seed", concat(ni, nr), charonDump(t, "seed"))
	check(t, "child SA initiator key", keymat[:36], charonDump(t, "encryption initiator key"))
	check(t, "child SA responder key", keymat[36:], charonDump(t, "encryption responder key"))
}

func check(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x (charon)", what, got, want)
	}
}

// TestPRFPlus checks prf+'s block chaining on its definition, for lengths around block edges.
func TestPRFPlus(t *testing.T) {
	h := proposal.HashSHA1
	key, seed := []byte("key"), []byte("seed")
	t1 := PRF(h, key, seed, []byte{1})
	t2 := PRF(h, key, t1, seed, []byte{2})
	t3 := PRF(h, key, t2, seed, []byte{3})
	all := concat(t1, t2, t3)
	for _, n := range []int{0, 1, 20, 21, 40, 60} {
		if got := PRFPlus(h, key, seed, n); !bytes.Equal(got, all[:n]) {
			t.Errorf("PRFPlus(%d) = %x, want %x", n, got, all[:n])
		}
	}
	if s := (IKESAKeys{D: []byte{1}}).String(); s != "[redacted]" {
		t.Errorf("IKESAKeys prints %q", s)
	}
}
