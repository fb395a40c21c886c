package ikev2

import (
	"errors"
	"reflect"
	"testing"
)

// requireParseError fails unless err is nil or a *ParseError: the engine relies on the type
// to choose the notification it answers with.
func requireParseError(t *testing.T, err error) {
	t.Helper()
	var pe *ParseError
	if err != nil && !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *ParseError", err, err)
	}
}

func seeds(f *testing.F) {
	for _, c := range captured(f) {
		f.Add(c.Data)
	}
	for _, tt := range payloadTests {
		f.Add((&Message{Header: Header{Version: Version, Exchange: ExchangeIKEAuth}, Payloads: []Payload{tt.p}}).Marshal())
	}
}

// FuzzDecode: whatever decodes, encodes to bytes that decode to the same message.
func FuzzDecode(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		requireParseError(t, err)
		if err != nil {
			return
		}
		again, err := Decode(m.Marshal())
		if err != nil {
			t.Fatalf("Decode(Marshal(m)): %v", err)
		}
		m.Header.Length, again.Header.Length = 0, 0 // Marshal drops reserved bits, so sizes may differ
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip changed the message:\n got %#v\nwant %#v", again, m)
		}
	})
}

// FuzzDecodePayloads covers the inner payloads of a decrypted SK payload.
func FuzzDecodePayloads(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 1 {
			return
		}
		ps, err := DecodePayloads(PayloadType(b[0]), b[1:])
		requireParseError(t, err)
		if err != nil {
			return
		}
		again, err := DecodePayloads(PayloadType(b[0]), AppendPayloads(nil, ps))
		if err != nil || !reflect.DeepEqual(again, ps) {
			t.Fatalf("round trip: %v\n got %#v\nwant %#v", err, again, ps)
		}
	})
}
