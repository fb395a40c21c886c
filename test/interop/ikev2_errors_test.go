package interop

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// v2Refusal is how one side refuses an IKEv2 negotiation and how each side reports it.
type v2Refusal struct {
	err    string // espgw's error (a regexp, whole)
	fix    string // the start of doctor's fix for it
	charon string // what charon logs
}

// TestIKEv2PeerErrors: failed IKEv2 negotiations with strongSwan, in both roles: IKE
// proposals that do not meet (NO_PROPOSAL_CHOSEN in IKE_SA_INIT), ESP proposals that do not
// (NO_PROPOSAL_CHOSEN for the CHILD_SA in IKE_AUTH) and subnets that do not
// (TS_UNACCEPTABLE). Whoever refuses, both sides say why: charon's log shows its refusal or
// the notification espgw sent; espgw's tunnel status and doctor give the cause in IKEv1's
// words (no proposal chosen with the offers in swanctl syntax, identity mismatch with the
// traffic selectors) and the fix. The partner installs no CHILD_SA.
func TestIKEv2PeerErrors(t *testing.T) {
	for _, tt := range []struct {
		name                      string
		tweak                     func(*strongswan.Config, *espgwtest.Connection)
		swanRefuses, espgwRefuses v2Refusal // espgw initiates, strongSwan does
	}{
		{"ike proposals", func(s *strongswan.Config, _ *espgwtest.Connection) { s.IKEProposals = "aes128gcm16-prfsha256-ecp256" },
			v2Refusal{`no proposal chosen: the peer accepted none of our IKE proposals for the IKE_SA_INIT \(NO_PROPOSAL_CHOSEN\); ours in swanctl syntax: aes256-sha256-prfsha256-modp2048`,
				"ask the partner which proposals they accept", "received proposals unacceptable"},
			v2Refusal{`IKE_SA_INIT from 192\.0\.2\.2:500: no proposal chosen: we accept aes256-sha256-prfsha256-modp2048, peer offered aes128gcm16-prfsha256-ecp256`,
				"add one of the partner's proposals (aes128gcm16-prfsha256-ecp256) to connections.megatelecom.ike.proposals",
				"received NO_PROPOSAL_CHOSEN notify error"}},
		{"esp proposals", func(s *strongswan.Config, _ *espgwtest.Connection) { s.ESPProposals = "aes128gcm16" },
			v2Refusal{`no proposal chosen: the peer accepted none of our ESP proposals for the CHILD_SA of api \(NO_PROPOSAL_CHOSEN\); ours in swanctl syntax: aes256gcm16-modp2048`,
				"ask the partner which proposals they accept", "no acceptable proposal found"},
			v2Refusal{`CHILD_SA of api: no proposal chosen: we accept aes256gcm16-modp2048, peer offered esp:aes128gcm16`,
				"add one of the partner's proposals (aes128gcm16) to connections.megatelecom.tunnels.api.proposals",
				"received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built"}},
		{"traffic selectors", func(s *strongswan.Config, _ *espgwtest.Connection) { s.LocalTS = "10.30.0.0/24" },
			v2Refusal{`identity mismatch: the peer answered CHILD_SA of api with TS_UNACCEPTABLE: it has no policy for our traffic selectors 10\.10\.1\.1/32 <-> 10\.20\.0\.0/24 \(tunnel api\)`,
				"compare local_id, remote_id and the tunnels' subnets", "traffic selectors 10.20.0.0/24 === 10.10.1.1/32 unacceptable"},
			v2Refusal{`identity mismatch: no tunnel of megatelecom has traffic selectors that fit the peer's \[10\.10\.1\.1/32\] <-> \[10\.30\.0\.0/24\] \(TS_UNACCEPTABLE\); ours: \[api: 10\.10\.1\.1/32 <-> 10\.20\.0\.0/24\]`,
				"compare local_id, remote_id and the tunnels' subnets", "received TS_UNACCEPTABLE notify, no CHILD_SA built"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inBothRoles(t, func(t *testing.T, initiator string) {
				l := newLab(t)
				sw, g := startV2(t, l, v2Sets[0], labPSK, "manual", tt.tweak)
				want := tt.espgwRefuses
				switch initiator {
				case byEspgwUp:
					want = tt.swanRefuses
					if err := g.Up(connName+"/"+tunnelName, negotiationTimeout); err == nil {
						t.Fatal("espgw up succeeded")
					}
				case byStrongSwan:
					if err := sw.Initiate("s2s", negotiationTimeout); err == nil {
						t.Fatal("swanctl --initiate succeeded")
					}
				}
				sw.WaitLog(t, want.charon, negotiationTimeout)
				var ts espgwtest.TunnelState
				err := testutil.Poll(10*time.Second, func() (bool, error) {
					ts, _ = g.MustStatus(t).Tunnel(connName, tunnelName)
					if ts.LastError == "" {
						return false, fmt.Errorf("tunnel %s/%s has no error", connName, tunnelName)
					}
					return true, nil
				})
				if err != nil || ts.State == "up" || !regexp.MustCompile("^"+want.err+"$").MatchString(ts.LastError) {
					t.Errorf("espgw tunnel: %s, last error %q; want down with %q (%v)", ts.State, ts.LastError, want.err, err)
				}
				requireLines(t, "espgw doctor", gwRun(t, g, "doctor", "-c", g.ConfigPath()).Stdout,
					`^FAIL +negotiation +megatelecom: `+want.err+` .*-> fix: `+regexp.QuoteMeta(want.fix))
				sas, err := sw.ListSAs()
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range sas {
					if len(s.Children) > 0 {
						t.Errorf("strongSwan has IKE_SA #%d with %d CHILD_SAs, want none", s.UniqueID, len(s.Children))
					}
				}
				t.Logf("espgw: %s; charon: %s", ts.LastError, want.charon)
			})
		})
	}
}
