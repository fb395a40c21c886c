package esp

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// writePcap writes IPv4 packets as a pcap with LINKTYPE_IPV4 (228).
func writePcap(tb testing.TB, path string, pkts [][]byte) {
	tb.Helper()
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, 228)
	for i, p := range pkts {
		b = binary.LittleEndian.AppendUint32(b, uint32(1700000000+i))
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// outerIPv4 wraps an ESP packet in an IPv4 header 192.0.2.1 -> 192.0.2.2, protocol 50.
func outerIPv4(esp []byte) []byte {
	p := make([]byte, 20+len(esp))
	p[0], p[8], p[9] = 0x45, 64, 50
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	copy(p[12:], []byte{192, 0, 2, 1, 192, 0, 2, 2})
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20]))
	copy(p[20:], esp)
	return p
}

// TestTsharkDecrypts is the known-answer test: Wireshark's independent ESP implementation
// must verify the ICV of and decrypt every packet we seal, for every transform.
func TestTsharkDecrypts(t *testing.T) {
	tshark := testutil.RequireTool(t, "tshark", "tshark") // independent ESP decoder: the known-answer oracle
	var pkts [][]byte
	args := []string{"-n", "-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"}
	type want struct {
		spi       uint32
		id, seq   uint16
		payload   int
		suiteName string
	}
	var wants []want
	for i, s := range suites {
		spi := uint32(0xc0de0000 + i)
		out, _ := s.pair(t, spi)
		c := s.config(spi)
		authKey := "0x" + hex.EncodeToString(c.IntegKey)
		if s.integ == 0 {
			authKey = ""
		}
		args = append(args, "-o", fmt.Sprintf(`uat:esp_sa:"IPv4","192.0.2.1","192.0.2.2","%#08x","%s","0x%s","%s","%s"`,
			spi, s.tsharkEnc, hex.EncodeToString(c.EncKey), s.tshAut, authKey))
		for j, n := range []int{0, 56, 1372} {
			inner := icmpEcho([4]byte{10, 10, 1, 1}, [4]byte{10, 20, 0, 1}, uint16(i), uint16(j+1), n)
			pkts = append(pkts, outerIPv4(seal(t, out, inner)))
			wants = append(wants, want{spi, uint16(i), uint16(j + 1), n, s.name})
		}
	}
	pcap := filepath.Join(t.TempDir(), "esp.pcap")
	writePcap(t, pcap, pkts)
	args = append(args, "-r", pcap, "-T", "fields", "-E", "separator=;",
		"-e", "esp.spi", "-e", "esp.icv_good", "-e", "ip.src", "-e", "icmp.ident", "-e", "icmp.seq", "-e", "icmp.checksum.status", "-e", "data.len")
	outb, err := exec.Command(tshark, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, outb)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(outb)), "\n") {
		if strings.HasPrefix(l, "0x") {
			lines = append(lines, l)
		}
	}
	if len(lines) != len(wants) {
		t.Fatalf("tshark printed %d packets, want %d:\n%s", len(lines), len(wants), outb)
	}
	for i, w := range wants {
		dataLen := ""
		if w.payload > 0 {
			dataLen = fmt.Sprint(w.payload)
		}
		exp := fmt.Sprintf("%#08x;1;192.0.2.1,10.10.1.1;%d;%d;1;%s", w.spi, w.id, w.seq, dataLen)
		if lines[i] != exp {
			t.Errorf("%s packet %d: tshark says %q, want %q (spi/icv_good/ip.src/icmp id/seq/checksum/data)", w.suiteName, i, lines[i], exp)
		}
	}
}
