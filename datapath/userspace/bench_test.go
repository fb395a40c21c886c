package userspace

import (
	"testing"

	"github.com/espgw/espgw/datapath"
)

// BenchmarkTunnelTCP measures TCP throughput through two userspace datapaths over a veth
// (A's TUN → seal → veth → open → B's TUN), 16 MiB per iteration.
func BenchmarkTunnelTCP(b *testing.B) {
	for _, tt := range []struct {
		name string
		udp  bool
		tr   transform
	}{
		{"udp/aes128gcm16", true, transform{"aes128gcm16", datapath.EncAESGCM16, 20, datapath.IntegNone, 0}},
		{"udp/aes256-sha256", true, transform{"aes256-sha256", datapath.EncAESCBC, 32, datapath.IntegHMACSHA256_128, 32}},
		{"raw/aes128gcm16", false, transform{"aes128gcm16", datapath.EncAESGCM16, 20, datapath.IntegNone, 0}},
		{"udp/3des-sha1", true, transform{"3des-sha1", datapath.Enc3DESCBC, 24, datapath.IntegHMACSHA1_96, 20}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			a, gb := lab(b)
			install(b, a, gb, tt.tr, tt.udp)
			const size = 16 << 20
			b.SetBytes(size)
			b.ResetTimer()
			for range b.N {
				tcpTransfer(b, a, gb, size)
			}
		})
	}
}

// BenchmarkInMemoryTunnel measures the datapath's own cost, without kernel or sockets: 1400-
// byte UDP packets from A's channel TUN through seal, a bindtest pair and open to B's.
func BenchmarkInMemoryTunnel(b *testing.B) {
	for _, tr := range []transform{gcm128, aes256SHA2} {
		b.Run(tr.name, func(b *testing.B) {
			a, gb := memLab(b)
			memTunnel(b, a, gb, tr, 0x1001, 0x2001, 1, selA)
			a.bind.SetFilter(nil) // no wire log
			pkt := udpPacket(hostA, hostB, make([]byte, 1400-28))
			b.SetBytes(int64(len(pkt)))
			b.ResetTimer()
			go func() {
				for range b.N {
					a.tun.Send(pkt)
				}
			}()
			for range b.N {
				recvPacket(b, gb)
			}
		})
	}
}
