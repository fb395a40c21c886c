package isakmp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// The captures are corelight/zeek-spicy-ipsec test traces (BSD licence): strongSwan-style
// PSK exchanges between 192.168.12.1 and .2 with AES-128/SHA1/MODP1024 and NAT-T.
var goodCaptures = []struct {
	file      string
	exchanges []ExchangeType // of every message, in order
}{
	{"ipsec-ikev1-isakmp-main-mode.pcap", []ExchangeType{2, 2, 2, 2, 2, 2, 32, 32, 32}},
	{"ipsec-ikev1-isakmp-aggressive-mode.pcap", []ExchangeType{4, 4, 4, 32, 32, 32}},
}

func TestCapturesDecode(t *testing.T) {
	for _, c := range goodCaptures {
		t.Run(c.file, func(t *testing.T) {
			msgs := readCapture(t, filepath.Join("testdata", c.file))
			if len(msgs) != len(c.exchanges) {
				t.Fatalf("%d ISAKMP messages, want %d", len(msgs), len(c.exchanges))
			}
			for i, cm := range msgs {
				m, err := Decode(cm.data)
				if err != nil {
					t.Fatalf("frame %d: %v", cm.frame, err)
				}
				if m.Header.Exchange != c.exchanges[i] {
					t.Errorf("frame %d: exchange %v, want %v", cm.frame, m.Header.Exchange, c.exchanges[i])
				}
				if m.Header.Flags&FlagEncryption != 0 {
					if m.Payloads != nil || m.Raw != nil {
						t.Errorf("frame %d: encrypted message decoded %d payloads", cm.frame, len(m.Payloads))
					}
					if got := m.Header.AppendTo(nil); !bytes.Equal(got, cm.data[:HeaderLen]) {
						t.Errorf("frame %d: header re-encodes as %x, want %x", cm.frame, got, cm.data[:HeaderLen])
					}
					continue
				}
				if got := m.Marshal(); !bytes.Equal(got, cm.data) {
					t.Errorf("frame %d: Marshal differs from the wire\n got %x\nwant %x", cm.frame, got, cm.data)
				}
				var raw []byte
				for j, r := range m.Raw {
					if r.Type != m.Payloads[j].Type() {
						t.Errorf("frame %d: Raw[%d].Type %v, payload %v", cm.frame, j, r.Type, m.Payloads[j].Type())
					}
					if body := MarshalBody(m.Payloads[j]); !bytes.Equal(body, r.Body()) {
						t.Errorf("frame %d: MarshalBody(%v) = %x, wire body %x", cm.frame, r.Type, body, r.Body())
					}
					raw = append(raw, r.Bytes...)
				}
				if !bytes.Equal(raw, cm.data[HeaderLen:]) {
					t.Errorf("frame %d: Raw payloads do not add up to the message body", cm.frame)
				}
			}
		})
	}
}

// TestCaptureMainModeSA checks the decoded phase-1 proposal of the main mode capture field
// by field (values from the tshark dissection).
func TestCaptureMainModeSA(t *testing.T) {
	msgs := readCapture(t, filepath.Join("testdata", "ipsec-ikev1-isakmp-main-mode.pcap"))
	m, err := Decode(msgs[0].data)
	if err != nil {
		t.Fatal(err)
	}
	sa, ok := m.Payloads[0].(*SA)
	if !ok {
		t.Fatalf("first payload %T, want *SA", m.Payloads[0])
	}
	if sa.DOI != DOIIPsec || sa.Situation != SituationIdentityOnly || len(sa.Proposals) != 1 {
		t.Fatalf("SA DOI %d situation %d with %d proposals, want 1, 1, 1", sa.DOI, sa.Situation, len(sa.Proposals))
	}
	p := sa.Proposals[0]
	if p.Number != 1 || p.ProtocolID != ProtoISAKMP || len(p.SPI) != 0 || len(p.Transforms) != 1 {
		t.Fatalf("proposal %+v, want #1 ISAKMP without SPI, one transform", p)
	}
	tr := p.Transforms[0]
	if tr.ID != TransformKeyIKE {
		t.Errorf("transform ID %d, want KEY_IKE", tr.ID)
	}
	want := map[uint16]uint64{
		AttrEncryptionAlgorithm: EncAESCBC, AttrKeyLength: 128, AttrHashAlgorithm: HashSHA1,
		AttrGroupDescription: 2, AttrAuthMethod: AuthMethodPSK, AttrLifeType: LifeTypeSeconds,
		AttrLifeDuration: 86400,
	}
	for _, a := range tr.Attributes {
		v, err := a.Uint()
		if err != nil {
			t.Fatal(err)
		}
		if w, ok := want[a.Type]; !ok || v != w {
			t.Errorf("attribute %d = %d, want %d (known %t)", a.Type, v, w, ok)
		}
		if a.Basic != BasicOnly(ProtoISAKMP, a.Type) {
			t.Errorf("attribute %d basic %t, RFC 2409 says %t", a.Type, a.Basic, BasicOnly(ProtoISAKMP, a.Type))
		}
		delete(want, a.Type)
	}
	if len(want) != 0 {
		t.Errorf("attributes missing: %v", want)
	}
}

// TestCapturesTshark compares the decoded structure with tshark's dissection of the same
// frames: the flattened payload type list (SA, P, T, ...), length, exchange, flags, IKE
// attributes, vendor IDs and NAT-D hashes.
func TestCapturesTshark(t *testing.T) {
	tshark := testutil.RequireTool(t, "tshark", "tshark")
	fields := []string{"frame.number", "isakmp.typepayload", "isakmp.length", "isakmp.exchangetype",
		"isakmp.flags", "isakmp.ispi", "isakmp.ike.attr.type", "isakmp.ike.attr.value",
		"isakmp.vid_bytes", "isakmp.ike.nat_hash"}
	for _, c := range goodCaptures {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join("testdata", c.file)
			args := []string{"-r", path, "-n", "-T", "fields", "-E", "separator=|"}
			for _, f := range fields {
				args = append(args, "-e", f)
			}
			out, err := exec.Command(tshark, args...).Output()
			if err != nil {
				t.Fatalf("tshark: %v", err)
			}
			want := make(map[string]string)
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				frame, rest, _ := strings.Cut(line, "|")
				want[frame] = rest
			}
			for _, cm := range readCapture(t, path) {
				m, err := Decode(cm.data)
				if err != nil {
					t.Fatalf("frame %d: %v", cm.frame, err)
				}
				frame := strconv.Itoa(cm.frame)
				if got := dissect(m); got != want[frame] {
					t.Errorf("frame %s:\n got %s\nwant %s", frame, got, want[frame])
				}
			}
		})
	}
}

// dissect renders m like the tshark fields TestCapturesTshark asks for.
func dissect(m *Message) string {
	var types, attrTypes, attrValues, vids, natds []string
	for _, p := range m.Payloads {
		types = append(types, strconv.Itoa(int(p.Type())))
		switch p := p.(type) {
		case *SA:
			for _, prop := range p.Proposals {
				types = append(types, "2")
				for _, tr := range prop.Transforms {
					types = append(types, "3")
					for _, a := range tr.Attributes {
						attrTypes = append(attrTypes, strconv.Itoa(int(a.Type)))
						attrValues = append(attrValues, hex.EncodeToString(a.Value))
					}
				}
			}
		case *VendorID:
			vids = append(vids, hex.EncodeToString(p.Data))
		case *NATD:
			natds = append(natds, hex.EncodeToString(p.Hash))
		}
	}
	h := m.Header
	return strings.Join([]string{strings.Join(types, ","), strconv.Itoa(int(h.Length)),
		strconv.Itoa(int(h.Exchange)), fmt.Sprintf("0x%02x", h.Flags), hex.EncodeToString(h.InitiatorCookie[:]),
		strings.Join(attrTypes, ","), strings.Join(attrValues, ","), strings.Join(vids, ","),
		strings.Join(natds, ",")}, "|")
}

func TestCapturesMalformed(t *testing.T) {
	tests := []struct {
		file   string
		field  string
		value  any
		notify NotifyType
	}{
		// The first vendor ID payload's length is 3 instead of 20.
		{"ipsec-ikev1-payload-bad-length.pcap", "VID payload length", 3, NotifyPayloadMalformed},
		// The header's length field is 0 instead of 168.
		{"ipsec-ikev1-zero-length.pcap", "header length", uint32(0), NotifyUnequalPayloadLengths},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			msgs := readCapture(t, filepath.Join("testdata", tt.file))
			if len(msgs) != 1 {
				t.Fatalf("%d messages, want 1", len(msgs))
			}
			_, err := Decode(msgs[0].data)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Decode error %v, want a *ParseError", err)
			}
			if pe.Field != tt.field || pe.Value != tt.value || pe.Notify() != tt.notify {
				t.Errorf("error %q (notify %v), want field %q value %v notify %v", err, pe.Notify(), tt.field, tt.value, tt.notify)
			}
		})
	}
}
