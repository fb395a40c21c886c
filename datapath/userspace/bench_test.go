package userspace

import (
	"context"
	"fmt"
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

// BenchmarkInstallSA measures installing and deleting one SA pair (a tunnel set up and torn
// down) next to n installed tunnels: its cost must not grow with n (issue 13).
func BenchmarkInstallSA(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("existing=%d", n), func(b *testing.B) {
			a, _ := memLab(b)
			ctx := context.Background()
			for i := range uint32(n) {
				p, _ := tunnelPairs(gcm128, true, 0x10000+i, 0x20000+i, 1+i, selA)
				if err := a.dp.AddSAPair(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
			p, _ := tunnelPairs(gcm128, true, 0x30000, 0x40000, uint32(n)+1, selA)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := a.dp.AddSAPair(ctx, p); err != nil {
					b.Fatal(err)
				}
				if err := a.dp.DeleteSA(ctx, p.In.Dst, p.In.SPI); err != nil {
					b.Fatal(err)
				}
				if err := a.dp.DeleteSA(ctx, p.Out.Dst, p.Out.SPI); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
