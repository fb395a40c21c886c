package interop

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
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

// installedAtPeer returns strongSwan's INSTALLED CHILD_SA for espgw's newest SA pair of the
// lab's tunnel (its inbound SPI is espgw's outbound one), or why there is none.
func installedAtPeer(g *espgwtest.Gateway, sw *strongswan.Charon) (strongswan.ChildSA, error) {
	st, err := g.Status()
	if err != nil {
		return strongswan.ChildSA{}, err
	}
	sas := st.TunnelSAs(connName, tunnelName)
	if len(sas) == 0 {
		return strongswan.ChildSA{}, fmt.Errorf("espgw has no SA pair of %s/%s", connName, tunnelName)
	}
	spi, err := strconv.ParseUint(sas[len(sas)-1].SPIOut, 16, 32)
	if err != nil {
		return strongswan.ChildSA{}, err
	}
	_, child, err := sw.InstalledChild(uint32(spi))
	return child, err
}
