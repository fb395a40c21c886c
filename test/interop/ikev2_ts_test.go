package interop

import (
	"slices"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// TestIKEv2TrafficSelectorLists: strongSwan's child SA lists two subnets per side, the one
// espgw's tunnel has second (local_ts = a,b remote_ts = c,d). Whoever initiates, the child
// SA is narrowed to espgw's tunnel (RFC 7296 2.9): strongSwan lists it INSTALLED with that
// one pair as its local and remote ts, and a ping passes both ways.
func TestIKEv2TrafficSelectorLists(t *testing.T) {
	for _, initiator := range []string{byStrongSwan, byEspgwUp} {
		t.Run(initiator, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			sw, g := startV2(t, l, v2Sets[1], labPSK, "manual", func(s *strongswan.Config, _ *espgwtest.Connection) {
				s.LocalTS, s.RemoteTS = "10.77.0.0/24,"+remoteSubnet, "10.78.0.0/24,"+localSubnet
			})
			_, swChild, _, sa := negotiate(t, g, sw, initiator)
			if !slices.Equal(swChild.LocalTS, []string{remoteSubnet}) || !slices.Equal(swChild.RemoteTS, []string{localSubnet}) {
				t.Errorf("strongSwan's CHILD_SA %s has local ts %v, remote ts %v; want [%s] and [%s] (narrowed to espgw's tunnel)",
					swChild.State, swChild.LocalTS, swChild.RemoteTS, remoteSubnet, localSubnet)
			}
			if sa.LocalSelector != localSubnet || sa.RemoteSelector != remoteSubnet {
				t.Errorf("espgw installed %s <-> %s, want %s <-> %s", sa.LocalSelector, sa.RemoteSelector, localSubnet, remoteSubnet)
			}
			if err := testutil.Ping(l.gw, serviceAddr, hostAddr, 3); err != nil {
				t.Error(err)
			}
			if err := testutil.Ping(l.host, hostAddr, serviceAddr, 3); err != nil {
				t.Error(err)
			}
			if initiator == byStrongSwan { // the wire is encrypted: charon's log says what it sent
				us, other := proposedTS(sw.Log(), "us"), proposedTS(sw.Log(), "other")
				if !slices.Equal(us, []string{"10.77.0.0/24", remoteSubnet}) || !slices.Equal(other, []string{"10.78.0.0/24", localSubnet}) {
					t.Errorf("strongSwan proposed TSi %v TSr %v, want two entries each (the test's premise)", us, other)
				}
			}
			t.Logf("strongSwan proposed %s <-> %s; CHILD_SA %s %v <-> %v", "10.77.0.0/24,"+remoteSubnet, "10.78.0.0/24,"+localSubnet,
				swChild.State, swChild.LocalTS, swChild.RemoteTS)
		})
	}
}

// proposedTS is the traffic selectors charon's log says it proposed "for us" or "for other"
// (one per line after the heading).
func proposedTS(log, who string) []string {
	var out []string
	lines := strings.Split(log, "\n")
	for i, line := range lines {
		if !strings.HasSuffix(line, "proposing traffic selectors for "+who+":") {
			continue
		}
		for _, next := range lines[i+1:] {
			_, sel, ok := strings.Cut(next, ">  ")
			if !ok {
				break
			}
			out = append(out, sel)
		}
		return out
	}
	return nil
}
