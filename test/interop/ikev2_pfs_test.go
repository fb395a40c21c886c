package interop

import (
	"testing"

	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// TestIKEv2PFSRefused: espgw's tunnel asks for PFS (aes256gcm16-modp2048), strongSwan's
// esp_proposals have no DH group. The first CHILD_SA comes with IKE_AUTH, which carries no
// KE for either side; strongSwan's rekey of it (CREATE_CHILD_SA without KE) is refused with
// NO_PROPOSAL_CHOSEN, strongSwan keeps the CHILD_SA it had, and espgw's doctor names both
// sides' proposals in swanctl syntax.
func TestIKEv2PFSRefused(t *testing.T) {
	t.Parallel()
	set := v2Sets[0]
	l := newLab(t)
	sw, g := startV2(t, l, set, labPSK, "manual", func(s *strongswan.Config, _ *espgwtest.Connection) { s.ESPProposals = "aes256gcm16" })
	_, before, _, _ := negotiate(t, g, sw, byStrongSwan)
	if out, err := sw.Swanctl("--rekey", "--child", "s2s"); err != nil {
		t.Fatalf("swanctl --rekey --child: %v\n%s", err, out)
	}
	sw.WaitLog(t, "received NO_PROPOSAL_CHOSEN notify", negotiationTimeout)
	_, after := sw.WaitInstalled(t, "s2s", negotiationTimeout)
	if after.SPIIn != before.SPIIn || after.SPIOut != before.SPIOut {
		t.Errorf("strongSwan's CHILD_SA %08x/%08x became %08x/%08x: want the refused rekey to leave it", before.SPIIn, before.SPIOut, after.SPIIn, after.SPIOut)
	}
	r := gwRun(t, g, "doctor", "-c", g.ConfigPath())
	requireLines(t, "espgw doctor", r.Stdout,
		`^WARN +negotiation +megatelecom: CREATE_CHILD_SA of api without the PFS our ESP proposals ask for \(peer sent no KE payload\): `+
			`no proposal chosen: we accept aes256gcm16-modp2048, peer offered esp:aes256gcm16 `,
		`^OK +tunnel +megatelecom/api: up, esp aes256gcm16, `)
}
