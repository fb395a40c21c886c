// Package espbench measures the userspace ESP codec (datapath/esp): go test -bench . ./bench/esp
package espbench

import (
	"fmt"
	"testing"
	"time"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/esp"
)

var transforms = []struct {
	name string
	sa   datapath.SA
}{
	{"aes128gcm16", datapath.SA{Enc: datapath.EncAESGCM16, EncKey: make(datapath.Key, 20)}},
	{"aes256gcm16", datapath.SA{Enc: datapath.EncAESGCM16, EncKey: make(datapath.Key, 36)}},
	{"aes256-sha256", datapath.SA{Enc: datapath.EncAESCBC, EncKey: make(datapath.Key, 32), Integ: datapath.IntegHMACSHA256_128, IntegKey: make(datapath.Key, 32)}},
	{"aes128-sha1", datapath.SA{Enc: datapath.EncAESCBC, EncKey: make(datapath.Key, 16), Integ: datapath.IntegHMACSHA1_96, IntegKey: make(datapath.Key, 20)}},
	{"3des-sha1", datapath.SA{Enc: datapath.Enc3DESCBC, EncKey: make(datapath.Key, 24), Integ: datapath.IntegHMACSHA1_96, IntegKey: make(datapath.Key, 20)}},
}

var sizes = []int{64, 1400}

func newSA(b *testing.B, c datapath.SA, dir esp.Direction) *esp.SA {
	c.SPI, c.ReplayWindow = 0x100, 1024
	for i := range c.EncKey {
		c.EncKey[i] = byte(i)
	}
	sa, err := esp.NewSA(c, dir, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return sa
}

func BenchmarkSeal(b *testing.B) {
	for _, tr := range transforms {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/%d", tr.name, n), func(b *testing.B) {
				out := newSA(b, tr.sa, esp.Outbound)
				buf := make([]byte, esp.Headroom+n+esp.Tailroom)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := out.Seal(buf, esp.Headroom, n, esp.NextHeaderIPv4); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSealBatch seals 46 packets per call, what one 64 KB TSO super-packet read from
// the TUN becomes; bytes are per packet, so MB/s compares with BenchmarkSeal.
func BenchmarkSealBatch(b *testing.B) {
	const batch = 46
	for _, tr := range transforms {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/%d", tr.name, n), func(b *testing.B) {
				out := newSA(b, tr.sa, esp.Outbound)
				seals := make([]esp.Sealing, batch)
				bufs := make([][]byte, batch)
				for i := range bufs {
					bufs[i] = make([]byte, esp.Headroom+n+esp.Tailroom)
				}
				b.SetBytes(int64(n * batch))
				b.ReportAllocs()
				for b.Loop() {
					for i := range seals {
						seals[i] = esp.Sealing{Buf: bufs[i], Off: esp.Headroom, N: n, NextHeader: esp.NextHeaderIPv4}
					}
					out.SealBatch(seals)
					if err := seals[batch-1].Err; err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkOpen opens packets sealed ahead of time in batches (outside the timer), each with
// a fresh sequence number so the replay window accepts it.
func BenchmarkOpen(b *testing.B) {
	const batch = 1024
	for _, tr := range transforms {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/%d", tr.name, n), func(b *testing.B) {
				out, in := newSA(b, tr.sa, esp.Outbound), newSA(b, tr.sa, esp.Inbound)
				bufs := make([][]byte, batch)
				pkts := make([][]byte, batch)
				for i := range bufs {
					bufs[i] = make([]byte, esp.Headroom+n+esp.Tailroom)
				}
				reseal := func() {
					for i := range bufs {
						p, err := out.Seal(bufs[i], esp.Headroom, n, esp.NextHeaderIPv4)
						if err != nil {
							b.Fatal(err)
						}
						pkts[i] = p
					}
				}
				b.SetBytes(int64(n))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if i%batch == 0 {
						b.StopTimer()
						reseal()
						b.StartTimer()
					}
					if _, err := in.Open(pkts[i%batch]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}
