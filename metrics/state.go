package metrics

import (
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TunnelState is the state of one configured tunnel.
type TunnelState struct {
	Connection, Tunnel string
	Up                 bool      // an SA pair is installed
	Expiry             time.Time // hard expiry of the newest installed SA pair; zero: none or no time limit
	// LastInbound is when the tunnel's inbound packet counter was last seen rising (sampled
	// at every scrape); zero: not yet.
	LastInbound time.Time
	// OneSided: the newest SA pair sends and receives nothing while the peer answers DPD.
	OneSided bool
}

// ConnState is the state of one configured connection's IKE SA.
type ConnState struct {
	Connection string
	IKESAUp    bool
	DPD        string    // one of DPDStates
	LastDPDAck time.Time // zero unless DPD runs
}

// DPDStates are the values of espgw_ike_dpd_state's state label (ike.DPDStates).
var DPDStates = []string{"off", "alive", "probing"}

// ESPDropReasons are the values of espgw_esp_drops_total's reason label: the userspace
// datapath's reasons, which the xfrm datapath maps the kernel's XFRM statistics onto, and
// "other" for anything else.
var ESPDropReasons = []string{"malformed", "unknown_spi", "replay", "icv", "trailer", "selector", "expired",
	"queue_full", "too_big", "no_policy", "no_sa", "send", "other"}

// StateSource reports tunnel and IKE SA state at scrape time.
type StateSource interface {
	TunnelStates() ([]TunnelState, error)
	ConnStates() ([]ConnState, error)
}

// DropSource reports the datapath's ESP drops by reason (see ESPDropReasons).
type DropSource interface {
	DropCounts() (map[string]uint64, error)
}

var (
	tunnelUp = gaugeFamily("espgw_tunnel_up",
		"1 while the tunnel has an SA pair installed, else 0.", policyLabels...)
	tunnelExpiry = gaugeFamily("espgw_tunnel_sa_expiry_timestamp_seconds",
		"When the newest SA pair of the tunnel reaches its hard lifetime (Unix time); absent while the tunnel is down.", policyLabels...)
	tunnelLastIn = gaugeFamily("espgw_tunnel_last_inbound_timestamp_seconds",
		"When the tunnel's inbound ESP packet count was last seen rising (Unix time, sampled at each scrape).", policyLabels...)
	tunnelOneSided = gaugeFamily("espgw_tunnel_one_sided",
		"1 while the tunnel's newest SA pair has sent ESP and received none for two checks in a row, the peer answering IKE meanwhile (espgw re-keys it, at most every 10 minutes), else 0.", policyLabels...)
	ikeSAUp = gaugeFamily("espgw_ike_sa_up",
		"1 while the connection has an established IKE SA, else 0.", "connection")
	dpdState = gaugeFamily("espgw_ike_dpd_state",
		"Dead peer detection of the connection's newest IKE SA: 1 for the current state (off, alive: last R-U-THERE acknowledged within dpd_delay, probing: not), 0 for the others.",
		"connection", "state")
	dpdLastAck = gaugeFamily("espgw_ike_dpd_last_ack_timestamp_seconds",
		"When the peer last acknowledged an R-U-THERE (or DPD started) on the newest IKE SA (Unix time); absent while DPD is off.",
		"connection")
	espDrops = counterFamily("espgw_esp_drops_total",
		"ESP and tunnel packets the datapath dropped, by reason. With datapath xfrm these are the kernel's XFRM statistics of espgw's network namespace.",
		"reason")
)

// StateCollector is a prometheus.Collector over a StateSource and a DropSource; either may be nil.
type StateCollector struct {
	state StateSource
	drops DropSource
}

// NewStateCollector returns a StateCollector.
func NewStateCollector(state StateSource, drops DropSource) *StateCollector {
	return &StateCollector{state: state, drops: drops}
}

func (c *StateCollector) families() []*family {
	return []*family{tunnelUp, tunnelExpiry, tunnelLastIn, tunnelOneSided, ikeSAUp, dpdState, dpdLastAck, espDrops}
}

// Describe implements prometheus.Collector.
func (c *StateCollector) Describe(ch chan<- *prometheus.Desc) { describe(c, ch) }

// Collect implements prometheus.Collector. A failing source fails the scrape with its error.
func (c *StateCollector) Collect(ch chan<- prometheus.Metric) { collect(c, ch) }

func (c *StateCollector) expose(s sink) {
	if c.state != nil {
		c.exposeTunnels(s)
		c.exposeConns(s)
	}
	if c.drops != nil {
		c.exposeDrops(s)
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func (c *StateCollector) exposeTunnels(s sink) {
	ts, err := c.state.TunnelStates()
	if err != nil {
		s.fail(tunnelUp, fmt.Errorf("read tunnel state: %w", err))
		return
	}
	for _, t := range ts {
		s.sample(tunnelUp, boolGauge(t.Up), labelValues{t.Connection, t.Tunnel})
	}
	for _, t := range ts {
		s.sample(tunnelOneSided, boolGauge(t.OneSided), labelValues{t.Connection, t.Tunnel})
	}
	for _, t := range ts {
		if t.Up && !t.Expiry.IsZero() {
			s.sample(tunnelExpiry, unixSeconds(t.Expiry), labelValues{t.Connection, t.Tunnel})
		}
	}
	for _, t := range ts {
		if !t.LastInbound.IsZero() {
			s.sample(tunnelLastIn, unixSeconds(t.LastInbound), labelValues{t.Connection, t.Tunnel})
		}
	}
}

func (c *StateCollector) exposeConns(s sink) {
	cs, err := c.state.ConnStates()
	if err != nil {
		s.fail(ikeSAUp, fmt.Errorf("read IKE SA state: %w", err))
		return
	}
	for _, c := range cs {
		s.sample(ikeSAUp, boolGauge(c.IKESAUp), labelValues{c.Connection})
	}
	for _, c := range cs {
		for _, st := range DPDStates {
			s.sample(dpdState, boolGauge(st == c.DPD), labelValues{c.Connection, st})
		}
	}
	for _, c := range cs {
		if !c.LastDPDAck.IsZero() {
			s.sample(dpdLastAck, unixSeconds(c.LastDPDAck), labelValues{c.Connection})
		}
	}
}

func (c *StateCollector) exposeDrops(s sink) {
	counts, err := c.drops.DropCounts()
	if err != nil {
		s.fail(espDrops, fmt.Errorf("read ESP drops: %w", err))
		return
	}
	sums := make(map[string]uint64, len(ESPDropReasons))
	for r, n := range counts {
		if !slices.Contains(ESPDropReasons, r) {
			r = "other"
		}
		sums[r] += n
	}
	for _, r := range ESPDropReasons {
		s.sample(espDrops, float64(sums[r]), labelValues{r})
	}
}
