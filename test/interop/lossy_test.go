//go:build lossy

package interop

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
)

// Opt-in (go test -tags lossy -run TestLossyNegotiation -v ./test/interop/): random by
// design and several minutes long, so not in make test. About 1 negotiation in 15–25 loses
// strongSwan's QM2 retransmissions (retransmit_tries = 3 in the harness) or all our QM3
// answers: espgw then has a child SA strongSwan never installed, and strongSwan drops the
// ISAKMP SA when it gives up. espgw repairs that without DPD: packets out and none in on a
// child SA that never carried strongSwan's ESP re-key it (ike/onesided.go), and a re-key
// unanswered for a whole quick mode starts over with a new phase 1 (TestQM3LostForGood is
// the deterministic case). Measured 2026-12-03, 2 cores shared with other test runs (load
// 12-15), with these repairs: 40 negotiations with DPD off and 40 with DPD 5 s all
// established and passed traffic, the slowest after 58.6 s (close to the 60 s bound: under
// such load a try can exceed it); at least 6 were repaired by the one-sided re-key. Before them, a
// DPD-off run failed at its 9th try (a child SA strongSwan never installed).

// TestLossyNegotiation: the partner's nftables drop 30 % of the IKE datagrams both ways (UDP
// 500, and IKE on 4500: the zero non-ESP marker; ESP passes). Ten negotiations in a row each
// establish within 60 s — retransmissions on both sides, a lost QM3 answered when strongSwan
// resends QM2 — with the child SA INSTALLED at strongSwan under espgw's SPIs and traffic
// passing; once with DPD on, once with it off.
func TestLossyNegotiation(t *testing.T) {
	testutil.RequireTool(t, "nft", "nftables")
	for _, dpd := range []string{"", "5s"} {
		name := "DPD off"
		if dpd != "" {
			name = "DPD " + dpd
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testLossyNegotiation(t, dpd)
		})
	}
}

func testLossyNegotiation(t *testing.T, dpd string) {
	const tries, within = 10, 60 * time.Second
	set := proposalSets[1]
	l := newLab(t)
	sw := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
	c := gwConn(set.ike, set.esp, "manual")
	c.DPDDelay = dpd
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Connections: []espgwtest.Connection{c}})
	applyNFT(t, l.partner, `table inet chaos {
	chain in {
		type filter hook input priority -10;
		udp dport 500 udp length > 9 numgen random mod 100 < 30 drop
		udp dport 4500 udp length > 9 @th,64,32 0 numgen random mod 100 < 30 drop
	}
	chain out {
		type filter hook output priority -10;
		udp sport 500 udp length > 9 numgen random mod 100 < 30 drop
		udp sport 4500 udp length > 9 @th,64,32 0 numgen random mod 100 < 30 drop
	}
}
`)
	var slowest time.Duration
	for i := range tries {
		begin := time.Now()
		var err error
		for time.Since(begin) < within { // a user (or start: always) tries again
			if err = g.Up(connName+"/"+tunnelName, within-time.Since(begin)); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("try %d: not established within %v: %v", i+1, within, err)
		}
		// Traffic flows meanwhile, as it would: a tunnel strongSwan never installed (its QM3
		// lost for good) must be noticed by it and re-keyed.
		err = testutil.Poll(within-time.Since(begin), func() (bool, error) {
			pinged := testutil.Ping(l.gw, serviceAddr, hostAddr, 1)
			if _, err := installedAtPeer(g, sw); err != nil {
				return false, err
			}
			return pinged == nil, pinged
		})
		if err != nil {
			t.Fatalf("try %d: %v", i+1, err)
		}
		took := time.Since(begin)
		slowest = max(slowest, took)
		t.Logf("try %d: INSTALLED at strongSwan and traffic through after %v", i+1, took.Round(100*time.Millisecond))
		if _, err := g.CLI(context.Background(), "down", connName); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d negotiations through 30 %% IKE loss, slowest %v; espgw re-keyed %d one-sided (never installed at strongSwan) child SAs",
		tries, slowest.Round(100*time.Millisecond), strings.Count(g.Log(), "one-sided tunnel: re-keying"))
	l.partner.Exec(t, "nft", "delete", "table", "inet", "chaos")
	g.Stop(t)
}
