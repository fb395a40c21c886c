package interop

import (
	"testing"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// startSwan runs a strongSwan partner (charon, IKEv1, kernel-libipsec) in ns. If the test
// fails, the harness logs the end of charon's log.
func startSwan(t *testing.T, ns *testutil.NetNS, local, remote, psk string, set proposalSet, localTS, remoteTS string) *strongswan.Charon {
	t.Helper()
	return strongswan.Start(t, ns, strongswan.Config{
		LocalAddr: local, RemoteAddr: remote, PSK: psk,
		IKEProposals: set.ike, ESPProposals: set.esp, LocalTS: localTS, RemoteTS: remoteTS,
	})
}
