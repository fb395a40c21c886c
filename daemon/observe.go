package daemon

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/metrics"
)

// observer feeds what the IKE engine reports into the metrics.
type observer struct{ ev *metrics.Events }

var _ ike.Observer = observer{}

func (o observer) Negotiated(x ike.Outcome) {
	role := metrics.RoleResponder
	if x.Initiator {
		role = metrics.RoleInitiator
	}
	o.ev.Negotiation(x.Connection, string(x.Exchange), role, string(x.Result))
	if x.Rekey {
		o.ev.Rekey(x.Connection, x.Tunnel)
	}
}

func (o observer) Deleted(d ike.Deletion) {
	side := metrics.SideLocal
	if d.ByPeer {
		side = metrics.SidePeer
	}
	o.ev.Delete(d.Connection, d.Tunnel, side)
}

func (o observer) Received(conn string, at time.Time) { o.ev.Received(conn, at) }

// newEvents returns the event counters with the zero series of cfg's connections.
func newEvents(cfg *config.Config) *metrics.Events {
	results := make([]string, len(ike.Results))
	for i, r := range ike.Results {
		results[i] = string(r)
	}
	ev := metrics.NewEvents(results)
	ev.Configure(connTunnels(cfg))
	return ev
}

// connTunnels names cfg's connections, their phase-1 exchanges and tunnels for metrics.Events.
func connTunnels(cfg *config.Config) []metrics.ConnTunnels {
	var out []metrics.ConnTunnels
	for _, c := range cfg.Connections {
		ct := metrics.ConnTunnels{Connection: c.Name, Exchange: string(ike.ExchangeMain)}
		switch {
		case c.IKE.Version == 2:
			ct.Exchange = string(ike.ExchangeIKEv2)
		case c.IKE.Mode == model.ModeAggressive:
			ct.Exchange = string(ike.ExchangeAggressive)
		}
		for _, t := range c.Tunnels {
			ct.Tunnels = append(ct.Tunnels, t.Name)
		}
		ct.IKEVersion = c.IKE.Version
		out = append(out, ct)
	}
	return out
}

// expiry is when a child SA reaches its hard time limit; zero without one.
func expiry(sa *ike.ChildSA) time.Time {
	if sa.Lifetime <= 0 {
		return time.Time{}
	}
	return sa.Established.Add(sa.Lifetime)
}

// engineState is what the metrics read from the IKE engine (an *ike.Engine).
type engineState interface {
	Tunnels() []ike.TunnelInfo
	Liveness() []ike.Liveness
}

// stateSource implements metrics.StateSource from the installed child SAs and the engine.
type stateSource struct {
	k      *kernel
	engine engineState

	mu        sync.Mutex // serializes scrapes' sampling
	inPackets map[uint32]uint64
	lastIn    map[tunnelKey]time.Time
}

// stateCollector returns the collector of tunnel and IKE SA state and of the datapath's
// ESP drops, if the datapath counts them.
func (d *daemon) stateCollector() *metrics.StateCollector {
	var drops metrics.DropSource
	backend := d.dp
	if d.ebpf != nil {
		backend = d.ebpf.Backend()
	}
	if ds, ok := backend.(metrics.DropSource); ok {
		drops = ds
	}
	return metrics.NewStateCollector(&stateSource{k: d.kernel, engine: d.engine,
		inPackets: make(map[uint32]uint64), lastIn: make(map[tunnelKey]time.Time)}, drops)
}

// TunnelStates reports every configured tunnel. A tunnel's last inbound time is the scrape
// at which the packet counter of one of its inbound SAs was found higher than at the one
// before. SAs whose counters cannot be read are left out of that sampling only (SAStats
// reports the error), so that up stays true during a rekey.
func (s *stateSource) TunnelStates() ([]metrics.TunnelState, error) {
	s.k.mu.Lock()
	keys := slices.Collect(maps.Keys(s.k.tunnels))
	sas := slices.Collect(maps.Values(s.k.installed))
	s.k.mu.Unlock()
	slices.SortFunc(keys, func(a, b tunnelKey) int {
		return cmp.Or(cmp.Compare(a.conn, b.conn), cmp.Compare(a.tunnel, b.tunnel))
	})
	oneSided := make(map[tunnelKey]bool)
	for _, t := range s.engine.Tunnels() {
		oneSided[tunnelKey{t.Connection, t.Tunnel}] = !t.OneSidedSince.IsZero()
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	up := make(map[tunnelKey]time.Time) // newest expiry of an installed SA (zero: none)
	inPackets := make(map[uint32]uint64, len(sas))
	for _, sa := range sas {
		key := tunnelKey{sa.conn, sa.tunnel}
		if e, ok := up[key]; !ok || sa.expiry.After(e) {
			up[key] = sa.expiry
		}
		c, err := s.k.dp.Counters(sa.local, sa.spiIn)
		if err != nil {
			continue
		}
		if c.Packets > s.inPackets[sa.spiIn] {
			s.lastIn[key] = now
		}
		inPackets[sa.spiIn] = c.Packets
	}
	s.inPackets = inPackets
	out := make([]metrics.TunnelState, 0, len(keys))
	configured := make(map[tunnelKey]bool, len(keys))
	for _, key := range keys {
		exp, isUp := up[key]
		out = append(out, metrics.TunnelState{Connection: key.conn, Tunnel: key.tunnel, Up: isUp, Expiry: exp, LastInbound: s.lastIn[key],
			OneSided: isUp && oneSided[key]})
		configured[key] = true
	}
	for key := range s.lastIn {
		if !configured[key] {
			delete(s.lastIn, key)
		}
	}
	return out, nil
}

// ConnStates reports every configured connection's IKE SA and DPD state.
func (s *stateSource) ConnStates() ([]metrics.ConnState, error) {
	var out []metrics.ConnState
	for _, l := range s.engine.Liveness() {
		out = append(out, metrics.ConnState{Connection: l.Connection, IKESAUp: l.IKESAUp, DPD: string(l.DPD), LastDPDAck: l.LastDPDAck})
	}
	return out, nil
}
