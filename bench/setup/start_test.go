package setup

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/scalelab"
)

// BenchmarkStart reports how long espgw takes to start with the scalelab's configuration
// (-setup.n tunnels over -setup.peers connections, userspace datapath, eBPF on) until its
// control socket answers, with nothing negotiating (start: manual, no peer running): what
// its own start costs, apart from the CPU the negotiations take in BenchmarkSetup.
//
//	go test ./bench/setup/ -run '^$' -bench Start -benchtime 3x -setup.n 1000 -setup.peers 200
func BenchmarkStart(b *testing.B) {
	perPeer := tunnelsPerPeer(b, "setup", *tunnels, *peers)
	ns := testutil.NewNetNS(b, "start-gw")
	peerNS := testutil.NewNetNS(b, "start-peer")
	testutil.Veth(b, ns, "gw-wan", scalelab.GWAddr+"/24", peerNS, "p-wan", scalelab.PeerAddr(1)+"/24")
	cfg := espgwtest.Config{Datapath: "auto"}
	for p := 1; p <= *peers; p++ {
		c := espgwtest.Connection{Name: fmt.Sprintf("p%03d", p), Local: scalelab.GWAddr, Remote: scalelab.PeerAddr(p),
			PSK: "start", IKEProposal: ikeProposal}
		for t := 1; t <= perPeer; t++ {
			i := (p-1)*perPeer + t
			ns.AddAddr(b, "lo", scalelab.LocalAddr(i)+"/32")
			c.Tunnels = append(c.Tunnels, espgwtest.Tunnel{Name: fmt.Sprintf("t%04d", i),
				LocalSubnet: scalelab.LocalAddr(i) + "/32", RemoteSubnet: scalelab.RemoteAddr(i) + "/32",
				ESPProposal: espProposal, Start: "manual"})
		}
		cfg.Connections = append(cfg.Connections, c)
	}
	b.ResetTimer()
	for range b.N {
		began := time.Now()
		g := espgwtest.Start(b, ns, cfg)
		b.ReportMetric(time.Since(began).Seconds(), "s-daemon-start")
		g.Stop(b)
		if *logs != "" {
			if err := os.WriteFile(filepath.Join(*logs, fmt.Sprintf("start-%d-%d-espgw.log", *tunnels, *peers)), []byte(g.Log()), 0o644); err != nil {
				b.Logf("keeping espgw.log: %v", err)
			}
		}
	}
}
