package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values of the negotiation and deletion counters. The results are ike's fixed set
// (ike.Results); the daemon passes them through.
const (
	RoleInitiator = "initiator"
	RoleResponder = "responder"
	SideLocal     = "local"
	SidePeer      = "peer"
)

// ConnTunnels names a configured connection, its phase-1 exchange (main or aggressive) and
// its tunnels: Events creates their series at zero, so that rates and alerts see them
// before anything happens.
type ConnTunnels struct {
	Connection string
	IKEVersion uint8 // 1 or 2; 0 counts as 1
	Exchange   string
	Tunnels    []string
}

// Events counts what the IKE engine reports: negotiations by result, rekeys and deletes by
// side, and the time of the last IKE message from each peer. Its series are labelled with
// configured connection and tunnel names and fixed sets, and Configure drops those of
// connections that are no longer configured.
type Events struct {
	results    []string
	configured map[string]bool // by the last Configure

	negotiations  *prometheus.CounterVec
	ikeRekeys     *prometheus.CounterVec
	childRekeys   *prometheus.CounterVec
	ikeDeletes    *prometheus.CounterVec
	childDeletes  *prometheus.CounterVec
	lastIKEPacket *prometheus.GaugeVec
	connInfo      *prometheus.GaugeVec
}

// NewEvents returns Events whose negotiation counter knows results (success first).
func NewEvents(results []string) *Events {
	return &Events{
		results: results,
		negotiations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "espgw_ike_negotiations_total",
			Help: "Phase-1 (main, aggressive) and quick-mode negotiations that ended, by exchange, our role and result (success or a failure reason).",
		}, []string{"connection", "exchange", "role", "result"}),
		ikeRekeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "espgw_ike_sa_rekeys_total",
			Help: "IKE SAs established while another one with the peer was up (reauthentication), by either side.",
		}, []string{"connection"}),
		childRekeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "espgw_child_sa_rekeys_total",
			Help: "Child SAs installed while the tunnel already had one (rekey by either side).",
		}, []string{"connection", "tunnel"}),
		ikeDeletes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "espgw_ike_sa_deletes_total",
			Help: "Established IKE SAs deleted, by the side that caused it (local: lifetime, rekey, down, shutdown; peer: Delete, INITIAL-CONTACT, dead by DPD).",
		}, []string{"connection", "side"}),
		childDeletes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "espgw_child_sa_deletes_total",
			Help: "Installed child SAs deleted, by the side that caused it (local: lifetime, rekey, down, shutdown; peer: Delete, INITIAL-CONTACT, dead by DPD).",
		}, []string{"connection", "tunnel", "side"}),
		lastIKEPacket: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "espgw_ike_last_received_timestamp_seconds",
			Help: "When the last IKE message from the peer's address arrived (Unix time).",
		}, []string{"connection"}),
		connInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "espgw_connection_info",
			Help: "1 for each configured connection, labelled with the IKE version it speaks (1 or 2).",
		}, []string{"connection", "ike_version"}),
	}
}

func (e *Events) vecs() []prometheus.Collector {
	return []prometheus.Collector{e.negotiations, e.ikeRekeys, e.childRekeys, e.ikeDeletes, e.childDeletes, e.lastIKEPacket, e.connInfo}
}

// Describe implements prometheus.Collector.
func (e *Events) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range e.vecs() {
		v.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (e *Events) Collect(ch chan<- prometheus.Metric) {
	for _, v := range e.vecs() {
		v.Collect(ch)
	}
}

// Configure creates the zero series of conns and removes every series of the connections
// the previous Configure named that are not among them. Calls must not overlap.
func (e *Events) Configure(conns []ConnTunnels) {
	keep := make(map[string]bool)
	for _, c := range conns {
		keep[c.Connection] = true
		for _, x := range []string{c.Exchange, "quick"} {
			for _, role := range []string{RoleInitiator, RoleResponder} {
				for _, r := range e.results {
					e.negotiations.WithLabelValues(c.Connection, x, role, r)
				}
			}
		}
		e.connInfo.DeletePartialMatch(prometheus.Labels{"connection": c.Connection}) // a reload may change the version
		e.connInfo.WithLabelValues(c.Connection, strconv.Itoa(int(max(c.IKEVersion, 1)))).Set(1)
		e.ikeRekeys.WithLabelValues(c.Connection)
		for _, side := range []string{SideLocal, SidePeer} {
			e.ikeDeletes.WithLabelValues(c.Connection, side)
			for _, t := range c.Tunnels {
				e.childDeletes.WithLabelValues(c.Connection, t, side)
			}
		}
		for _, t := range c.Tunnels {
			e.childRekeys.WithLabelValues(c.Connection, t)
		}
	}
	for conn := range e.configured {
		if !keep[conn] {
			for _, v := range []*prometheus.MetricVec{e.negotiations.MetricVec, e.ikeRekeys.MetricVec, e.childRekeys.MetricVec,
				e.ikeDeletes.MetricVec, e.childDeletes.MetricVec, e.lastIKEPacket.MetricVec, e.connInfo.MetricVec} {
				v.DeletePartialMatch(prometheus.Labels{"connection": conn})
			}
		}
	}
	e.configured = keep
}

// Negotiation counts one ended negotiation.
func (e *Events) Negotiation(conn, exchange, role, result string) {
	e.negotiations.WithLabelValues(conn, exchange, role, result).Inc()
}

// Rekey counts a rekey of the connection's IKE SA (tunnel "") or of a tunnel's child SA.
func (e *Events) Rekey(conn, tunnel string) {
	if tunnel == "" {
		e.ikeRekeys.WithLabelValues(conn).Inc()
		return
	}
	e.childRekeys.WithLabelValues(conn, tunnel).Inc()
}

// Delete counts a deleted IKE SA (tunnel "") or child SA, by side (SideLocal, SidePeer).
func (e *Events) Delete(conn, tunnel, side string) {
	if tunnel == "" {
		e.ikeDeletes.WithLabelValues(conn, side).Inc()
		return
	}
	e.childDeletes.WithLabelValues(conn, tunnel, side).Inc()
}

// Received records the arrival of an IKE message from the connection's peer.
func (e *Events) Received(conn string, at time.Time) {
	e.lastIKEPacket.WithLabelValues(conn).Set(float64(at.UnixNano()) / 1e9)
}
