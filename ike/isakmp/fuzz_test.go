package isakmp

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
)

// captureSeeds returns every ISAKMP message of the test captures, malformed ones included.
func captureSeeds(tb testing.TB) [][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "*.pcap"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no captures in testdata: %v", err)
	}
	var seeds [][]byte
	for _, f := range files {
		for _, m := range readCapture(tb, f) {
			seeds = append(seeds, m.data)
		}
	}
	return seeds
}

// requireParseError fails unless err is nil or a *ParseError: callers rely on the type to
// choose the notification they answer with.
func requireParseError(t *testing.T, err error) {
	t.Helper()
	var pe *ParseError
	if err != nil && !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *ParseError", err, err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range captureSeeds(f) {
		f.Add(s)
	}
	for _, tt := range payloadTests {
		m := &Message{Header: Header{Version: Version, Exchange: ExchangeIdentityProtection}, Payloads: []Payload{tt.p}}
		f.Add(m.Marshal())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		requireParseError(t, err)
		if err != nil {
			return
		}
		if m.Header.Flags&FlagEncryption != 0 {
			if !bytes.Equal(m.Header.AppendTo(nil), b[:HeaderLen]) {
				t.Fatalf("header %x re-encodes as %x", b[:HeaderLen], m.Header.AppendTo(nil))
			}
			return
		}
		again := m.Marshal()
		if len(again) != len(b) {
			t.Fatalf("Marshal gives %d bytes from %d", len(again), len(b))
		}
		m2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-decoding the marshalled message: %v", err)
		}
		if m2.Header != m.Header || !reflect.DeepEqual(m2.Payloads, m.Payloads) {
			t.Fatalf("round trip differs:\n%#v\n%#v", m, m2)
		}
	})
}

func FuzzDecodePayloads(f *testing.F) {
	for _, s := range captureSeeds(f) {
		if len(s) > HeaderLen {
			f.Add(s[posNextPayload], s[HeaderLen:])
		}
	}
	for _, tt := range payloadTests {
		f.Add(byte(tt.p.Type()), AppendPayloads(nil, []Payload{tt.p}))
	}
	f.Fuzz(func(t *testing.T, first byte, b []byte) {
		ps, raw, n, err := DecodePayloads(PayloadType(first), b)
		requireParseError(t, err)
		if err != nil {
			return
		}
		var joined []byte
		for _, r := range raw {
			joined = append(joined, r.Bytes...)
		}
		if n > len(b) || !bytes.Equal(joined, b[:n]) || len(raw) != len(ps) {
			t.Fatalf("n %d of %d, raw does not cover b[:n]", n, len(b))
		}
		again := AppendPayloads(nil, ps)
		if len(again) != n {
			t.Fatalf("AppendPayloads gives %d bytes, decoded %d", len(again), n)
		}
		ps2, _, _, err := DecodePayloads(PayloadType(first), again)
		if err != nil || !reflect.DeepEqual(ps2, ps) {
			t.Fatalf("round trip differs (%v)", err)
		}
	})
}

func FuzzAttributes(f *testing.F) {
	for _, tt := range payloadTests {
		if sa, ok := tt.p.(*SA); ok {
			for _, p := range sa.Proposals {
				for _, tr := range p.Transforms {
					f.Add(AppendAttributes(nil, tr.Attributes))
				}
			}
		}
	}
	f.Add(unhex(`0002 0008 0000010000000000 800c 0e10 000c 0000 0006 0009 010203040506070809`))
	f.Fuzz(func(t *testing.T, b []byte) {
		as, err := ParseAttributes(b)
		requireParseError(t, err)
		if err != nil {
			return
		}
		if again := AppendAttributes(nil, as); !bytes.Equal(again, b) {
			t.Fatalf("AppendAttributes gives %x from %x", again, b)
		}
		for _, a := range as {
			v, err := a.Uint()
			requireParseError(t, err)
			if fits := len(a.Value) >= 1 && len(a.Value) <= 8; fits != (err == nil) {
				t.Fatalf("attribute %+v: Uint() = %d, %v", a, v, err)
			}
		}
	})
}
