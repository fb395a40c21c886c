//go:build vmtest

package kernel

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/scalelab"
)

// scaleEnv, a number of tunnels, makes TestXfrmScale run with that many; without it the
// test does not run (at 20 tunnels it costs each vmtest run a minute of both VM CPUs).
// vmtest.sh forwards it from VMTEST_ENV (bench/README.md, "xfrm datapath in the VM").
const scaleEnv = "ESPGW_VM_SCALE_N"

// TestXfrmScale (issue 13, the xfrm datapath at a smaller N): espgw on the xfrm datapath
// brings up N tunnels, one connection with N subnet pairs, against strongSwan on kernel ESP,
// in IKEv1 and IKEv2. Every CHILD_SA is INSTALLED at strongSwan, espgw's namespace holds 2N
// XFRM states and 3N policies (out, in, fwd), a sample of tunnels carries pings and SIGTERM
// leaves no XFRM state or policy. It logs the time until all were INSTALLED and espgw's RSS,
// the figures of bench/README.md; they are not asserted.
func TestXfrmScale(t *testing.T) {
	t.Parallel()
	s := os.Getenv(scaleEnv)
	if s == "" {
		testutil.NotApplicable(t, "runs on request: VMTEST_ENV=%s=20 VMTEST_RUN=TestXfrmScale make vmtest", scaleEnv)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a number of tunnels", scaleEnv, s)
	}
	for _, version := range []int{1, 2} {
		t.Run("ikev"+strconv.Itoa(version), func(t *testing.T) {
			t.Parallel()
			testXfrmScale(t, n, version)
		})
	}
}

func testXfrmScale(t *testing.T, n, version int) {
	// espgw as in production, but without eBPF: under TCG the verifier alone takes 10–30 s.
	r := scalelab.Start(t, scalelab.Lab{Peers: 1, Tunnels: n, EspgwInitiates: true, IKEVersion: version, KernelESP: true,
		IKE: "aes256-sha256-modp2048", ESP: "aes256gcm16-modp2048", NoEBPF: true,
		Daemon: espgwtest.Config{LogLevel: "info", NoSaveKeys: true}})
	// Under TCG each DH (one per tunnel: PFS) takes a good part of a second on each side.
	took, err := r.WaitInstalled(time.Minute + time.Duration(n)*2*time.Second)
	if err != nil {
		t.Fatalf("after %v: %v", took.Round(time.Millisecond), err)
	}
	rss, errRSS := scalelab.RSS(r.GW.PID())
	anon, file, errParts := scalelab.RSSParts(r.GW.PID())
	if errRSS != nil || errParts != nil {
		t.Fatalf("espgw RSS: %v, %v", errRSS, errParts)
	}
	states, policies := xfrmAll(t, r.GWNS)
	t.Logf("%d tunnels, IKEv%d: all INSTALLED at strongSwan %.1f s after espgw started (its start: %.1f s); espgw RSS %.1f MiB (anon %.1f, file %.1f); espgw's netns: %d XFRM states, %d policies",
		n, version, took.Seconds(), r.Ready.Sub(r.Began).Seconds(), mib(rss), mib(anon), mib(file), len(states), len(policies))
	if len(states) != 2*n || len(policies) != 3*n {
		t.Errorf("espgw's netns holds %d XFRM states and %d policies, want %d and %d (in and out SA, out, in and fwd policy per tunnel)",
			len(states), len(policies), 2*n, 3*n)
	}
	r.WaitTunnelsUp(t, 10*time.Second)
	for _, i := range []int{1, (n + 1) / 2, n} {
		if err := r.Ping(i, 2); err != nil {
			t.Errorf("tunnel %d: %v", i, err)
		}
	}
	r.GW.Stop(t)
	requireNoXfrm(t, r.GWNS)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
