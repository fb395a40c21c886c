package interop

import (
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil/scalelab"
)

// TestManyPeers is a provider's gateway: 200 tunnels to 40 peers (5 each), eBPF on, espgw
// initiating. The peers are one charon with 40 addresses in its namespace and 40 connections.
// Every CHILD_SA must be INSTALLED at strongSwan, under 40 IKE_SAs, and a sample must carry
// traffic.
func TestManyPeers(t *testing.T) {
	set := proposalSets[1]
	r := scalelab.Start(t, scalelab.Lab{Peers: 40, Tunnels: 5, EspgwInitiates: true, IKE: set.ike, ESP: set.esp})
	took, err := r.WaitInstalled(negotiationTimeout + time.Duration(r.N())*200*time.Millisecond)
	if err != nil {
		t.Fatalf("after %v: %v", took.Round(time.Millisecond), err)
	}
	t.Logf("%d CHILD_SAs to %d peers INSTALLED at strongSwan %v after espgw started", r.N(), r.Peers, took.Round(time.Millisecond))
	if got := strings.Count(r.Swan.Log(), "decryption failed?"); got != 0 {
		t.Errorf("charon failed to decrypt %d messages", got)
	}
	sas, err := r.Swan.ListSAs()
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != r.Peers {
		t.Errorf("strongSwan has %d IKE_SAs, want %d", len(sas), r.Peers)
	}
	r.WaitTunnelsUp(t, negotiationTimeout)
	for _, i := range []int{1, 5, 6, 101, 196, 200} {
		if err := r.Ping(i, 2); err != nil {
			t.Errorf("tunnel %d: %v", i, err)
		}
	}
	if st := r.GW.MustStatus(t); !st.EBPF.Loaded || len(st.EBPF.Attached) == 0 {
		t.Errorf("eBPF programs not running: %+v", st.EBPF)
	}
	if rss, err := scalelab.RSS(r.GW.PID()); err != nil {
		t.Error(err)
	} else {
		t.Logf("espgw RSS with %d tunnels up: %.1f MiB", r.N(), float64(rss)/(1<<20))
	}
}
