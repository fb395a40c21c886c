package isakmp

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

var (
	spi16   = []byte("0123456789abcdef") // a cookie pair, as ISAKMP SPIs are
	spi16x  = hex.EncodeToString(spi16)
	hash20  = bytes.Repeat([]byte{0xa5}, 20)
	hash20x = hex.EncodeToString(hash20)
)

// payloadTests pairs every payload type with its body as RFC 2408/2407/3947 lay it out,
// written by hand.
var payloadTests = []struct {
	name string
	p    Payload
	body string
}{
	{"SA phase 1", &SA{DOI: DOIIPsec, Situation: SituationIdentityOnly, Proposals: []Proposal{{
		Number: 1, ProtocolID: ProtoISAKMP, SPI: []byte{}, Transforms: []Transform{{
			Number: 1, ID: TransformKeyIKE, Attributes: []Attribute{
				BasicAttribute(AttrEncryptionAlgorithm, EncAESCBC),
				BasicAttribute(AttrKeyLength, 128),
				BasicAttribute(AttrLifeType, LifeTypeSeconds),
				LifeAttribute(AttrLifeDuration, 86400),
			}}}}}},
		`00000001 00000001
		 00 00 0024 01 01 00 01
		 00 00 001c 01 01 0000  8001 0007  800e 0080  800b 0001  000c 0004 00015180`},
	{"SA phase 2 ESP and AH", &SA{DOI: DOIIPsec, Situation: SituationIdentityOnly, Proposals: []Proposal{
		{Number: 1, ProtocolID: ProtoESP, SPI: []byte{0xa1, 0xb2, 0xc3, 0xd4}, Transforms: []Transform{
			{Number: 1, ID: ESPTransformAESCBC, Attributes: []Attribute{
				BasicAttribute(IPsecAttrLifeType, LifeTypeSeconds),
				LifeAttribute(IPsecAttrLifeDuration, 1<<32),
				BasicAttribute(IPsecAttrEncapsulationMode, EncapUDPTunnel),
				BasicAttribute(IPsecAttrAuthAlgorithm, AuthHMACSHA1),
				BasicAttribute(IPsecAttrKeyLength, 256),
			}},
			{Number: 2, ID: ESPTransform3DES, Attributes: []Attribute{
				BasicAttribute(IPsecAttrEncapsulationMode, EncapTunnel),
				BasicAttribute(IPsecAttrAuthAlgorithm, AuthHMACSHA1),
			}},
		}},
		{Number: 1, ProtocolID: ProtoAH, SPI: []byte{0x0b, 0xad, 0xf0, 0x0d}, Transforms: []Transform{
			{Number: 1, ID: 3, Attributes: []Attribute{BasicAttribute(IPsecAttrAuthAlgorithm, AuthHMACSHA1)}},
		}},
	}},
		`00000001 00000001
		 02 00 0040 01 03 04 02 a1b2c3d4
		   03 00 0024 01 0c 0000  8001 0001  0002 0008 0000000100000000  8004 0003  8005 0002  8006 0100
		   00 00 0010 02 03 0000  8004 0001  8005 0002
		 00 00 0018 01 02 04 01 0badf00d
		   00 00 000c 01 03 0000  8005 0002`},
	{"SA transform without attributes", &SA{DOI: DOIIPsec, Situation: SituationIdentityOnly, Proposals: []Proposal{{
		Number: 1, ProtocolID: ProtoESP, SPI: []byte{1, 2, 3, 4}, Transforms: []Transform{{Number: 1, ID: ESPTransformNull}}}}},
		`00000001 00000001  00 00 0014 01 03 04 01 01020304  00 00 0008 01 0b 0000`},
	{"KE", &KeyExchange{Data: []byte{0, 0x11, 0x22, 0x33}}, `00112233`},
	{"ID IPv4 address", &Identification{IDType: IDIPv4Addr, ProtocolID: 17, Port: 500, Data: []byte{192, 0, 2, 1}},
		`01 11 01f4 c0000201`},
	{"ID FQDN", &Identification{IDType: IDFQDN, Data: []byte("gw.example")}, `02 00 0000` + hex.EncodeToString([]byte("gw.example"))},
	{"ID IPv6 subnet", &Identification{IDType: IDIPv6AddrSubnet, Data: unhex(
		"20010db8000000000000000000000000 ffffffff000000000000000000000000")},
		`06 00 0000 20010db8000000000000000000000000 ffffffff000000000000000000000000`},
	{"CERT", &Certificate{Encoding: 4, Data: []byte{0x30, 0x82}}, `04 3082`},
	{"CR without authority", &CertificateRequest{Encoding: 4, Data: []byte{}}, `04`},
	{"HASH", &Hash{Data: hash20}, hash20x},
	{"SIG", &Signature{Data: []byte{1, 2, 3}}, `010203`},
	{"NONCE", &Nonce{Data: bytes.Repeat([]byte{7}, 16)}, strings.Repeat("07", 16)},
	{"N INITIAL-CONTACT", &Notification{DOI: DOIIPsec, ProtocolID: ProtoISAKMP, SPI: spi16, NotifyType: NotifyInitialContact, Data: []byte{}},
		`00000001 01 10 6002` + spi16x},
	{"N R-U-THERE", &Notification{DOI: DOIIPsec, ProtocolID: ProtoISAKMP, SPI: spi16, NotifyType: NotifyRUThere, Data: []byte{0, 0, 0, 9}},
		`00000001 01 10 8d28` + spi16x + `00000009`},
	{"N NO-PROPOSAL-CHOSEN", &Notification{DOI: DOIIPsec, ProtocolID: ProtoISAKMP, SPI: []byte{}, NotifyType: NotifyNoProposalChosen, Data: []byte{}},
		`00000001 01 00 000e`},
	{"D ESP", &Delete{DOI: DOIIPsec, ProtocolID: ProtoESP, SPISize: 4, SPIs: [][]byte{{0x11, 0x11, 0x11, 0x11}, {0x22, 0x22, 0x22, 0x22}}},
		`00000001 03 04 0002 11111111 22222222`},
	{"D ISAKMP", &Delete{DOI: DOIIPsec, ProtocolID: ProtoISAKMP, SPISize: 16, SPIs: [][]byte{spi16}},
		`00000001 01 10 0001` + spi16x},
	{"VID", &VendorID{Data: unhex("afcad71368a1f1c96b8696fc77570100")}, `afcad71368a1f1c96b8696fc77570100`},
	{"NAT-D", &NATD{Hash: hash20}, hash20x},
	{"NAT-D draft", &NATD{Hash: hash20, Draft: true}, hash20x},
	{"NAT-OA IPv4", &NATOA{IDType: IDIPv4Addr, Address: []byte{192, 0, 2, 7}}, `01 000000 c0000207`},
	{"NAT-OA draft IPv6", &NATOA{IDType: IDIPv6Addr, Address: unhex("20010db8000000000000000000000001"), Draft: true},
		`05 000000 20010db8000000000000000000000001`},
	{"unknown (IKE fragment)", &Unknown{PayloadType: 132, Data: []byte{0, 1, 2}}, `000102`},
}

// unhex decodes hex written with spaces for readability.
func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestPayloadRoundTrip(t *testing.T) {
	for _, tt := range payloadTests {
		t.Run(tt.name, func(t *testing.T) {
			body := unhex(tt.body)
			if got := MarshalBody(tt.p); !bytes.Equal(got, body) {
				t.Fatalf("MarshalBody\n got %x\nwant %x", got, body)
			}
			wire := append([]byte{0, 0, byte((4 + len(body)) >> 8), byte(4 + len(body))}, body...)
			if got := AppendPayloads(nil, []Payload{tt.p}); !bytes.Equal(got, wire) {
				t.Fatalf("AppendPayloads\n got %x\nwant %x", got, wire)
			}
			ps, raw, n, err := DecodePayloads(tt.p.Type(), wire)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(wire) || len(ps) != 1 || !bytes.Equal(raw[0].Bytes, wire) || raw[0].Type != tt.p.Type() {
				t.Fatalf("DecodePayloads: n %d of %d, %d payloads, raw %+v", n, len(wire), len(ps), raw)
			}
			if !reflect.DeepEqual(ps[0], tt.p) {
				t.Errorf("decoded %#v\nwant %#v", ps[0], tt.p)
			}
		})
	}
}

// TestMessageRoundTrip chains every payload of the table into one message.
func TestMessageRoundTrip(t *testing.T) {
	m := &Message{Header: Header{
		InitiatorCookie: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, ResponderCookie: [8]byte{9, 10, 11, 12, 13, 14, 15, 16},
		Version: Version, Exchange: ExchangeQuickMode, Flags: FlagCommit, MessageID: 0xdeadbeef,
	}}
	for _, tt := range payloadTests {
		m.Payloads = append(m.Payloads, tt.p)
	}
	b := m.Marshal()
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := m.Header
	want.NextPayload, want.Length = m.Payloads[0].Type(), uint32(len(b))
	if got.Header != want {
		t.Errorf("header %+v\nwant %+v", got.Header, want)
	}
	if !reflect.DeepEqual(got.Payloads, m.Payloads) {
		t.Errorf("payloads differ after a round trip")
	}
	off := HeaderLen
	for i, r := range got.Raw {
		if !bytes.Equal(r.Bytes, b[off:off+len(r.Bytes)]) {
			t.Errorf("Raw[%d] is not the wire bytes at offset %d", i, off)
		}
		next := PayloadNone
		if i+1 < len(got.Raw) {
			next = got.Raw[i+1].Type
		}
		if PayloadType(r.Bytes[0]) != next {
			t.Errorf("payload %d next %v, want %v", i, PayloadType(r.Bytes[0]), next)
		}
		off += len(r.Bytes)
	}
}

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name     string
		msg      string
		payloads int
	}{
		{"empty", `0101010101010101 0000000000000000 00 10 05 00 00000000 0000001c`, 0},
		{"encrypted body is not decoded", `0101010101010101 0202020202020202 08 10 05 01 00000001 0000002c
			ffffffffffffffffffffffffffffffff`, 0},
		{"nonzero reserved bytes", `0101010101010101 0000000000000000 15 10 02 00 00000000 00000028
			00 ff 000c 01 ffffff c0000201`, 1},
		{"unknown flag bits kept", `0101010101010101 0000000000000000 0d 10 02 f8 00000000 00000024
			00 00 0008 01020304`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := unhex(tt.msg)
			m, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Payloads) != tt.payloads || len(m.Raw) != tt.payloads {
				t.Errorf("%d payloads, %d raw, want %d", len(m.Payloads), len(m.Raw), tt.payloads)
			}
			if m.Header.Flags&FlagEncryption == 0 && len(m.Marshal()) != len(b) {
				t.Errorf("Marshal gives %d bytes, want %d", len(m.Marshal()), len(b))
			}
		})
	}
}

// TestDecodePayloadsPadding checks that a decrypted body may end in CBC padding.
func TestDecodePayloadsPadding(t *testing.T) {
	b := unhex(`0d 00 0008 01020304  00 00 0008 05060708  00000000 00000007`)
	ps, raw, n, err := DecodePayloads(PayloadHash, b)
	if err != nil {
		t.Fatal(err)
	}
	if n != 16 || len(ps) != 2 || ps[1].Type() != PayloadVendorID || len(raw) != 2 {
		t.Errorf("n %d, %d payloads, want 16 and HASH, VID", n, len(ps))
	}
}

func TestHeader(t *testing.T) {
	h := Header{InitiatorCookie: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, ResponderCookie: [8]byte{8, 7, 6, 5, 4, 3, 2, 1},
		NextPayload: PayloadHash, Version: Version, Exchange: ExchangeInformational, Flags: FlagEncryption,
		MessageID: 0x01020304, Length: 0x0000004c}
	wire := unhex(`0102030405060708 0807060504030201 08 10 05 01 01020304 0000004c`)
	if got := h.AppendTo(nil); !bytes.Equal(got, wire) {
		t.Fatalf("AppendTo\n got %x\nwant %x", got, wire)
	}
	got, err := ParseHeader(wire)
	if err != nil || got != h {
		t.Fatalf("ParseHeader = %+v, %v; want %+v", got, err, h)
	}
}

// TestDecodedSlicesCapped checks that appending to a decoded slice cannot overwrite the
// bytes after it in the shared input buffer.
func TestDecodedSlicesCapped(t *testing.T) {
	const wire = `0b 00 0008 01020304  00 00 0012 00000001 03 04 000e 0a0b0c0d 7788`
	b := unhex(wire)
	ps, raw, _, err := DecodePayloads(PayloadKE, b)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(ps[0].(*KeyExchange).Data, 0xff)
	_ = append(raw[0].Bytes, 0xff)
	_ = append(ps[1].(*Notification).SPI, 0xff, 0xff)
	if !bytes.Equal(b, unhex(wire)) {
		t.Errorf("appending to decoded slices changed the input: %x", b)
	}
}
