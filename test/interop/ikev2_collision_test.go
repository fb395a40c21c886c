package interop

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// Collisions of rekeys with strongSwan. Both sides' CREATE_CHILD_SA requests must be in
// flight at once, within the round trip of a netns link. espgw rekeys by its timers, so
// the partner holds back espgw's IKE messages (nftables) once espgw's exchange has begun,
// strongSwan starts its own exchange (swanctl --rekey), whose request reaches espgw while
// espgw's waits, and then lets espgw's retransmission through: each side receives the
// other's request before the response to its own. ESP is not held.

// holdEspgwIKE drops, in the partner's namespace, the IKE messages espgw sends (UDP 4500
// with the non-ESP marker, NAT-T being forced by kernel-libipsec) and counts them; release
// lets them through again.
func holdEspgwIKE(t *testing.T, l *lab) (held func() int, release func()) {
	t.Helper()
	testutil.RequireTool(t, "nft", "nftables")
	applyNFT(t, l.partner, `table inet v2hold {
	counter held {}
	chain in { type filter hook input priority -10; ip saddr `+gwAddr+` udp dport 4500 udp length > 12 @th,64,32 0 counter name "held" drop; }
}`)
	release = func() { _ = l.partner.Command("nft", "delete", "table", "inet", "v2hold").Run() }
	t.Cleanup(release)
	return func() int { return nftCounter(l.partner, "v2hold", "held") }, release
}

// nftCounter returns the packets the named counter of the inet table in ns counted, 0 if
// it cannot be read.
func nftCounter(ns *testutil.NetNS, table, name string) int {
	out, _ := ns.Command("nft", "list", "counter", "inet", table, name).Output()
	m := regexp.MustCompile(`packets (\d+)`).FindSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// crossRekeys waits (from 'from' on, until 'until') for espgw's next CREATE_CHILD_SA, holds
// it back, has strongSwan rekey its IKE SA meanwhile, and then lets espgw's retransmission
// through.
func crossRekeys(t *testing.T, l *lab, sw *strongswan.Charon, g *espgwtest.Gateway, from, until time.Time) {
	t.Helper()
	time.Sleep(time.Until(from))
	held, release := holdEspgwIKE(t, l)
	if err := testutil.Poll(time.Until(until), func() (bool, error) {
		if held() == 0 {
			return false, fmt.Errorf("espgw sent no IKE message")
		}
		return true, nil
	}); err != nil {
		t.Fatalf("waiting for espgw's rekey: %v", err)
	}
	rekeyed := make(chan error, 1)
	go func() { // swanctl waits for the rekey to complete
		out, err := sw.Swanctl("--rekey", "--ike", "s2s")
		if err != nil {
			err = fmt.Errorf("swanctl --rekey --ike: %w\n%s", err, out)
		}
		rekeyed <- err
	}()
	t.Cleanup(func() { <-rekeyed })
	time.Sleep(300 * time.Millisecond) // strongSwan's request reaches espgw
	n := held()
	release()
	t.Logf("held back %d IKE messages of espgw while strongSwan started its IKE SA rekey", n)
}

// requireOneIKESA waits until strongSwan has exactly one IKE_SA, ESTABLISHED, not old, with
// one INSTALLED CHILD_SA, for a few seconds in a row, and checks that espgw's status names
// the same SPIs.
func requireOneIKESA(t *testing.T, sw *strongswan.Charon, g *espgwtest.Gateway, old strongswan.IKESA) strongswan.IKESA {
	t.Helper()
	var now strongswan.IKESA
	stable := 0
	err := testutil.Poll(60*time.Second, func() (bool, error) {
		sas, err := sw.ListSAs()
		if err != nil {
			return false, err
		}
		if len(sas) != 1 || sas[0].State != "ESTABLISHED" || sas[0].InitiatorSPI == old.InitiatorSPI ||
			len(sas[0].Children) != 1 || sas[0].Children[0].State != "INSTALLED" {
			stable = 0
			return false, fmt.Errorf("strongSwan has %d IKE_SAs (%+v), want one new ESTABLISHED with one INSTALLED CHILD_SA", len(sas), sas)
		}
		if sas[0].UniqueID != now.UniqueID {
			now, stable = sas[0], 0
		}
		if stable++; stable < 5 {
			return false, fmt.Errorf("strongSwan's IKE_SA #%d not stable yet", now.UniqueID)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%v\nespgw's log of the rekeys:\n%s\ncharon's:\n%s", err, rekeyLog(g.Log()), rekeyLog(sw.Log()))
	}
	// When espgw's answer to strongSwan's rekey was held back and espgw won, charon gives
	// its exchange up on espgw's Delete of the old SA; espgw forgets the SA it answered after
	// its retransmission timeout (28 s).
	err = testutil.Poll(45*time.Second, func() (bool, error) {
		ikes := g.MustStatus(t).ConnectionSAs(connName)
		if len(ikes) != 1 || ikes[0].InitiatorCookie != fmt.Sprintf("%016x", now.InitiatorSPI) || ikes[0].ResponderCookie != fmt.Sprintf("%016x", now.ResponderSPI) {
			return false, fmt.Errorf("espgw has IKE SAs %+v, want one: strongSwan's %016x/%016x", ikes, now.InitiatorSPI, now.ResponderSPI)
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("%v\nespgw's log of the rekeys:\n%s", err, rekeyLog(g.Log()))
	}
	return now
}

// rekeyLog is the lines of a log about IKE and child SAs coming and going.
func rekeyLog(log string) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "level=DEBUG") && !strings.Contains(line, "[ESP]") && !strings.Contains(line, "[NET]") &&
			(strings.Contains(line, "IKE") || strings.Contains(line, "CHILD")) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// collisionLog is what charon logged of the rekey collision.
func collisionLog(sw *strongswan.Charon) string {
	var out []string
	for _, line := range strings.Split(sw.Log(), "\n") {
		if strings.Contains(line, "collision") || strings.Contains(line, "TEMPORARY_FAILURE") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestIKEv2RekeyCollisions: strongSwan rekeys the IKE SA (swanctl --rekey) while espgw's
// own rekey is in flight: of the IKE SA (by its 40 s ike.lifetime; RFC 7296 2.8.2, the
// lowest nonce decides which new SA goes) or of the child SA (by its 90 s lifetime; 2.25.2,
// TEMPORARY_FAILURE and a retry). Under pings at 5/s, strongSwan ends with exactly one new
// IKE_SA, the same as espgw's, its CHILD_SA INSTALLED (the same SPIs after the IKE SA
// collision, new ones after the child's rekey), charon logged the collision, and at most
// 1 % of the pings are lost.
func TestIKEv2RekeyCollisions(t *testing.T) {
	for _, tt := range []struct {
		name         string
		tweak        func(*strongswan.Config, *espgwtest.Connection)
		espgwRekeyAt time.Duration // earliest
		childRekeyed bool
		charonSays   string // in its log: it saw the collision
	}{
		{"IKE SA by both", func(_ *strongswan.Config, c *espgwtest.Connection) { c.IKELifetime = "40s" }, 34 * time.Second, false,
			"detected IKE_REKEY collision with IKE_REKEY"},
		// 90 s: the retries after TEMPORARY_FAILURE end well before the hard lifetime.
		{"child SA by espgw", func(_ *strongswan.Config, c *espgwtest.Connection) { c.Tunnels[0].Lifetime = "90s" }, 76500 * time.Millisecond, true,
			"received TEMPORARY_FAILURE notify error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			sw, g := startV2(t, l, v2Sets[1], labPSK, "manual", tt.tweak)
			before, child, _, _ := negotiate(t, g, sw, byEspgwUp)
			established := time.Now()
			pings := startPings(l.gw, serviceAddr, 200*time.Millisecond, hostAddr)
			// Holding from well before espgw's rekey costs nothing (no other IKE traffic, no liveness
			// checks) and leaves room for a late return of negotiate on a loaded machine.
			crossRekeys(t, l, sw, g, established.Add(tt.espgwRekeyAt-10*time.Second), established.Add(tt.espgwRekeyAt+15*time.Second))
			after := requireOneIKESA(t, sw, g, before)
			sent, lost := pings.Stop()
			if same := after.Children[0].SPIIn == child.SPIIn; same == tt.childRekeyed {
				t.Errorf("CHILD_SA %08x/%08x is now %08x/%08x; want it rekeyed: %v", child.SPIIn, child.SPIOut,
					after.Children[0].SPIIn, after.Children[0].SPIOut, tt.childRekeyed)
			}
			if err := testutil.Ping(l.host, hostAddr, serviceAddr, 2); err != nil {
				t.Error(err)
			}
			log := collisionLog(sw)
			if !strings.Contains(log, tt.charonSays) {
				t.Errorf("charon's log lacks %q; its log of the rekeys:\n%s", tt.charonSays, rekeyLog(sw.Log()))
			}
			t.Logf("IKE_SA %016x_i -> %016x_i (strongSwan initiator: %v), CHILD_SA %08x -> %08x; %d pings at 5/s, %d lost; charon:\n%s",
				before.InitiatorSPI, after.InitiatorSPI, after.Initiator, child.SPIIn, after.Children[0].SPIIn, sent, lost, log)
			if sent == 0 || lost*100 > sent {
				t.Errorf("%d of %d pings lost across the rekeys, want at most 1 %%", lost, sent)
			}
		})
	}
}
