package interop

import (
	"regexp"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// startSwan runs a strongSwan partner (charon, IKEv1, kernel-libipsec) in ns. If the test
// fails, charon's negotiation lines are logged: the harness's own log tail is mostly the
// vici chatter of the tests' swanctl --list-sas polling.
func startSwan(t *testing.T, ns *testutil.NetNS, local, remote, psk string, set proposalSet, localTS, remoteTS string) *strongswan.Charon {
	t.Helper()
	c := strongswan.Start(t, ns, strongswan.Config{
		LocalAddr: local, RemoteAddr: remote, PSK: psk,
		IKEProposals: set.ike, ESPProposals: set.esp, LocalTS: localTS, RemoteTS: remoteTS,
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("charon in netns %s, negotiation log:\n%s", ns.Name(), charonEvents(c.Log(), 100))
		}
	})
	return c
}

// charonEvents returns the last n lines of a charon log about IKE, CHILD_SAs, ESP and the
// kernel interface, without key dumps.
func charonEvents(log string, n int) string {
	var keep []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, " => ") || hexDump.MatchString(l) {
			continue
		}
		if strings.Contains(l, "[IKE]") || strings.Contains(l, "[CHD]") || strings.Contains(l, "[ESP]") ||
			strings.Contains(l, "[KNL]") || strings.Contains(l, "[ENC]") || strings.Contains(l, "[NET]") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep[max(0, len(keep)-n):], "\n")
}

// hexDump matches the continuation lines of charon's chunk dumps.
var hexDump = regexp.MustCompile(`\]\s+(<[^>]*> )?\s*\d+: [0-9A-F]{2} `)
