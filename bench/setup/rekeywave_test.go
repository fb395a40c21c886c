package setup

import (
	"flag"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/scalelab"
)

var (
	waveN        = flag.Int("wave.n", 200, "BenchmarkRekeyWave: tunnels in all, a multiple of -wave.peers")
	wavePeers    = flag.Int("wave.peers", 40, "BenchmarkRekeyWave: peers")
	waveLifetime = flag.Duration("wave.lifetime", 90*time.Second, "BenchmarkRekeyWave: every child SA's lifetime")
	waveFlows    = flag.Int("wave.flows", 20, "BenchmarkRekeyWave: tunnels carrying a ping flow during the wave")
)

// waveInterval is the ping flows' pace: 10 echo requests per second and tunnel.
const waveInterval = 100 * time.Millisecond

// BenchmarkRekeyWave brings -wave.n tunnels up at once, espgw initiating, all with the same
// short lifetime, so that every one re-keys within the same window (85–90 % of the
// lifetime after its setup); meanwhile -wave.flows of them, spread over the peers, carry a
// steady ping flow through both datapaths from before the first re-key until after the
// last. It reports the echo requests lost (none is the goal: during a wave, traffic on the
// other tunnels and on the re-keying ones loses nothing), the re-keys espgw made, and the
// window they took.
func BenchmarkRekeyWave(b *testing.B) {
	perPeer := tunnelsPerPeer(b, "wave", *waveN, *wavePeers)
	if *waveFlows < 1 || *waveFlows > *waveN {
		b.Fatalf("-wave.flows %d: want 1..%d", *waveFlows, *waveN)
	}
	for range b.N {
		load0 := load1()
		r := scalelab.Start(b, scalelab.Lab{Peers: *wavePeers, Tunnels: perPeer, EspgwInitiates: true,
			IKE: ikeProposal, ESP: espProposal, Lifetime: waveLifetime.String()})
		took, err := r.WaitInstalled(30*time.Second + time.Duration(r.N())*200*time.Millisecond)
		if err != nil {
			b.Fatalf("after %v: %v", took.Round(time.Millisecond), err)
		}
		installed := strings.Count(r.GW.Log(), `msg="IPsec-SA established`)
		// From before the first re-key (tunnels set up after Began) to after the last.
		life := *waveLifetime
		from, until := r.Began.Add(life*80/100), r.Began.Add(took+life*95/100)
		time.Sleep(time.Until(from))
		flows := waveFlowsRun(b, r, int(time.Until(until)/waveInterval))

		var sent, lost int
		for i, f := range flows {
			sent += f.Sent
			lost += f.Sent - f.Received
			if len(f.Lost) > 0 {
				b.Logf("flow on tunnel %d: %d of %d lost, sent at %v", i, f.Sent-f.Received, f.Sent, f.Lost)
			}
		}
		// Two "IPsec-SA established" lines (in, out) per child SA.
		rekeys := (strings.Count(r.GW.Log(), `msg="IPsec-SA established`) - installed) / 2
		n, _ := r.Installed()
		b.ReportMetric(float64(rekeys), "rekeys")
		b.ReportMetric(float64(sent), "echo-sent")
		b.ReportMetric(float64(lost), "echo-lost")
		b.ReportMetric(float64(n), "installed-after")
		b.ReportMetric(took.Seconds(), "s-setup")
		b.ReportMetric((load0+load1())/2, "load1")
		r.ReportUDPDrops(b)
		keepLogs(b, r, "rekey-wave")
	}
}

// waveFlowsRun runs count-request ping flows on -wave.flows tunnels spread over the lab, all
// at once, and returns them by tunnel number.
func waveFlowsRun(b *testing.B, r *scalelab.Run, count int) map[int]testutil.Flow {
	var mu sync.Mutex
	var wg sync.WaitGroup
	flows := map[int]testutil.Flow{}
	step := r.N() / *waveFlows
	for k := range *waveFlows {
		i := 1 + k*step
		wg.Go(func() {
			f, err := testutil.PingFlow(r.GWNS, scalelab.LocalAddr(i), scalelab.RemoteAddr(i), waveInterval, count)
			if err != nil {
				b.Error(fmt.Errorf("flow on tunnel %d: %w", i, err))
			}
			mu.Lock()
			flows[i] = f
			mu.Unlock()
		})
	}
	wg.Wait()
	return flows
}
