package loader

import (
	"net/netip"
	"testing"
)

// TestXDPSlotCollisions covers SAs and peers that share a slot of sa_in_slots or peer_slots:
// the second goes to the hash, both pass, and removing either leaves the other working.
func TestXDPSlotCollisions(t *testing.T) {
	l := openLoader(t, Options{})
	prog := l.Programs().XDP
	const spiA, spiB = 0xc0de0005, 0xc0de0005 + 1024 // same slot of sa_in_slots
	ike := make([]byte, 32)

	steps := []struct {
		name  string
		do    func() error
		frame []byte
		ret   uint32
		spi   uint32 // counted SA, 0 = none
	}{
		{name: "first SA in its slot", do: func() error { return l.AddSA(Inbound, spiA) },
			frame: espFrame("203.0.113.9", spiA, 100), ret: xdpPass, spi: spiA},
		{name: "second SA in the hash", do: func() error { return l.AddSA(Inbound, spiB) },
			frame: espFrame("203.0.113.9", spiB, 100), ret: xdpPass, spi: spiB},
		{name: "adding again keeps the slot", do: func() error { return l.AddSA(Inbound, spiA) },
			frame: espFrame("203.0.113.9", spiA, 100), ret: xdpPass, spi: spiA},
		{name: "deleted slot SA drops", do: func() error { return l.DeleteSA(Inbound, spiA) },
			frame: espFrame("203.0.113.9", spiA, 100), ret: xdpDrop},
		{name: "hash SA survives", do: func() error { return nil },
			frame: espFrame("203.0.113.9", spiB, 100), ret: xdpPass, spi: spiB},
		{name: "hash SA re-added stays in the hash", do: func() error { return l.AddSA(Inbound, spiB) },
			frame: espFrame("203.0.113.9", spiB, 100), ret: xdpPass, spi: spiB},
		{name: "deleted hash SA drops", do: func() error { return l.DeleteSA(Inbound, spiB) },
			frame: espFrame("203.0.113.9", spiB, 100), ret: xdpDrop},
		{name: "peers sharing a last byte", do: func() error {
			return l.SetPeers([]netip.Addr{addr("198.51.100.2"), addr("203.0.113.2")})
		}, frame: udpFrame("203.0.113.2", 500, 500, ike), ret: xdpPass},
		{name: "the other one", do: func() error { return nil },
			frame: udpFrame("198.51.100.2", 500, 500, ike), ret: xdpPass},
		{name: "peer moves from hash to slot", do: func() error {
			return l.SetPeers([]netip.Addr{addr("203.0.113.2")})
		}, frame: udpFrame("203.0.113.2", 500, 500, ike), ret: xdpPass},
		{name: "removed peer drops", do: func() error { return nil },
			frame: udpFrame("198.51.100.2", 500, 500, ike), ret: xdpDrop},
		{name: "no peers", do: func() error { return l.SetPeers(nil) },
			frame: udpFrame("203.0.113.2", 500, 500, ike), ret: xdpDrop},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		before, err := l.SACounters(Inbound)
		if err != nil {
			t.Fatal(err)
		}
		if ret, _ := run(t, prog, s.frame); ret != s.ret {
			t.Errorf("%s: verdict %d, want %d", s.name, ret, s.ret)
		}
		after, err := l.SACounters(Inbound)
		if err != nil {
			t.Fatal(err)
		}
		for spi, c := range after {
			want := uint64(0)
			if spi == s.spi {
				want = 1
			}
			if got := c.Packets - before[spi].Packets; got != want {
				t.Errorf("%s: SA %#x counted %d packets, want %d", s.name, spi, got, want)
			}
		}
		if _, ok := after[s.spi]; s.spi != 0 && !ok {
			t.Errorf("%s: SA %#x missing from SACounters", s.name, s.spi)
		}
	}
}
