package tunnel

import (
	"encoding/json"
	"flag"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/scalelab"
)

var iperfTime = flag.Duration("iperf.time", 10*time.Second, "duration of one iperf3 run")

// iperfResult is the part of `iperf3 -J` output the benchmark reports.
type iperfResult struct {
	End struct {
		SumSent struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int     `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// iperf runs one TCP flow for *iperfTime from src (in client) to dst (in server) and returns
// the receiver's throughput in bit/s and the sender's retransmissions.
func iperf(tb testing.TB, client, server *testutil.NetNS, src, dst string) (bps float64, retr int) {
	tb.Helper()
	srv := testutil.StartProcess(tb, server, "", "iperf3", "-s", "-1", "-B", dst)
	testutil.WaitFor(tb, 5*time.Second, func() (bool, error) {
		out, err := server.Command("ss", "-ltn", "sport = :5201").Output()
		return strings.Contains(string(out), ":5201"), err
	})
	secs := strconv.Itoa(int((*iperfTime + time.Second - 1) / time.Second))
	out, err := client.Command("iperf3", "-c", dst, "-B", src, "-t", secs, "-J").Output()
	srv.Wait(5 * time.Second)
	var r iperfResult
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		tb.Fatalf("iperf3 %s -> %s: %v (parse JSON: %v)\n%s", src, dst, err, jerr, out)
	}
	if r.Error != "" || r.End.SumReceived.BitsPerSecond == 0 {
		tb.Fatalf("iperf3 %s -> %s: error %q, received %.0f bit/s", src, dst, r.Error, r.End.SumReceived.BitsPerSecond)
	}
	return r.End.SumReceived.BitsPerSecond, r.End.SumSent.Retransmits
}

// cpuClock measures the CPU time some processes spent.
type cpuClock func() time.Duration

// selfCPU is the user+system time of this process (the espgw datapaths run in it).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pidsCPU is the user+system time of the processes pids.
func pidsCPU(pids ...int) cpuClock {
	return func() time.Duration {
		var sum time.Duration
		for _, pid := range pids {
			t, _ := scalelab.CPUTime(pid) // a process that exited counts nothing more
			sum += t
		}
		return sum
	}
}

// load1 is the one-minute load average: the machine is shared, so each result carries it.
func load1() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// measure runs b.N iperf3 flows and reports their mean throughput, retransmissions, the
// CPU share of the tunnel implementation (cpu, may be nil) and the load average before.
func measure(b *testing.B, client, server *testutil.NetNS, src, dst string, cpu cpuClock) {
	var sumBps, sumRetr, sumLoad float64
	var cpuUsed, wall time.Duration
	for range b.N {
		sumLoad += load1()
		var c0 time.Duration
		if cpu != nil {
			c0 = cpu()
		}
		t0 := time.Now()
		bps, retr := iperf(b, client, server, src, dst)
		wall += time.Since(t0)
		if cpu != nil {
			cpuUsed += cpu() - c0
		}
		sumBps += bps
		sumRetr += float64(retr)
		b.Logf("%.1f Mbit/s, %d retransmits", bps/1e6, retr)
	}
	n := float64(b.N)
	b.ReportMetric(sumBps/n/1e6, "Mbit/s")
	b.ReportMetric(sumRetr/n, "retr/op")
	b.ReportMetric(sumLoad/n, "load1")
	if cpu != nil {
		b.ReportMetric(100*cpuUsed.Seconds()/wall.Seconds(), "cpu%")
	}
}
