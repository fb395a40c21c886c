package setup

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/scalelab"
)

var (
	scaleN         = flag.Int("scale.n", 1000, "BenchmarkScale: tunnels in all, a multiple of -scale.peers")
	scalePeers     = flag.Int("scale.peers", 200, "BenchmarkScale: peers")
	scaleIdle      = flag.Duration("scale.idle", 60*time.Second, "BenchmarkScale: how long to measure idle CPU")
	scaleHeap      = flag.String("scale.heap", "", "BenchmarkScale: write espgw's heap profile (pprof) to this file")
	scaleCPU       = flag.String("scale.cpuprofile", "", "BenchmarkScale: write a CPU profile of espgw over the first idle window to this file")
	scaleScrapeCPU = flag.String("scale.scrapeprofile", "", "BenchmarkScale: write a CPU profile of espgw over 10 s of back-to-back /metrics scrapes to this file")
)

// Inside the gateway's namespace.
const (
	metricsAddr = "127.0.0.1:9814"
	pprofAddr   = "127.0.0.1:6060"
)

// BenchmarkScale brings -scale.n tunnels up (strongSwan initiating, espgw responding as a
// deployment would run it: info logging, no save_keys, DPD every 30 s, metrics on) and
// measures espgw with all of them up: RSS and the Go heap (a heap profile with -scale.heap),
// its own CPU time over -scale.idle with no traffic, how long `espgw status` (summary, one
// connection, --json) and a /metrics scrape take.
func BenchmarkScale(b *testing.B) {
	perPeer := tunnelsPerPeer(b, "scale", *scaleN, *scalePeers)
	for range b.N {
		r := scalelab.Start(b, scalelab.Lab{Peers: *scalePeers, Tunnels: perPeer,
			IKE: ikeProposal, ESP: espProposal, DPDDelay: "30s",
			Daemon: espgwtest.Config{LogLevel: "info", NoSaveKeys: true, Metrics: metricsAddr, PProf: profiling()}})
		// On this shared machine a few quick modes may fail for good (see bench/README.md);
		// measure with what is up, if nearly all are.
		took, err := r.WaitInstalled(30*time.Second + time.Duration(r.N())*200*time.Millisecond)
		n, nerr := r.Installed()
		if err != nil && (nerr != nil || n < r.N()*95/100) {
			b.Fatalf("after %v: %v", took.Round(time.Millisecond), err)
		}
		b.ReportMetric(float64(n), "installed")
		b.ReportMetric(took.Seconds(), "s-to-installed")
		time.Sleep(5 * time.Second) // the last quick modes' lingering state goes
		pid := r.GW.PID()

		rss, err := scalelab.RSS(pid)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rss)/(1<<20), "RSS-MiB")
		if anon, file, err := scalelab.RSSParts(pid); err == nil {
			b.ReportMetric(float64(anon)/(1<<20), "RssAnon-MiB")
			b.ReportMetric(float64(file)/(1<<20), "RssFile-MiB")
		}
		heapProfile(b, r.GWNS, "")
		s := scrape(b, r.GWNS)
		for _, m := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes", "go_memstats_next_gc_bytes", "go_goroutines"} {
			b.Logf("%s %s", m, s.value(m))
		}

		// Two idle windows: the first (profiled with -scale.cpuprofile) may still see the
		// tail of the setup (lingering quick modes, the runtime returning freed memory).
		load0 := load1()
		b.ReportMetric(idleCPU(b, pid, func() { cpuProfile(b, r.GWNS) }), "idle-cpu%")
		b.ReportMetric(idleCPU(b, pid, func() { time.Sleep(*scaleIdle) }), "idle2-cpu%")
		b.ReportMetric((load0+load1())/2, "load1")
		if n, err := r.Installed(); err == nil {
			b.ReportMetric(float64(n), "installed-after-idle") // DPD kept every IKE SA
		}
		// By now the runtime has returned most of what setting up 1,000 tunnels freed.
		if rss, err := scalelab.RSS(pid); err == nil {
			b.ReportMetric(float64(rss)/(1<<20), "idle-RSS-MiB")
		}
		if st, err := r.GW.Status(); err == nil {
			b.ReportMetric(float64(len(st.IKESAs)), "ike-sas")
			b.ReportMetric(float64(len(st.IPsecSAs)), "ipsec-sas")
		}

		for _, q := range []struct {
			name string
			args []string
		}{{"version", []string{"version"}}, {"status", []string{"status"}},
			{"status-conn", []string{"status", "p001"}}, {"status-json", []string{"status", "--json"}}} {
			cliCommand(b, r.GW, pid, q.name, q.args...)
		}
		size := timed(b, pid, "scrape", func() int { return len(getMetrics(b, r.GWNS)) })
		b.ReportMetric(float64(len(scrape(b, r.GWNS).series)), "series")
		b.Logf("/metrics: %d bytes", size)

		// Memory after scrapes: what they allocate must not stay resident.
		for range 20 {
			getMetrics(b, r.GWNS)
		}
		heapProfile(b, r.GWNS, ".scraped") // alloc_space minus the first: what the scrapes allocated
		scrapeProfile(b, r.GWNS)
		if rss, err := scalelab.RSS(pid); err == nil {
			b.ReportMetric(float64(rss)/(1<<20), "scraped-RSS-MiB")
		}
		time.Sleep(15 * time.Second) // a Prometheus scrape interval
		if rss, err := scalelab.RSS(pid); err == nil {
			b.ReportMetric(float64(rss)/(1<<20), "scraped-15s-RSS-MiB")
		}
		s = scrape(b, r.GWNS)
		for _, m := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes",
			"go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes", "go_memstats_next_gc_bytes", "go_goroutines"} {
			b.Logf("after scrapes: %s %s", m, s.value(m))
		}
	}
}

const timedRuns = 5

// timed runs f timedRuns times and reports the median wall time and the daemon's (pid) CPU time
// per run: on a shared machine the wall time is mostly waiting for a core.
func timed(b *testing.B, pid int, name string, f func() int) (size int) {
	var daemonCPU time.Duration
	ms, size := median(b, timedRuns, func() int {
		d0, _ := scalelab.CPUTime(pid)
		n := f()
		d1, _ := scalelab.CPUTime(pid)
		daemonCPU += d1 - d0
		return n
	})
	b.ReportMetric(ms, name+"-ms")
	b.ReportMetric(float64(daemonCPU.Microseconds())/1000/timedRuns, name+"-daemon-cpu-ms")
	return size
}

// cliCommand runs `espgw args...` (see timed), with the command's own CPU time
// per run too. `version` is the binary's start-up alone.
func cliCommand(b *testing.B, g *espgwtest.Gateway, pid int, name string, args ...string) {
	var cliCPU time.Duration
	size := timed(b, pid, name, func() int {
		cmd := g.Command(context.Background(), args...)
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("espgw %s: %v", strings.Join(args, " "), err)
		}
		cliCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return len(out)
	})
	b.ReportMetric(float64(cliCPU.Microseconds())/1000/timedRuns, name+"-cli-cpu-ms")
	b.Logf("espgw %s: %d bytes", strings.Join(args, " "), size)
}

// median runs f n times and returns the median wall time in ms and f's last result.
func median(b *testing.B, n int, f func() int) (ms float64, last int) {
	var ds []time.Duration
	for range n {
		t := time.Now()
		last = f()
		ds = append(ds, time.Since(t))
	}
	slices.Sort(ds)
	return float64(ds[n/2].Microseconds()) / 1000, last
}

// heapProfile writes espgw's heap profile (after a GC) to -scale.heap with suffix before
// its extension, if set.
func heapProfile(b *testing.B, ns *testutil.NetNS, suffix string) {
	if *scaleHeap == "" {
		return
	}
	p, err := ns.HTTPGet(pprofAddr, "/debug/pprof/heap?gc=1", time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	file := strings.TrimSuffix(*scaleHeap, filepath.Ext(*scaleHeap)) + suffix + filepath.Ext(*scaleHeap)
	if err := os.WriteFile(file, p, 0o644); err != nil {
		b.Fatal(err)
	}
	g, err := ns.HTTPGet(pprofAddr, "/debug/pprof/goroutine?debug=1", time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	gr := strings.TrimSuffix(file, filepath.Ext(file)) + ".goroutines.txt"
	if err := os.WriteFile(gr, g, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("heap profile in %s, goroutines in %s", file, gr)
}

// profiling is espgw's --pprof address when a profile is asked for: it samples allocations
// finely, which costs CPU and memory of its own.
func profiling() string {
	if *scaleHeap == "" && *scaleCPU == "" && *scaleScrapeCPU == "" {
		return ""
	}
	return pprofAddr
}

// idleCPU runs wait and returns the CPU time process pid used meanwhile, in % of a core.
func idleCPU(b *testing.B, pid int, wait func()) float64 {
	cpu0, err := scalelab.CPUTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	wait()
	cpu1, err := scalelab.CPUTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	return 100 * (cpu1 - cpu0).Seconds() / time.Since(t0).Seconds()
}

// cpuProfile writes a CPU profile of espgw over -scale.idle to -scale.cpuprofile, or only
// waits that long if it is not set.
func cpuProfile(b *testing.B, ns *testutil.NetNS) {
	if *scaleCPU == "" {
		time.Sleep(*scaleIdle)
		return
	}
	p, err := ns.HTTPGet(pprofAddr, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(scaleIdle.Seconds())), *scaleIdle+time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(*scaleCPU, p, 0o644); err != nil {
		b.Fatal(err)
	}
}

// scrapeProfile writes a CPU profile of espgw over 10 s of back-to-back scrapes to
// -scale.scrapeprofile, if set.
func scrapeProfile(b *testing.B, ns *testutil.NetNS) {
	if *scaleScrapeCPU == "" {
		return
	}
	done := make(chan error, 1)
	go func() {
		p, err := ns.HTTPGet(pprofAddr, "/debug/pprof/profile?seconds=10", time.Minute)
		if err == nil {
			err = os.WriteFile(*scaleScrapeCPU, p, 0o644)
		}
		done <- err
	}()
	scrapes := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("CPU profile of %d scrapes in %s", scrapes, *scaleScrapeCPU)
			return
		default:
			getMetrics(b, ns)
			scrapes++
		}
	}
}

// scraped is one /metrics response: its text and the value of each series.
type scraped struct {
	text   string
	series map[string]string
}

func (s scraped) value(name string) string { return s.series[name] }

// getMetrics is one /metrics response's body, as Prometheus asks for it (gzip).
func getMetrics(b *testing.B, ns *testutil.NetNS) []byte {
	body, err := ns.HTTPGet(metricsAddr, "/metrics", time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func scrape(b *testing.B, ns *testutil.NetNS) scraped {
	s := scraped{text: string(getMetrics(b, ns)), series: map[string]string{}}
	for _, l := range strings.Split(s.text, "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		if i := strings.LastIndexByte(l, ' '); i > 0 {
			s.series[l[:i]] = l[i+1:]
		}
	}
	return s
}

// load1 is the one-minute load average: the machine is shared, so each result carries it.
func load1() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	var v float64
	fmt.Sscan(string(b), &v)
	return v
}
