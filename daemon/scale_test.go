package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/datapath/datapathtest"
)

// manyTunnelsYAML is one connection with n tunnels (10.10.x.y/32 ⇄ 10.20.x.y/32), from the
// side of local, with metrics on metricsAddr if not "".
func manyTunnelsYAML(local, remote string, n int, metricsAddr string) string {
	var b strings.Builder
	if metricsAddr != "" {
		fmt.Fprintf(&b, "metrics: {listen: %q}\n", metricsAddr)
	}
	fmt.Fprintf(&b, "connections:\n  mega:\n    local_address: %s\n    remote_address: %s\n    psk: \"SUPERPASSWORD\"\n", local, remote)
	b.WriteString("    ike: {proposals: [aes128-sha256-modp2048]}\n    tunnels:\n")
	l, r := "10.10", "10.20"
	if local > remote {
		l, r = r, l
	}
	for i := range n {
		fmt.Fprintf(&b, "      t%04d: {local_subnet: %s.%d.%d/32, remote_subnet: %s.%d.%d/32, proposals: [aes128gcm16]}\n",
			i, l, i/256, i%256, r, i/256, i%256)
	}
	return b.String()
}

// BenchmarkControlPlane measures, with 1 and with 1,000 tunnels up (a real engine and
// daemon, bindtest between two of them, the fake datapath), what a status costs (a
// control-socket round trip: build, encode, decode the whole status, as `status --json`
// or `--watch` ask), what `espgw status` costs (the summary above 20 tunnels; bytes: its
// JSON) and what a /metrics scrape takes, in the same run. Targets (issue 13): status ≤ 200 ms, scrape ≤ 100 ms.
//
//	go test -run '^$' -bench ControlPlane ./daemon
func BenchmarkControlPlane(b *testing.B) {
	for _, n := range []int{1, 1000} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // a free port for the daemon, most likely still free in a moment
		ba, bb := bindtest.NewPair()
		a := startDaemon(b, "A", manyTunnelsYAML("192.0.2.1", "192.0.2.2", n, addr), ba, datapathtest.New(0x1000))
		startDaemon(b, "B", manyTunnelsYAML("192.0.2.2", "192.0.2.1", n, ""), bb, datapathtest.New(0x2000))
		if err := a.client.Up(context.Background(), "mega", ""); err != nil {
			b.Fatal(err)
		}
		if got := len(a.status(b).IPsecSAs); got != n {
			b.Fatalf("%d IPsec SAs up, want %d", got, n)
		}
		b.Run(fmt.Sprintf("status/tunnels=%d", n), func(b *testing.B) {
			cpu0 := processCPU()
			for b.Loop() {
				if _, err := a.client.Status(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu0)
		})
		b.Run(fmt.Sprintf("summary/tunnels=%d", n), func(b *testing.B) {
			var sum *control.Summary
			cpu0 := processCPU()
			for b.Loop() {
				var err error
				if _, sum, err = a.client.Overview(context.Background(), 20); err != nil { // as `espgw status` asks
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu0)
			if sum != nil {
				b.ReportMetric(float64(len(mustJSON(b, sum))), "bytes")
			}
		})
		b.Run(fmt.Sprintf("metrics/tunnels=%d", n), func(b *testing.B) {
			var size int
			cpu0 := processCPU()
			for b.Loop() {
				size = scrapeSize(b, addr)
			}
			reportCPU(b, cpu0)
			b.ReportMetric(float64(size), "bytes")
		})
	}
}

// processCPU is this process's user+system time: on a shared machine the wall time per
// operation mostly says how long it waited for a core, the CPU time what it cost.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since cpu0, both sides of the control
// socket or HTTP connection included (the idle daemons' own share is negligible).
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

func mustJSON(b *testing.B, v any) []byte {
	j, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return j
}

// scrapeSize GETs http://addr/metrics and returns the body's size.
func scrapeSize(b *testing.B, addr string) int {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("scrape: %s, %v", resp.Status, err)
	}
	return int(n)
}
