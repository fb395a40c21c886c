package xfrm

import (
	"context"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/userspace"
	"github.com/espgw/espgw/internal/testutil"
)

// TestDropCountsLive: traffic into a policy without an SA is dropped by the kernel and
// counted as no_sa in the Datapath's namespace only; the caller's namespace is not read.
func TestDropCountsLive(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetNS(t, "xfrmstat")
	setupAcquireNetNS(t, ns)
	d := newDatapath(t, ns)
	before, err := d.DropCounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"no_sa", "icv", "replay", "selector", "unknown_spi", "other"} {
		if _, ok := before[r]; !ok {
			t.Errorf("DropCounts() = %v lacks reason %q", before, r)
		}
	}
	if before["no_sa"] != 0 {
		t.Errorf("fresh namespace: no_sa = %d, want 0", before["no_sa"])
	}
	p := datapath.Policy{
		Selector:    datapath.Selector{Local: netip.MustParsePrefix("10.1.0.0/24"), Remote: netip.MustParsePrefix("10.2.0.0/24"), Proto: unix.IPPROTO_UDP},
		TunnelLocal: local, TunnelRemote: remote, ReqID: 78, Priority: 100,
	}
	if err := d.AddPolicy(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		sendUDP(t, ns, "10.2.0.5:9999")
	}
	after, err := d.DropCounts()
	if err != nil {
		t.Fatal(err)
	}
	if got := after["no_sa"] - before["no_sa"]; got != 3 {
		t.Errorf("no_sa rose by %d after 3 packets into a policy without SA, want 3 (before %v, after %v)", got, before, after)
	}
}

func TestParseXfrmStat(t *testing.T) {
	good, err := os.ReadFile("testdata/xfrm_stat")
	if err != nil {
		t.Fatal(err)
	}
	stats, err := parseXfrmStat(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 32 || stats["XfrmInStateProtoError"] != 7 || stats["XfrmInStateSeqError"] != 2 || stats["XfrmOutNoStates"] != 5 {
		t.Errorf("parsed %d counters %v, want 32 with XfrmInStateProtoError 7, XfrmInStateSeqError 2, XfrmOutNoStates 5", len(stats), stats)
	}
	for _, bad := range []string{
		"XfrmInError 1 2\n",
		"XfrmInError x\n",
		"XfrmInError -1\n",
		"Ip 3\n",
		"XfrmInError 1\nXfrmInError 2\n",
	} {
		if _, err := parseXfrmStat([]byte(bad)); err == nil {
			t.Errorf("parseXfrmStat(%q) succeeded, want an error", bad)
		}
	}
}

func FuzzParseXfrmStat(f *testing.F) {
	good, err := os.ReadFile("testdata/xfrm_stat")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Fuzz(func(t *testing.T, data []byte) {
		stats, err := parseXfrmStat(data)
		if err != nil {
			return
		}
		for name := range stats {
			if len(name) < 4 || name[:4] != "Xfrm" {
				t.Errorf("counter %q accepted", name)
			}
		}
	})
}

// TestDropReasonsAreUserspaces: the kernel's counters map onto the userspace datapath's reasons.
func TestDropReasonsAreUserspaces(t *testing.T) {
	names, err := new(userspace.Datapath).DropCounts()
	if err != nil {
		t.Fatal(err)
	}
	for counter, r := range dropReasons {
		if _, ok := names[r]; !ok {
			t.Errorf("%s maps to %q, not a userspace drop reason", counter, r)
		}
	}
}
