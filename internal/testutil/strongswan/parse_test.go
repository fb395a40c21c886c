package strongswan

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// testdata: one IKEv1 main mode + quick mode (3des-sha1-modp1024) between two charons, their
// level-4 logs, `swanctl --list-sas --pretty` of the left (initiator) side and the capture of
// the exchange plus three pings on the transit link.

func readKeyLog(t testing.TB, name string) KeyLog {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	k, err := ParseKeyLog(f)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseKeyLog(t *testing.T) {
	left, right := readKeyLog(t, "3des-left.log"), readKeyLog(t, "3des-right.log")
	ka, _ := hex.DecodeString("0cb19e9113be8a1450a2284d57272a6af6a4127908be576d")
	qmInitKey, _ := hex.DecodeString("0650f7c71cbe2a6be440eaa393385cc1dcca1fa3aa988085")
	tests := []struct {
		name    string
		log     KeyLog
		inbound uint32
	}{
		{"left (quick-mode initiator)", left, 0xc846a466},
		{"right (quick-mode responder)", right, 0xeb86f37d},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.log.ESP) != 2 || len(tt.log.IKE) != 1 {
				t.Fatalf("%d ESP and %d IKE keys, want 2 and 1", len(tt.log.ESP), len(tt.log.IKE))
			}
			in, ok := tt.log.ESPBySPI(tt.inbound)
			if !ok || !in.Inbound || in.EncAlg != "3DES_CBC" || in.EncKeySize != 192 || in.IntegAlg != "HMAC_SHA1_96" ||
				len(in.EncKey) != 24 || len(in.IntegKey) != 20 {
				t.Errorf("inbound SA %08x: %+v", tt.inbound, in)
			}
			// Traffic from the quick-mode initiator (left, 192.0.2.1) uses the initiator key.
			out, _ := tt.log.ESPBySPI(0xeb86f37d)
			if out.Src != netip.MustParseAddr("192.0.2.1") || !bytes.Equal(out.EncKey, qmInitKey) {
				t.Errorf("SA eb86f37d: src %v, encryption key is not the logged initiator key", out.Src)
			}
			ike := tt.log.IKE[0]
			if hex.EncodeToString(ike.ICookie[:]) != "4efcf24c68f7c22f" || hex.EncodeToString(ike.RCookie[:]) != "f36ffbff99c2fa4c" ||
				!bytes.Equal(ike.EncKey, ka) || ike.IKE != 1 {
				t.Errorf("IKE key: cookies %x/%x, id %d, Ka matches: %v", ike.ICookie, ike.RCookie, ike.IKE, bytes.Equal(ike.EncKey, ka))
			}
		})
	}
	e := left.ESP[0].Entry()
	if e.Encryption != testutil.WSEnc3DESCBC || e.Integrity != testutil.WSIntegSHA1 || e.Protocol != "IPv4" {
		t.Errorf("Wireshark entry %+v", e)
	}
}

func TestParseListSAs(t *testing.T) {
	b, err := os.ReadFile("testdata/3des-list-sas.txt")
	if err != nil {
		t.Fatal(err)
	}
	sas, err := ParseListSAs(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 1 || len(sas[0].Children) != 1 {
		t.Fatalf("%+v, want 1 IKE_SA with 1 CHILD_SA", sas)
	}
	s, c := sas[0], sas[0].Children[0]
	if s.Name != "s2s" || s.Version != 1 || s.State != "ESTABLISHED" || !s.Initiator || s.InitiatorSPI != 0x4efcf24c68f7c22f ||
		s.ResponderSPI != 0xf36ffbff99c2fa4c || s.LocalPort != 4500 || s.RemoteHost != "192.0.2.2" ||
		s.Proposal() != "3DES_CBC/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024" || s.Attrs["nat-remote"] != "yes" {
		t.Errorf("IKE_SA %+v", s)
	}
	if c.Name != "s2s" || c.State != "INSTALLED" || !c.Encap || c.SPIIn != 0xc846a466 || c.SPIOut != 0xeb86f37d ||
		c.PacketsOut != 3 || c.Proposal() != "3DES_CBC/HMAC_SHA1_96/MODP_1024" ||
		strings.Join(c.LocalTS, ",") != "10.10.1.1/32" || strings.Join(c.RemoteTS, ",") != "10.20.0.0/24" {
		t.Errorf("CHILD_SA %+v", c)
	}

	for _, bad := range []string{"list-sa event {\n s2s {\n", "}\n", "list-sa event {\n s2s {\n uniqueid = x\n }\n}\n"} {
		if _, err := ParseListSAs(bad); err == nil {
			t.Errorf("ParseListSAs(%q): no error", bad)
		}
	}
}

// TestKeyLogDecryptsRecordedCapture runs the tshark oracle on the recorded exchange: keys from
// either side's log decrypt every ESP packet with a good ICV.
func TestKeyLogDecryptsRecordedCapture(t *testing.T) {
	for _, side := range []string{"3des-left.log", "3des-right.log"} {
		rows := testutil.ESPRows(t, "testdata/3des.pcap", readKeyLog(t, side).TShark())
		if len(rows) != 6 {
			t.Fatalf("%s: %d ESP packets, want 6", side, len(rows))
		}
		for _, r := range rows {
			if !r.ICVGood || !r.Decrypted || r.InnerProto != 1 || !r.UDPEncap {
				t.Errorf("%s: %+v", side, r)
			}
		}
	}
}

func FuzzParseListSAs(f *testing.F) {
	b, err := os.ReadFile("testdata/3des-list-sas.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add("list-sa event {\n a {\n l = [\n x\n ]\n }\n}\n")
	f.Fuzz(func(t *testing.T, s string) {
		sas, err := ParseListSAs(s)
		if err != nil && sas != nil {
			t.Errorf("error %v with %d SAs", err, len(sas))
		}
	})
}

func FuzzParseKeyLog(f *testing.F) {
	b, err := os.ReadFile("testdata/3des-left.log")
	if err != nil {
		f.Fatal(err)
	}
	// The key-bearing lines only: a 27 KB seed makes the fuzzer spend its time minimizing.
	var excerpt []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "[CHD]") || strings.Contains(l, "Ka") || strings.Contains(l, "natd_chunk") || strings.Contains(l, "QUICK_MODE request") {
			excerpt = append(excerpt, l)
		}
	}
	f.Add(strings.Join(excerpt, "\n"))
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeyLog(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, e := range k.ESP {
			if len(e.EncKey) == 0 {
				t.Errorf("ESP SA %08x without encryption key", e.SPI)
			}
		}
	})
}

// TestTail: the failure log tail of a recorded charon log keeps the negotiation and its last
// line, and leaves out the chunk dumps (key material) and the vici client chatter.
func TestTail(t *testing.T) {
	b, err := os.ReadFile("testdata/3des-right.log")
	if err != nil {
		t.Fatal(err)
	}
	log := strings.TrimRight(string(b), "\n")
	lines := strings.Split(log, "\n")
	for _, n := range []int{5, 80, len(lines)} {
		got := strings.Split(tail(log, n), "\n")
		if len(got) > n {
			t.Errorf("tail(%d): %d lines", n, len(got))
		}
		if last := lines[len(lines)-1]; got[len(got)-1] != last {
			t.Errorf("tail(%d) ends with %q, want the log's last line %q", n, got[len(got)-1], last)
		}
		for _, l := range got {
			if strings.Contains(l, viciClient) || hexDumpLine.MatchString(l) {
				t.Errorf("tail(%d) kept %q", n, l)
			}
		}
	}
	all := tail(log, len(lines))
	for _, want := range []string{"[IKE]", "[CHD]", "[CFG] loaded IKE shared key"} {
		if !strings.Contains(all, want) {
			t.Errorf("tail of the whole log lost every %q line", want)
		}
	}
	if n := strings.Count(log, viciClient); n == 0 {
		t.Fatalf("testdata has no %q line: the filter is not exercised", viciClient)
	}
}
