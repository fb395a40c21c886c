package pkttest

import (
	"net/netip"
	"testing"
)

func TestMSSAndChecksum(t *testing.T) {
	h := IPv4{Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr("10.2.0.1"), Proto: ProtoTCP}
	tests := []struct {
		name    string
		opts    []byte
		mss     uint16
		present bool
	}{
		{"even", MSS(1460), 1460, true},
		{"odd", append([]byte{1}, MSS(1380)...), 1380, true},
		{"after timestamp", append([]byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0}, MSS(536)...), 536, true},
		{"none", []byte{1, 1, 4, 2}, 0, false},
		{"eol first", append([]byte{0}, MSS(1460)...), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := h.Frame(TCP(1000, 80, SYN, tt.opts, nil))
			mss, ok, err := MSSOf(f)
			if err != nil || ok != tt.present || mss != tt.mss {
				t.Fatalf("MSSOf = %d, %v, %v; want %d, %v, nil", mss, ok, err, tt.mss, tt.present)
			}
			if ok, err := TCPChecksumOK(f); !ok || err != nil {
				t.Fatalf("TCPChecksumOK = %v, %v", ok, err)
			}
			f[len(f)-1] ^= 1
			if ok, _ := TCPChecksumOK(f); ok {
				t.Fatal("checksum still verifies after corrupting the segment")
			}
		})
	}
}

func FuzzMSSOf(f *testing.F) {
	h := IPv4{Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr("10.2.0.1"), Proto: ProtoTCP}
	f.Add(h.Frame(TCP(1, 2, SYN, MSS(1460), nil)))
	f.Add(h.Frame(TCP(1, 2, SYN, []byte{1, 2, 4, 5, 180}, []byte("x"))))
	f.Fuzz(func(t *testing.T, frame []byte) {
		mss, ok, err := MSSOf(frame)
		if err != nil && (ok || mss != 0) {
			t.Fatalf("MSSOf = %d, %v with error %v", mss, ok, err)
		}
		TCPChecksumOK(frame)
	})
}
