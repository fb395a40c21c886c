// Package setup measures the tunnel setup rate: how long until N tunnels to a set of peers are
// INSTALLED at strongSwan, espgw initiating against strongSwan initiating the same set to an
// espgw responder, in the same run (internal/testutil/scalelab). Root and strongSwan needed:
//
//	go test ./bench/setup/ -run '^$' -bench . -benchtime 1x [-setup.n 50 -setup.peers 10]
//
// -setup.cpuprofile FILE profiles the initiating espgw from its start on (go tool pprof FILE).
package setup

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/scalelab"
)

var (
	tunnels = flag.Int("setup.n", 50, "tunnels in all, a multiple of -setup.peers")
	peers   = flag.Int("setup.peers", 10, "peers (connections; addresses of the one charon)")
	logs    = flag.String("setup.logs", "", "directory to copy espgw.log and charon.log of each run into")
	profile = flag.String("setup.cpuprofile", "", "write a CPU profile of the initiating espgw, from its start on, to this file")
	profDur = flag.Duration("setup.cpuprofile.time", 4*time.Second, "how long -setup.cpuprofile samples")
)

// The proposals of test/interop's second set: DH in every main mode and (PFS) quick mode.
const (
	ikeProposal = "aes256-sha256-modp2048"
	espProposal = "aes256gcm16-modp2048"
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "espgw-bench-setup-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if _, err := espgwtest.Build(dir); err != nil {
		fmt.Fprintf(os.Stderr, "build espgw: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// BenchmarkSetup reports, per initiator, the seconds from the initiator's daemon start (the
// responder already up) until every tunnel is INSTALLED at strongSwan, tunnels per second, and
// how much of it the daemon took to start (espgw: until its control socket answers, eBPF
// programs loaded; charon: until swanctl loaded the connections, which starts them).
func BenchmarkSetup(b *testing.B) {
	perPeer := tunnelsPerPeer(b, "setup", *tunnels, *peers)
	for _, espgwInitiates := range []bool{true, false} {
		name := "strongswan-initiates"
		if espgwInitiates {
			name = "espgw-initiates"
		}
		b.Run(fmt.Sprintf("%s/n=%d/peers=%d", name, *tunnels, *peers), func(b *testing.B) {
			for range b.N {
				load0 := load1()
				lab := scalelab.Lab{Peers: *peers, Tunnels: perPeer,
					EspgwInitiates: espgwInitiates, IKE: ikeProposal, ESP: espProposal}
				profiled := espgwInitiates && *profile != ""
				if profiled {
					lab.Daemon.PProf = pprofAddr
				}
				r := scalelab.Start(b, lab)
				var prof chan error
				if profiled {
					prof = make(chan error, 1)
					go func() { prof <- setupProfile(r) }()
				}
				took, err := r.WaitInstalled(30*time.Second + time.Duration(r.N())*200*time.Millisecond)
				if prof != nil {
					if err := <-prof; err != nil {
						b.Error(err)
					}
				}
				keepLogs(b, r, name)
				r.ReportUDPDrops(b)
				b.ReportMetric((load0+load1())/2, "load1")
				if err != nil {
					b.Fatalf("after %v: %v", took.Round(time.Millisecond), err)
				}
				b.ReportMetric(took.Seconds(), "s-to-installed")
				b.ReportMetric(float64(r.N())/took.Seconds(), "tunnels/s")
				b.ReportMetric(r.Ready.Sub(r.Began).Seconds(), "s-daemon-start")
				if rss, err := scalelab.RSS(r.GW.PID()); err == nil {
					b.ReportMetric(float64(rss)/(1<<20), "espgw-RSS-MiB")
				}
				reportCPU(b, "espgw-cpu-s", r.GW.PID())
				reportCPU(b, "charon-cpu-s", r.Swan.PID())
			}
		})
	}
}

// reportCPU reports the CPU time process pid has used since it started (both daemons'
// setup work: which of them is short of CPU on a shared machine).
func reportCPU(b *testing.B, unit string, pid int) {
	if cpu, err := scalelab.CPUTime(pid); err == nil {
		b.ReportMetric(cpu.Seconds(), unit)
	}
}

// setupProfile writes a CPU profile of r's espgw over -setup.cpuprofile.time to
// -setup.cpuprofile. espgw runs with --pprof, which also samples allocations finely.
func setupProfile(r *scalelab.Run) error {
	path := fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(profDur.Seconds()))
	p, err := r.GWNS.HTTPGet(pprofAddr, path, *profDur+time.Minute)
	if err != nil {
		return fmt.Errorf("CPU profile: %w", err)
	}
	return os.WriteFile(*profile, p, 0o644)
}

// tunnelsPerPeer checks the flags -PREFIX.n (n) and -PREFIX.peers and returns n / peers.
func tunnelsPerPeer(b *testing.B, prefix string, n, peers int) int {
	if peers < 1 || n < peers || n%peers != 0 {
		b.Fatalf("-%s.n %d over -%s.peers %d: want a positive multiple", prefix, n, prefix, peers)
	}
	return n / peers
}

// keepLogs copies the run's espgw.log and charon.log into -setup.logs, named after the run.
func keepLogs(b *testing.B, r *scalelab.Run, name string) {
	if *logs == "" {
		return
	}
	prefix := filepath.Join(*logs, fmt.Sprintf("%s-%d-%d-", name, r.N(), r.Peers))
	for file, text := range map[string]string{"espgw.log": r.GW.Log(), "charon.log": r.Swan.Log()} {
		if err := os.WriteFile(prefix+file, []byte(text), 0o644); err != nil {
			b.Logf("keeping %s: %v", file, err)
		}
	}
}
