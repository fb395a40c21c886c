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
