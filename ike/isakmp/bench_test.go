package isakmp

import (
	"path/filepath"
	"testing"
)

func BenchmarkDecode(b *testing.B) {
	msgs := readCapture(b, filepath.Join("testdata", "ipsec-ikev1-isakmp-main-mode.pcap"))
	for _, bm := range []struct {
		name  string
		frame int
	}{
		{"MM1-SA", 1},  // SA with one proposal and four vendor IDs
		{"MM3-KE", 3},  // KE, nonce, vendor IDs, NAT-D
		{"MM5-enc", 5}, // encrypted: header only
	} {
		msg := msgs[bm.frame-1].data
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := Decode(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMarshal(b *testing.B) {
	msgs := readCapture(b, filepath.Join("testdata", "ipsec-ikev1-isakmp-main-mode.pcap"))
	m, err := Decode(msgs[0].data)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(msgs[0].data)))
	for b.Loop() {
		m.Marshal()
	}
}
