package ikev2

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// payloadTests is one payload of every kind, as the engine would build it.
var payloadTests = []struct {
	name string
	p    Payload
}{
	{"SA IKE", &SA{Proposals: []Proposal{
		{Number: 1, Protocol: ProtocolIKE, Transforms: []Transform{
			{Type: TransformENCR, ID: EncrAESGCM16, Attributes: []Attribute{{Type: AttributeKeyLength, TV: true, Value: 128}}},
			{Type: TransformPRF, ID: PRFHMACSHA256}, {Type: TransformDH, ID: 19}}},
		{Number: 2, Protocol: ProtocolIKE, Transforms: []Transform{
			{Type: TransformENCR, ID: EncrAESCBC, Attributes: []Attribute{{Type: AttributeKeyLength, TV: true, Value: 256}}},
			{Type: TransformINTEG, ID: IntegSHA256128}, {Type: TransformPRF, ID: PRFHMACSHA256}, {Type: TransformDH, ID: 14}}}}}},
	{"SA ESP with SPI and TLV attribute", &SA{Proposals: []Proposal{{Number: 1, Protocol: ProtocolESP, SPI: []byte{1, 2, 3, 4},
		Transforms: []Transform{{Type: TransformENCR, ID: Encr3DES, Attributes: []Attribute{{Type: 99, Data: []byte{7, 7}}}},
			{Type: TransformINTEG, ID: IntegSHA1_96}, {Type: TransformESN, ID: ESNNone}}}}}},
	{"KE", &KE{Group: 14, Data: bytes.Repeat([]byte{0xab}, 256)}},
	{"IDi FQDN", &ID{IDType: IDFQDN, Data: []byte("gw.example.net")}},
	{"IDr IPv4", &ID{Responder: true, IDType: IDIPv4Addr, Data: []byte{192, 0, 2, 2}}},
	{"CERTREQ", &Cert{Request: true, Encoding: 4, Data: []byte{1, 2}}},
	{"CERT", &Cert{Encoding: 4, Data: []byte{3}}},
	{"AUTH PSK", &Auth{Method: AuthSharedKeyMIC, Data: bytes.Repeat([]byte{1}, 32)}},
	{"Nonce", &Nonce{Data: bytes.Repeat([]byte{2}, 32)}},
	{"Notify error", &Notify{NotifyType: NotifyNoProposalChosen}},
	{"Notify REKEY_SA", &Notify{Protocol: ProtocolESP, SPI: []byte{9, 9, 9, 9}, NotifyType: NotifyRekeySA}},
	{"Delete IKE", &Delete{Protocol: ProtocolIKE}},
	{"Delete ESP", &Delete{Protocol: ProtocolESP, SPISize: 4, SPIs: [][]byte{{1, 2, 3, 4}, {5, 6, 7, 8}}}},
	{"Vendor ID", &VendorID{Data: []byte("espgw")}},
	{"TSi", &TrafficSelectors{Selectors: []TrafficSelector{{Start: netip.MustParseAddr("10.10.1.1"),
		End: netip.MustParseAddr("10.10.1.1"), EndPort: 65535}}}},
	{"TSr two", &TrafficSelectors{Responder: true, Selectors: []TrafficSelector{
		{Protocol: 6, StartPort: 443, EndPort: 443, Start: netip.MustParseAddr("10.20.0.0"), End: netip.MustParseAddr("10.20.0.255")},
		{Start: netip.MustParseAddr("2001:db8::"), End: netip.MustParseAddr("2001:db8::ffff"), EndPort: 65535}}}},
	{"CP", &Configuration{CFGType: 1, Attributes: []ConfigAttribute{{Type: 1}, {Type: 3, Value: []byte{10, 0, 0, 1}}}}},
	{"EAP", &EAP{Data: []byte{1, 2, 0, 4}}},
	{"Unknown", &Unknown{PayloadType: 200, Body: []byte{1}}},
	{"SK", &Encrypted{Inner: PayloadIDi, Data: bytes.Repeat([]byte{5}, 48)}},
	{"SKF", &EncryptedFragment{Inner: PayloadIDi, Number: 1, Total: 3, Encrypted: []byte{1, 2, 3}}},
}

func TestPayloadRoundTrip(t *testing.T) {
	for _, tt := range payloadTests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Message{Header: Header{Version: Version, Exchange: ExchangeIKEAuth, MessageID: 1}, Payloads: []Payload{tt.p}}
			b := m.Marshal()
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(Marshal): %v\n%x", err, b)
			}
			if !reflect.DeepEqual(got.Payloads, m.Payloads) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got.Payloads[0], tt.p)
			}
			if got.Header.NextPayload != tt.p.Type() || int(got.Header.Length) != len(b) {
				t.Errorf("header next %v length %d, want %v and %d", got.Header.NextPayload, got.Header.Length, tt.p.Type(), len(b))
			}
		})
	}
}

// TestChain checks Next Payload chaining across several payloads and into SK.
func TestChain(t *testing.T) {
	ps := []Payload{payloadTests[0].p, &KE{Group: 19, Data: make([]byte, 64)}, &Nonce{Data: make([]byte, 32)},
		&Notify{NotifyType: NotifyNATDetectionSourceIP, Data: make([]byte, 20)}}
	b := AppendPayloads(nil, ps)
	got, err := DecodePayloads(PayloadSA, b)
	if err != nil || !reflect.DeepEqual(got, ps) {
		t.Fatalf("DecodePayloads = %v, %v; want %v", got, err, ps)
	}
	inner := AppendPayloads(nil, []Payload{&ID{IDType: IDKeyID, Data: []byte("k")}, &Auth{Method: AuthSharedKeyMIC, Data: []byte{1}}})
	outer := AppendPayloads(nil, []Payload{&Notify{NotifyType: NotifyCookie, Data: []byte{1}}, &Encrypted{Inner: PayloadIDi, Data: inner}})
	got, err = DecodePayloads(PayloadNotify, outer)
	if err != nil || len(got) != 2 {
		t.Fatalf("DecodePayloads(outer) = %v, %v", got, err)
	}
	sk := got[1].(*Encrypted)
	in, err := DecodePayloads(sk.Inner, sk.Data)
	if err != nil || len(in) != 2 || in[0].Type() != PayloadIDi || in[1].Type() != PayloadAuth {
		t.Errorf("inner payloads %v, %v; want IDi, AUTH", in, err)
	}
}

// TestMalformed feeds broken messages: each fails with a *ParseError naming the field and
// asking for the right notification, and never panics.
func TestMalformed(t *testing.T) {
	valid := (&Message{Header: Header{Version: Version, Exchange: ExchangeIKESAInit}, Payloads: []Payload{payloadTests[0].p}}).Marshal()
	set := func(off int, v ...byte) []byte {
		b := bytes.Clone(valid)
		copy(b[off:], v)
		return b
	}
	const p0 = HeaderLen // first payload's generic header
	tests := []struct {
		name   string
		b      []byte
		field  string
		notify NotifyType
	}{
		{"short header", valid[:27], "message size", NotifyInvalidSyntax},
		{"IKEv1 version", set(posVersion, 0x10), "major version", NotifyInvalidMajorVersion},
		{"length too big", set(posLength, 0, 0, 1, 0), "header length", NotifyInvalidSyntax},
		{"truncated", append(bytes.Clone(valid[:len(valid)-1]), 0)[:len(valid)-1], "header length", NotifyInvalidSyntax},
		{"payload length 3", set(p0+2, 0, 3), "SA payload length", NotifyInvalidSyntax},
		{"payload length past end", set(p0+2, 0xff, 0xff), "SA payload length", NotifyInvalidSyntax},
		{"proposal more value", set(p0+4, 1), "proposal last/more", NotifyInvalidSyntax},
		{"transform count", set(p0+4+7, 9), "number of transforms", NotifyInvalidSyntax},
		{"transform more value", set(p0+4+8, 2), "transform last/more", NotifyInvalidSyntax},
		{"unknown critical", append(set(p0, 201), 0x00, 0x80, 0, 4), "critical payload type", NotifyUnsupportedCriticalPayload},
		{"bytes after last", append(bytes.Clone(valid), 0, 0), "header length", NotifyInvalidSyntax},
	}
	// Fix up the header length for the cases that append.
	for i := range tests {
		if strings.HasPrefix(tests[i].name, "unknown") {
			b := tests[i].b
			b[posLength+3] = byte(len(b))
			b[posLength+2] = byte(len(b) >> 8)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.b)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Decode = %v, want a *ParseError", err)
			}
			if pe.Field != tt.field || pe.Notify() != tt.notify {
				t.Errorf("error %q (field %q, notify %v), want field %q and %v", err, pe.Field, pe.Notify(), tt.field, tt.notify)
			}
		})
	}
}

func TestMalformedBodies(t *testing.T) {
	tests := []struct {
		typ   PayloadType
		body  []byte
		field string
	}{
		{PayloadKE, []byte{0, 14}, "KE payload body"},
		{PayloadNonce, make([]byte, 15), "nonce length"},
		{PayloadNonce, make([]byte, 257), "nonce length"},
		{PayloadNotify, []byte{3, 8, 0, 11, 1, 2, 3}, "Notify SPI size"},
		{PayloadDelete, []byte{3, 4, 0xff, 0xff, 1, 2, 3, 4}, "Delete SPIs"},
		{PayloadDelete, []byte{1, 0, 0, 1}, "Delete SPIs"},
		{PayloadTSi, []byte{1, 0, 0, 0, 9, 0, 0, 16}, "traffic selector type"},
		{PayloadTSi, []byte{1, 0, 0, 0, 7, 0, 0, 40, 0, 0, 0, 0}, "traffic selector length"},
		{PayloadTSr, []byte{2, 0, 0, 0, 7, 0, 0, 16, 0, 0, 255, 255, 10, 0, 0, 0, 10, 0, 0, 255}, "number of traffic selectors"},
		{PayloadConfiguration, []byte{1, 0, 0, 0, 0, 1, 0, 9}, "configuration attribute length"},
		{PayloadEncryptedFragment, []byte{0, 2, 0, 1}, "fragment number"},
		{PayloadSA, []byte{0, 0, 0, 8, 1, 1, 0, 1}, "number of transforms"},
		{PayloadSA, []byte{0, 0, 0, 16, 1, 1, 0, 1, 0, 0, 0, 8, 1, 0, 0, 12, 1}, "bytes after the last proposal"},
	}
	for _, tt := range tests {
		b := AppendPayloads(nil, []Payload{&Unknown{PayloadType: tt.typ, Body: tt.body}})
		_, err := DecodePayloads(tt.typ, b)
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Field != tt.field {
			t.Errorf("%v body %x: error %v, want a ParseError for %q", tt.typ, tt.body, err, tt.field)
		}
	}
}

func TestNames(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{ExchangeIKESAInit.String(), "IKE_SA_INIT"},
		{ExchangeType(99).String(), "99"},
		{NotifyAuthenticationFailed.String(), "AUTHENTICATION_FAILED"},
		{NotifyTSUnacceptable.String(), "TS_UNACCEPTABLE"},
		{PayloadEncrypted.String(), "SK"},
		{IDKeyID.String(), "ID_KEY_ID"},
	} {
		if tt.got != tt.want {
			t.Errorf("name %q, want %q", tt.got, tt.want)
		}
	}
	if !NotifyNoProposalChosen.IsError() || NotifyInitialContact.IsError() {
		t.Error("IsError: NO_PROPOSAL_CHOSEN is an error, INITIAL_CONTACT a status")
	}
}
