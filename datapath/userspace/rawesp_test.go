package userspace

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// rawLoopback opens the raw ESP socket in a fresh namespace; packets it sends to 127.0.0.1
// come back to it through lo.
func rawLoopback(t *testing.T) *rawESP {
	t.Helper()
	ns := testutil.NewNetNS(t, "espus-raw")
	var r *rawESP
	ns.In(t, func() (err error) {
		r, err = listenRawESP()
		return err
	})
	t.Cleanup(func() { r.Close() })
	return r
}

// readAll reads until n packets arrived and returns their IPv4 payloads and the number of
// recvmmsg calls it took.
func readAll(t *testing.T, rd *rawReader, n, bufSize int) (got [][]byte, calls int) {
	t.Helper()
	for len(got) < n {
		bufs := make([]*packetBuf, rawRecvBatch)
		for i := range bufs {
			bufs[i] = &packetBuf{data: make([]byte, bufSize)}
		}
		k, err := rd.read(bufs)
		if err != nil {
			t.Fatalf("read after %d packets: %v", len(got), err)
		}
		calls++
		for i, b := range bufs[:k] {
			off, ok := ipv4PayloadOffset(b.data[:b.n])
			if !ok || rd.truncated(i) {
				t.Fatalf("packet %d: %d bytes, IPv4 header ok %v, truncated %v", len(got), b.n, ok, rd.truncated(i))
			}
			got = append(got, b.data[off:b.n])
		}
	}
	return got, calls
}

func TestRawESPBatch(t *testing.T) {
	r := rawLoopback(t)
	lo := netip.MustParseAddr("127.0.0.1")
	dst := newRawDest(lo, lo)
	tests := []struct {
		name       string
		sizes      []int // 0 stands for a packet the kernel refuses (larger than IPv4 allows)
		writerSize int
		wantFailed int
	}{
		{"one", []int{100}, 8, 0},
		{"batch of equal sizes", []int{1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400}, 8, 0},
		{"more than the writer's vector", []int{60, 1500, 33, 1400, 900, 1400, 1400, 1400, 1400, 28, 1400}, 4, 0},
		{"refused packet in the middle", []int{200, 0, 300, 0, 400}, 8, 2},
		{"refused first packet", []int{0, 500}, 8, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, rd := r.newWriter(tt.writerSize), r.newReader()
			var pkts, want [][]byte
			for i, size := range tt.sizes {
				p := make([]byte, 70000)
				if size > 0 {
					p = p[:size]
					for j := range p {
						p[j] = byte(i*7 + j)
					}
					want = append(want, p)
				}
				pkts = append(pkts, p)
			}
			if failed := w.write(pkts, dst); failed != tt.wantFailed {
				t.Fatalf("write: %d failed, want %d", failed, tt.wantFailed)
			}
			got, calls := readAll(t, rd, len(want), 2048)
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Errorf("packet %d: got %d bytes %x..., want %d bytes %x...", i, len(got[i]), got[i][:min(8, len(got[i]))], len(want[i]), want[i][:8])
				}
			}
			if len(want) > 2 && calls >= len(want) {
				t.Errorf("%d packets took %d recvmmsg calls, want them batched", len(want), calls)
			}
		})
	}
}

func TestRawESPTruncated(t *testing.T) {
	r := rawLoopback(t)
	lo := netip.MustParseAddr("127.0.0.1")
	w, rd := r.newWriter(2), r.newReader()
	if failed := w.write([][]byte{make([]byte, 500), make([]byte, 50)}, newRawDest(lo, lo)); failed != 0 {
		t.Fatalf("write: %d failed", failed)
	}
	bufs := []*packetBuf{{data: make([]byte, 200)}, {data: make([]byte, 200)}}
	var seen []bool
	for len(seen) < 2 {
		n, err := rd.read(bufs[len(seen):])
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			seen = append(seen, rd.truncated(i))
		}
	}
	if !seen[0] || seen[1] {
		t.Errorf("truncated flags %v, want [true false] (520 and 70 bytes into 200-byte buffers)", seen)
	}
}

// TestRawESPNoAllocs checks that a batch round trip allocates nothing per packet.
func TestRawESPNoAllocs(t *testing.T) {
	r := rawLoopback(t)
	lo := netip.MustParseAddr("127.0.0.1")
	dst := newRawDest(lo, lo)
	w, rd := r.newWriter(32), r.newReader()
	pkts := make([][]byte, 32)
	bufs := make([]*packetBuf, rawRecvBatch)
	for i := range pkts {
		pkts[i] = make([]byte, 1400)
	}
	for i := range bufs {
		bufs[i] = &packetBuf{data: make([]byte, 2048)}
	}
	allocs := testing.AllocsPerRun(20, func() {
		if failed := w.write(pkts, dst); failed != 0 {
			t.Fatalf("write: %d failed", failed)
		}
		for got := 0; got < len(pkts); {
			n, err := rd.read(bufs)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch of %d, want 0", allocs, len(pkts))
	}
}

func FuzzIPv4PayloadOffset(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 28, 0, 0, 0, 0, 64, 50, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2, 0, 0, 0x10, 0x01, 0, 0, 0, 1})
	f.Add(append([]byte{0x46}, make([]byte, 23)...))
	f.Add([]byte{0x4f, 0})
	f.Add(append([]byte{0x60}, make([]byte, 39)...))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		off, ok := ipv4PayloadOffset(pkt)
		if !ok {
			return
		}
		if pkt[0]>>4 != 4 || off < 20 || off > len(pkt) || off != int(pkt[0]&0x0f)*4 {
			t.Fatalf("offset %d accepted for a %d-byte packet starting %#02x", off, len(pkt), pkt[0])
		}
	})
}
