package daemon

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"encoding/binary"
	"hash"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/espgw/espgw/ike/keymat"
	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/internal/pcapfile"
	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// The strongSwan ⇄ strongSwan IKEv2 exchange the codec and keymat tests use: IKE SA
// aes256-sha256-modp2048, rekeyed once by CREATE_CHILD_SA; the initiator's charon log
// (level 4) holds the SK_* of both IKE SAs.
var (
	charonV2Capture = filepath.Join("..", "ike", "ikev2", "testdata", "strongswan-ikev2-aes256-sha256-modp2048.pcap")
	charonV2Log     = filepath.Join("..", "ike", "ikev2", "testdata", "strongswan-ikev2-left-charon.log")
)

// ikev2Frame is what tshark showed of one IKEv2 message.
type ikev2Frame struct {
	frame, exchange, ids string // ids: the ID payloads' IPv4 addresses, comma-separated
	decrypted, badICV    bool
}

// tsharkIKEv2 dissects capture with lines as the ikev2_decryption_table.
func tsharkIKEv2(t *testing.T, capture string, lines []string) []ikev2Frame {
	t.Helper()
	testutil.RequireTool(t, "tshark", "tshark")
	var args []string
	for _, l := range lines {
		args = append(args, "-o", "uat:ikev2_decryption_table:"+l)
	}
	args = append(args, "-Y", "isakmp", "-T", "fields", "-E", "occurrence=a", "-E", "separator=/t",
		"-e", "frame.number", "-e", "isakmp.exchangetype", "-e", "isakmp.id.data.ipv4_addr",
		"-e", "isakmp.enc.decrypted", "-e", "_ws.expert.message")
	out, err := testutil.RunTShark(capture, args...)
	if err != nil {
		t.Fatal(err) // an algorithm name Wireshark does not know ends here: "invalid value"
	}
	var frames []ikev2Frame
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 5 {
			t.Fatalf("tshark line %q: want 5 fields", l)
		}
		frames = append(frames, ikev2Frame{frame: f[0], exchange: f[1], ids: f[2], decrypted: f[3] != "",
			badICV: strings.Contains(f[4], "Integrity Checksum Data is incorrect")})
	}
	return frames
}

// TestIKEv2LineTsharkCharon writes the table entries of both IKE SAs of charon's exchange
// with IKEv2Line and has tshark decrypt every encrypted message with them: IKE_AUTH (its
// IDi and IDr dissected), the IKE SA rekey, the old SA's delete and the new SA's exchanges,
// each with a correct integrity checksum.
func TestIKEv2LineTsharkCharon(t *testing.T) {
	msgs, err := pcapfile.ReadIKE(charonV2Capture)
	if err != nil || len(msgs) < 2 {
		t.Fatalf("%s: %v (%d messages)", charonV2Capture, err, len(msgs))
	}
	var spis [][2][8]byte // per IKE SA in order of appearance
	for _, m := range msgs {
		var s [2][8]byte
		copy(s[0][:], m.Data[:8])
		copy(s[1][:], m.Data[8:16])
		switch {
		case len(spis) > 0 && spis[len(spis)-1][0] == s[0] && spis[len(spis)-1][1] == [8]byte{}:
			spis[len(spis)-1] = s // IKE_SA_INIT's response brings the responder SPI
		case len(spis) == 0 || spis[len(spis)-1] != s:
			spis = append(spis, s)
		}
	}
	keys := charonIKEv2Keys(t)
	if len(spis) != 2 || len(keys) != 2 {
		t.Fatalf("%d IKE SAs on the wire, %d in the log; want 2 (one rekey)", len(spis), len(keys))
	}
	ps, err := proposal.ParseIKEv2("aes256-sha256-modp2048")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for i := range spis {
		lines = append(lines, IKEv2Line(spis[i][0], spis[i][1], ps[0], keys[i]))
	}
	frames := tsharkIKEv2(t, charonV2Capture, lines)
	var encrypted int
	for _, f := range frames {
		if f.exchange == "34" { // IKE_SA_INIT is in clear
			continue
		}
		encrypted++
		if !f.decrypted || f.badICV {
			t.Errorf("frame %s (exchange %s): decrypted %v, integrity checksum incorrect %v", f.frame, f.exchange, f.decrypted, f.badICV)
		}
	}
	if encrypted < 6 {
		t.Errorf("tshark saw %d encrypted IKEv2 messages, want at least 6", encrypted)
	}
	if f := frames[2]; f.exchange != "35" || f.ids != "192.0.2.1,192.0.2.2" {
		t.Errorf("frame %s: exchange %s, ID payloads %q; want IKE_AUTH (35) with IDi 192.0.2.1 and IDr 192.0.2.2", f.frame, f.exchange, f.ids)
	}
}

// charonIKEv2Keys returns the SK_e* and SK_a* charon derived, per IKE SA in log order.
func charonIKEv2Keys(t *testing.T) []keymat.IKESAKeys {
	t.Helper()
	dumps := func(label string) [][]byte {
		f, err := os.Open(charonV2Log)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		d, err := strongswan.Dumps(f, label)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	ei, er, ai, ar := dumps("Sk_ei secret"), dumps("Sk_er secret"), dumps("Sk_ai secret"), dumps("Sk_ar secret")
	var keys []keymat.IKESAKeys
	for i := range min(len(ei), len(er), len(ai), len(ar)) {
		keys = append(keys, keymat.IKESAKeys{EI: ei[i], ER: er[i], AI: ai[i], AR: ar[i]})
	}
	return keys
}

// TestIKEv2LineTsharkAlgorithms covers every IKE SA algorithm espgw offers: per proposal an
// IKE_AUTH request and response, sealed here with Go's ciphers (RFC 7296 section 3.14, RFC
// 5282 for AES-GCM), must decrypt with the line IKEv2Line writes, integrity checked.
func TestIKEv2LineTsharkAlgorithms(t *testing.T) {
	props := []string{"3des-sha1-modp1024", "aes128-md5-modp2048", "aes128-sha256-modp2048", "aes192-sha384-modp2048",
		"aes256-sha512-modp2048", "aes128gcm16-prfsha256-ecp256", "aes192gcm16-prfsha384-ecp256", "aes256gcm16-prfsha512-ecp384"}
	var lines []string
	var packets [][]byte
	want := map[string]string{} // frame number -> the ID payload's address
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i, s := range props {
		ps, err := proposal.ParseIKEv2(s)
		if err != nil {
			t.Fatal(err)
		}
		p := ps[0]
		spiI, spiR := [8]byte{1, byte(i)}, [8]byte{2, byte(i)}
		k := keymat.IKESAKeys{EI: seq(0x10, p.KeyLen()), ER: seq(0x40, p.KeyLen())}
		if p.Integrity != proposal.HashNone {
			k.AI, k.AR = seq(0x80, p.Integrity.Size()), seq(0xc0, p.Integrity.Size())
		}
		lines = append(lines, IKEv2Line(spiI, spiR, p, k))
		idI, idR := netip.AddrFrom4([4]byte{10, 0, byte(i), 1}), netip.AddrFrom4([4]byte{10, 0, byte(i), 2})
		packets = append(packets,
			udpIPv4(local, remote, 500, 500, sealIKEv2(t, spiI, spiR, true, p, k.EI, k.AI, idI)),
			udpIPv4(remote, local, 500, 500, sealIKEv2(t, spiI, spiR, false, p, k.ER, k.AR, idR)))
		want[strconv.Itoa(len(packets)-1)], want[strconv.Itoa(len(packets))] = idI.String(), idR.String()
	}
	capture := filepath.Join(t.TempDir(), "ikev2.pcap")
	if err := os.WriteFile(capture, pcap(packets), 0o600); err != nil {
		t.Fatal(err)
	}
	frames := tsharkIKEv2(t, capture, lines)
	if len(frames) != len(packets) {
		t.Fatalf("tshark showed %d IKEv2 messages, want %d", len(frames), len(packets))
	}
	for _, f := range frames {
		n, _ := strconv.Atoi(f.frame)
		if p := props[(n-1)/2]; !f.decrypted || f.badICV || f.ids != want[f.frame] {
			t.Errorf("%s, frame %s: decrypted %v, integrity checksum incorrect %v, ID %q; want %s",
				p, f.frame, f.decrypted, f.badICV, f.ids, want[f.frame])
		}
	}
}

// sealIKEv2 builds an IKE_AUTH message (message ID 1) whose SK payload holds one ID payload
// (IDi from the initiator, IDr from the responder) with id as ID_IPV4_ADDR.
func sealIKEv2(t *testing.T, spiI, spiR [8]byte, initiator bool, p proposal.IKEv2, encKey, integKey []byte, id netip.Addr) []byte {
	t.Helper()
	idType, flags := byte(35), byte(0x08) // IDi, Initiator
	if !initiator {
		idType, flags = 36, 0x20 // IDr, Response
	}
	a := id.As4()
	plain := append([]byte{0, 0, 0, 12, 1, 0, 0, 0}, a[:]...) // last payload, ID_IPV4_ADDR

	var ivLen, icvLen, block int
	var c cipher.Block
	var err error
	switch p.Encryption {
	case proposal.EncAESGCM16:
		c, err = aes.NewCipher(encKey[:len(encKey)-4])
		ivLen, icvLen, block = 8, 16, 1
	case proposal.Enc3DES:
		c, err = des.NewTripleDESCipher(encKey)
		ivLen, block = des.BlockSize, des.BlockSize
	default:
		c, err = aes.NewCipher(encKey)
		ivLen, block = aes.BlockSize, aes.BlockSize
	}
	if err != nil {
		t.Fatal(err)
	}
	if p.Integrity != proposal.HashNone {
		icvLen = proposal.ESP{Encryption: p.Encryption, Integrity: p.Integrity}.ICVLen()
	}
	padLen := (block - (len(plain)+1)%block) % block
	plain = append(append(plain, make([]byte, padLen)...), byte(padLen))

	msg := append(spiI[:], spiR[:]...)
	msg = append(msg, 46, 0x20, 35, flags, 0, 0, 0, 1, 0, 0, 0, 0) // SK, IKEv2, IKE_AUTH, message ID 1
	skLen := 4 + ivLen + len(plain) + icvLen
	msg = append(msg, idType, 0)
	msg = binary.BigEndian.AppendUint16(msg, uint16(skLen))
	binary.BigEndian.PutUint32(msg[24:], uint32(len(msg)+skLen-4))
	iv := seq(0x33, ivLen)
	if p.Encryption == proposal.EncAESGCM16 {
		aead, err := cipher.NewGCM(c)
		if err != nil {
			t.Fatal(err)
		}
		nonce := append(bytes.Clone(encKey[len(encKey)-4:]), iv...)
		aad := bytes.Clone(msg) // the IKE header and the SK payload header
		return aead.Seal(append(msg, iv...), nonce, plain, aad)
	}
	cipher.NewCBCEncrypter(c, iv).CryptBlocks(plain, plain)
	msg = append(append(msg, iv...), plain...)
	mac := hmac.New(func() hash.Hash { return p.Integrity.New() }, integKey)
	mac.Write(msg)
	return append(msg, mac.Sum(nil)[:icvLen]...)
}
