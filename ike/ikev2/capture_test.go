package ikev2

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/pcapfile"
	"github.com/espgw/espgw/internal/testutil"
)

// strongSwanCapture is an IKEv2 exchange between two strongSwan 5.9.8 charons in netns
// (../shared/lab/strongswan-pair.sh, IKE_VERSION=2, "modern"): IKE_SA_INIT, IKE_AUTH, ESP,
// a child rekey, an IKE SA rekey, and the deletes of a terminate.
var strongSwanCapture = filepath.Join("testdata", "strongswan-ikev2-aes256-sha256-modp2048.pcap")

func captured(tb testing.TB) []pcapfile.Message {
	tb.Helper()
	msgs, err := pcapfile.ReadIKE(strongSwanCapture)
	if err != nil {
		tb.Fatal(err)
	}
	if len(msgs) != 14 {
		tb.Fatalf("%s: %d IKE messages, want 14", strongSwanCapture, len(msgs))
	}
	return msgs
}

// TestCaptureRoundTrip decodes every message and encodes it back to the same bytes.
func TestCaptureRoundTrip(t *testing.T) {
	for _, c := range captured(t) {
		m, err := Decode(c.Data)
		if err != nil {
			t.Fatalf("frame %d: %v", c.Frame, err)
		}
		if got := m.Marshal(); !bytes.Equal(got, c.Data) {
			t.Errorf("frame %d: Marshal differs from the wire:\n got %x\nwant %x", c.Frame, got, c.Data)
		}
	}
}

// TestCaptureMatchesTshark compares what the codec decodes with what tshark's dissector shows
// for each message: exchange type, length, payload and substructure types, notify types.
func TestCaptureMatchesTshark(t *testing.T) {
	tshark := testutil.RequireTool(t, "tshark", "tshark")
	out, err := exec.Command(tshark, "-r", strongSwanCapture, "-Y", "isakmp", "-T", "fields", "-E", "separator=|",
		"-e", "frame.number", "-e", "isakmp.exchangetype", "-e", "isakmp.length", "-e", "isakmp.typepayload",
		"-e", "isakmp.notify.msgtype").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	want := make(map[int]string)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var frame int
		fmt.Sscanf(line, "%d|", &frame)
		want[frame] = line
	}
	for _, c := range captured(t) {
		m, err := Decode(c.Data)
		if err != nil {
			t.Fatalf("frame %d: %v", c.Frame, err)
		}
		if got := describe(c.Frame, m); got != want[c.Frame] {
			t.Errorf("frame %d:\n codec  %s\n tshark %s", c.Frame, got, want[c.Frame])
		}
	}
}

// describe formats m the way the tshark fields above print it.
func describe(frame int, m *Message) string {
	var types, notifies []string
	for _, p := range m.Payloads {
		types = append(types, fmt.Sprint(uint8(p.Type())))
		switch q := p.(type) {
		case *SA:
			for _, pr := range q.Proposals {
				types = append(types, "2")
				for range pr.Transforms {
					types = append(types, "3")
				}
			}
		case *Notify:
			notifies = append(notifies, fmt.Sprint(uint16(q.NotifyType)))
		}
	}
	return fmt.Sprintf("%d|%d|%d|%s|%s", frame, m.Header.Exchange, m.Header.Length,
		strings.Join(types, ","), strings.Join(notifies, ","))
}

// TestCaptureIKESAInit checks the decoded fields of the initiator's IKE_SA_INIT.
func TestCaptureIKESAInit(t *testing.T) {
	m, err := Decode(captured(t)[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	h := m.Header
	if h.Exchange != ExchangeIKESAInit || h.Flags != FlagInitiator || h.MessageID != 0 || h.SPIr != (SPI{}) || h.Version != Version {
		t.Errorf("header %+v, want IKE_SA_INIT request from the initiator, message ID 0, no responder SPI", h)
	}
	sa := Find[*SA](m.Payloads)
	if sa == nil || len(sa.Proposals) != 1 {
		t.Fatalf("SA payload %+v, want one proposal", sa)
	}
	p := sa.Proposals[0]
	want := []Transform{
		{Type: TransformENCR, ID: EncrAESCBC, Attributes: []Attribute{{Type: AttributeKeyLength, TV: true, Value: 256}}},
		{Type: TransformINTEG, ID: IntegSHA256128},
		{Type: TransformPRF, ID: PRFHMACSHA256},
		{Type: TransformDH, ID: 14},
	}
	if p.Number != 1 || p.Protocol != ProtocolIKE || len(p.SPI) != 0 || fmt.Sprint(p.Transforms) != fmt.Sprint(want) {
		t.Errorf("proposal %+v, want #1 IKE without SPI and %+v", p, want)
	}
	if k := p.Transforms[0].KeyLength(); k != 256 {
		t.Errorf("ENCR key length %d, want 256", k)
	}
	if ke := Find[*KE](m.Payloads); ke == nil || ke.Group != 14 || len(ke.Data) != 256 {
		t.Errorf("KE %+v, want group 14 with 256 bytes", ke)
	}
	if n := Find[*Nonce](m.Payloads); n == nil || len(n.Data) != 32 {
		t.Errorf("nonce %+v, want 32 bytes", n)
	}
	if ns := Notifies(m.Payloads, NotifyNATDetectionSourceIP); len(ns) != 1 || len(ns[0].Data) != 20 {
		t.Errorf("NAT_DETECTION_SOURCE_IP %+v, want one with a SHA-1 hash", ns)
	}
	if ns := Notifies(m.Payloads, NotifyFragmentationSupported); len(ns) != 1 {
		t.Errorf("IKEV2_FRAGMENTATION_SUPPORTED %+v, want one", ns)
	}
	auth, err := Decode(captured(t)[2].Data)
	if err != nil {
		t.Fatal(err)
	}
	sk := Find[*Encrypted](auth.Payloads)
	if len(auth.Payloads) != 1 || sk == nil || sk.Inner != PayloadIDi {
		t.Errorf("IKE_AUTH payloads %+v, want one SK whose first inner payload is IDi", auth.Payloads)
	}
}
