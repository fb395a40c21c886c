package conn

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// espPackets makes n ESP-looking packets (non-zero SPI) of the given sizes, each carrying
// its index so order and content can be checked.
func espPackets(sizes []int) [][]byte {
	pkts := make([][]byte, len(sizes))
	for i, n := range sizes {
		p := make([]byte, n)
		binary.BigEndian.PutUint32(p, 0x1001)
		binary.BigEndian.PutUint32(p[4:], uint32(i+1))
		for j := 8; j < n; j++ {
			p[j] = byte(i + j)
		}
		pkts[i] = p
	}
	return pkts
}

func repeat(n, size int, tail ...int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return append(s, tail...)
}

func TestSendESPBatch(t *testing.T) {
	tests := []struct {
		name  string
		sizes []int
		noGSO bool // as after the kernel refused GSO: sendmmsg of single datagrams
	}{
		{"one", []int{100}, false},
		{"equal sizes", repeat(50, 1400), false},
		{"shorter last", repeat(20, 1400, 600), false},
		{"mixed sizes", []int{1400, 1400, 200, 1400, 900, 900, 900, 1400}, false},
		{"more than one GSO message", repeat(200, 1450), false},
		{"64 KiB of small packets", repeat(300, 200), false},
		{"without GSO", repeat(30, 1400, 100), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := listen(t, ListenOptions{}, addrA, addrB)
			got := make(chan []byte, len(tt.sizes))
			b.SetESPHandler(func(pkt []byte, local, remote netip.AddrPort) {
				got <- append([]byte(nil), pkt...)
			})
			from, to := netip.AddrPortFrom(addrA, NATTPort), netip.AddrPortFrom(addrB, NATTPort)
			pkts := espPackets(tt.sizes)
			if tt.noGSO {
				b.sockets[from].gso.Store(false)
			}
			if err := b.SendESPBatch(pkts, from, to); err != nil {
				t.Fatal(err)
			}
			for i, want := range pkts {
				select {
				case p := <-got:
					if !bytes.Equal(p, want) {
						t.Fatalf("datagram %d: %d bytes seq %d, want %d bytes seq %d", i, len(p), binary.BigEndian.Uint32(p[4:]), len(want), i+1)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("received %d of %d datagrams", i, len(pkts))
				}
			}
		})
	}
}

// TestGROKeepsIKEApart sends an IKE message of the same size between ESP packets of one
// flow: if GRO coalesces them, the receiver must still split and classify each datagram.
func TestGROKeepsIKEApart(t *testing.T) {
	b := listen(t, ListenOptions{}, addrA, addrB)
	esp := make(chan []byte, 64)
	b.SetESPHandler(func(pkt []byte, local, remote netip.AddrPort) { esp <- append([]byte(nil), pkt...) })
	from, to := netip.AddrPortFrom(addrA, NATTPort), netip.AddrPortFrom(addrB, NATTPort)
	pkts := espPackets(repeat(21, 1000))
	ike := pkts[10]
	clear(ike[:NonESPMarkerLen])
	if err := b.SendESPBatch(pkts, from, to); err != nil {
		t.Fatal(err)
	}
	if p := recvIKE(t, b); !bytes.Equal(p.Data, ike[NonESPMarkerLen:]) {
		t.Errorf("IKE message %d bytes, want %d", len(p.Data), len(ike)-NonESPMarkerLen)
	}
	for i := range 20 {
		select {
		case <-esp:
		case <-time.After(5 * time.Second):
			t.Fatalf("received %d of 20 ESP datagrams", i)
		}
	}
}

func groCmsg(seg uint32) []byte {
	oob := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_GRO
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(oob[unix.CmsgLen(0):], seg)
	return oob
}

func TestGROSegmentSize(t *testing.T) {
	other := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&other[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_TOS
	h.SetLen(unix.CmsgLen(4))
	tests := []struct {
		name string
		oob  []byte
		want int
	}{
		{"none", nil, 0},
		{"GRO", groCmsg(1432), 1432},
		{"after another message", append(append([]byte(nil), other...), groCmsg(700)...), 700},
		{"other only", other, 0},
		{"truncated header", groCmsg(1432)[:8], 0},
		{"length past buffer", groCmsg(1432)[:unix.CmsgLen(2)], 0},
	}
	for _, tt := range tests {
		if got := groSegmentSize(tt.oob); got != tt.want {
			t.Errorf("%s: groSegmentSize = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func FuzzGROSegmentSize(f *testing.F) {
	f.Add(groCmsg(1432))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 40))
	f.Fuzz(func(t *testing.T, oob []byte) {
		if n := groSegmentSize(oob); n < 0 || n > 1<<32-1 {
			t.Fatal(fmt.Sprint("segment size out of range: ", n))
		}
	})
}
