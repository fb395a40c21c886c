//go:build vmtest

package kernel

import (
	"testing"

	"github.com/espgw/espgw/internal/testutil/espgwtest"
)

// The connection and tunnel every espgw of the suite runs.
const connName, tunnelName = "lab", "net"

// gwConfig is one espgw configuration: connection lab with tunnel net between two lab sites,
// on the xfrm datapath unless Datapath says otherwise.
type gwConfig struct {
	Datapath     string // "" = xfrm
	IKEVersion   int    // ike.version: 2 for IKEv2; 0 = IKEv1
	Local, Peer  *site
	PSK          string
	IKEProposal  string // strongSwan keyword, e.g. 3des-sha1-modp1024 (IKEv2: aes128gcm16-prfsha256-ecp256)
	ESPProposal  string
	NATTraversal string // off, force or auto
	Lifetime     string // tunnel lifetime, e.g. 8h; "" = espgwtest's default
	IKELifetime  string // ike.lifetime, e.g. 2m; "" = espgwtest's default
	Start        string // always, on-demand or manual
	NoEBPF       bool   // ebpf: {enabled: false}: spares the verifier's seconds under TCG
}

// at is cfg for the gateway at site me facing peer, starting the tunnel as start says.
func (cfg gwConfig) at(me, peer *site, start string) gwConfig {
	cfg.Local, cfg.Peer, cfg.Start = me, peer, start
	return cfg
}

// startEspgw runs `espgw run` for cfg in cfg.Local's namespace (see espgwtest.Start).
func startEspgw(tb testing.TB, cfg gwConfig) *espgwtest.Gateway {
	tb.Helper()
	if cfg.Datapath == "" {
		cfg.Datapath = "xfrm"
	}
	return espgwtest.Start(tb, cfg.Local.ns, espgwtest.Config{
		Datapath: cfg.Datapath, NoEBPF: cfg.NoEBPF,
		Connections: []espgwtest.Connection{{
			Name: connName, Local: cfg.Local.outer.String(), Remote: cfg.Peer.outer.String(), PSK: cfg.PSK,
			IKEVersion: cfg.IKEVersion, IKEProposal: cfg.IKEProposal, IKELifetime: cfg.IKELifetime, NATTraversal: cfg.NATTraversal,
			Tunnels: []espgwtest.Tunnel{{
				Name: tunnelName, LocalSubnet: cfg.Local.subnets(), RemoteSubnet: cfg.Peer.subnets(),
				ESPProposal: cfg.ESPProposal, Lifetime: cfg.Lifetime, Start: cfg.Start,
			}},
		}},
	})
}
