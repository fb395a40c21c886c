package daemon

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/internal/testutil"
)

// TestKeyLogTshark has tshark decrypt ESP packets with the files KeyLog writes, put
// where Wireshark reads its personal tables ($XDG_CONFIG_HOME/wireshark).
func TestKeyLogTshark(t *testing.T) {
	tshark := testutil.RequireTool(t, "tshark", "tshark")
	home := t.TempDir()
	kl, err := NewKeyLog(filepath.Join(home, "wireshark"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	kl.IKESA([8]byte{1, 2, 3, 4, 5, 6, 7, 8}, seq(0x33, 24))

	var packets [][]byte
	want := make(map[string]string) // SPI -> decrypted UDP payload
	for i, prop := range []string{"3des-sha1-modp1024", "aes256-sha256", "aes128gcm16"} {
		sa := testChildSA(t, prop)
		sa.SPIIn, sa.SPIOut = 0x1000+uint32(i), 0x2000+uint32(i)
		kl.ChildSA(sa)
		out := fmt.Sprintf("outbound %s", prop)
		in := fmt.Sprintf("inbound %s", prop)
		packets = append(packets,
			sealESP(t, sa.Local, sa.Remote, sa.SPIOut, sa.Proposal, sa.EncKeyOut, sa.IntegKeyOut, innerUDP(out)),
			sealESP(t, sa.Remote, sa.Local, sa.SPIIn, sa.Proposal, sa.EncKeyIn, sa.IntegKeyIn, innerUDP(in)))
		want[fmt.Sprintf("0x%08x", sa.SPIOut)] = out
		want[fmt.Sprintf("0x%08x", sa.SPIIn)] = in
	}
	capture := filepath.Join(home, "esp.pcap")
	if err := os.WriteFile(capture, pcap(packets), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(tshark, "-r", capture, "-n",
		"-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE",
		"-T", "fields", "-e", "esp.spi", "-e", "esp.icv_good", "-e", "udp.dstport", "-e", "data.data")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+home, "HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	if strings.Contains(strings.ToLower(stderr.String()), "error") {
		t.Errorf("tshark complained about the key files:\n%s", stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != len(packets) {
		t.Fatalf("tshark printed %d lines for %d packets:\n%s", len(lines), len(packets), stdout.String())
	}
	for _, l := range lines {
		f := strings.Split(l, "\t")
		if len(f) != 4 {
			t.Errorf("tshark line %q: want 4 fields", l)
			continue
		}
		payload, _ := hex.DecodeString(f[3])
		if f[1] != "1" || f[2] != "7777" || string(payload) != want[f[0]] {
			t.Errorf("SPI %s: icv_good %q, udp port %q, payload %q; want 1, 7777, %q", f[0], f[1], f[2], payload, want[f[0]])
		}
	}
}

// innerUDP is an IPv4/UDP packet 10.10.1.1:5000 -> 10.20.0.5:7777 carrying payload.
func innerUDP(payload string) []byte {
	return udpIPv4(netip.MustParseAddr("10.10.1.1"), netip.MustParseAddr("10.20.0.5"), 5000, 7777, []byte(payload))
}

// udpIPv4 is an IPv4/UDP packet without a UDP checksum.
func udpIPv4(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	udp := binary.BigEndian.AppendUint16(nil, sport)
	udp = binary.BigEndian.AppendUint16(udp, dport)
	udp = binary.BigEndian.AppendUint16(udp, uint16(8+len(payload)))
	udp = append(udp, 0, 0) // no checksum
	udp = append(udp, payload...)
	return ipv4(src, dst, 17, udp)
}

func ipv4(src, dst netip.Addr, proto byte, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0], h[8], h[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
	return append(h, payload...)
}

// sealESP wraps inner in tunnel-mode ESP (RFC 4303) inside IPv4, using Go's ciphers
// directly: an oracle independent of the datapath packages. Sequence number 1, fixed IV.
func sealESP(t *testing.T, src, dst netip.Addr, spi uint32, p proposal.ESP, encKey, integKey, inner []byte) []byte {
	t.Helper()
	hdr := binary.BigEndian.AppendUint32(nil, spi)
	hdr = binary.BigEndian.AppendUint32(hdr, 1)
	pad := func(align int) []byte { // RFC 4303 2.4: 1, 2, 3, ... then pad length and next header (4 = IPv4)
		n := (align - (len(inner)+2)%align) % align
		pt := append([]byte{}, inner...)
		for i := 1; i <= n; i++ {
			pt = append(pt, byte(i))
		}
		return append(pt, byte(n), 4)
	}
	var esp []byte
	switch p.Encryption {
	case proposal.EncAESGCM16:
		block, err := aes.NewCipher(encKey[:len(encKey)-4])
		if err != nil {
			t.Fatal(err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			t.Fatal(err)
		}
		iv := seq(0x77, 8)
		nonce := append(append([]byte{}, encKey[len(encKey)-4:]...), iv...)
		esp = aead.Seal(append(slices.Clone(hdr), iv...), nonce, pad(4), hdr)
	default:
		var block cipher.Block
		var err error
		if p.Encryption == proposal.Enc3DES {
			block, err = des.NewTripleDESCipher(encKey)
		} else {
			block, err = aes.NewCipher(encKey)
		}
		if err != nil {
			t.Fatal(err)
		}
		iv := seq(0x55, block.BlockSize())
		pt := pad(block.BlockSize())
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(pt, pt)
		esp = append(append(hdr, iv...), pt...)
		mac := hmac.New(func() hash.Hash { return p.Integrity.New() }, integKey)
		mac.Write(esp)
		esp = append(esp, mac.Sum(nil)[:p.ICVLen()]...)
	}
	return ipv4(src, dst, 50, esp)
}

// pcap is a capture file of raw IPv4 packets (LINKTYPE_RAW).
func pcap(packets [][]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint64(b, 0) // time zone, accuracy
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, 101)
	for i, p := range packets {
		b = binary.LittleEndian.AppendUint32(b, uint32(1700000000+i))
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}
