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

	negotiations  *seriesSet
	ikeRekeys     *seriesSet
	childRekeys   *seriesSet
	ikeDeletes    *seriesSet
	childDeletes  *seriesSet
	lastIKEPacket *seriesSet
	connInfo      *seriesSet
}

// NewEvents returns Events whose negotiation counter knows results (success first).
func NewEvents(results []string) *Events {
	return &Events{
		results: results,
		negotiations: newSeriesSet(counterFamily("espgw_ike_negotiations_total",
			"Phase-1 (main, aggressive) and quick-mode negotiations that ended, by exchange, our role and result (success or a failure reason).",
			"connection", "exchange", "role", "result")),
		ikeRekeys: newSeriesSet(counterFamily("espgw_ike_sa_rekeys_total",
			"IKE SAs established while another one with the peer was up (reauthentication), by either side.",
			"connection")),
		childRekeys: newSeriesSet(counterFamily("espgw_child_sa_rekeys_total",
			"Child SAs installed while the tunnel already had one (rekey by either side).",
			"connection", "tunnel")),
		ikeDeletes: newSeriesSet(counterFamily("espgw_ike_sa_deletes_total",
			"Established IKE SAs deleted, by the side that caused it (local: lifetime, rekey, down, shutdown; peer: Delete, INITIAL-CONTACT, dead by DPD).",
			"connection", "side")),
		childDeletes: newSeriesSet(counterFamily("espgw_child_sa_deletes_total",
			"Installed child SAs deleted, by the side that caused it (local: lifetime, rekey, down, shutdown; peer: Delete, INITIAL-CONTACT, dead by DPD).",
			"connection", "tunnel", "side")),
		lastIKEPacket: newSeriesSet(gaugeFamily("espgw_ike_last_received_timestamp_seconds",
			"When the last IKE message from the peer's address arrived (Unix time).",
			"connection")),
		connInfo: newSeriesSet(gaugeFamily("espgw_connection_info",
			"1 for each configured connection, labelled with the IKE version it speaks (1 or 2).",
			"connection", "ike_version")),
	}
}

func (e *Events) sets() []*seriesSet {
	return []*seriesSet{e.negotiations, e.ikeRekeys, e.childRekeys, e.ikeDeletes, e.childDeletes, e.lastIKEPacket, e.connInfo}
}

func (e *Events) families() []*family {
	var fs []*family
	for _, s := range e.sets() {
		fs = append(fs, s.fam)
	}
	return fs
}

func (e *Events) expose(s sink) {
	for _, set := range e.sets() {
		set.expose(s)
	}
}

// Describe implements prometheus.Collector.
func (e *Events) Describe(ch chan<- *prometheus.Desc) { describe(e, ch) }

// Collect implements prometheus.Collector.
func (e *Events) Collect(ch chan<- prometheus.Metric) { collect(e, ch) }

// Configure creates the zero series of conns and removes every series of the connections
// the previous Configure named that are not among them. Calls must not overlap.
func (e *Events) Configure(conns []ConnTunnels) {
	keep := make(map[string]bool)
	for _, c := range conns {
		keep[c.Connection] = true
		for _, x := range []string{c.Exchange, "quick"} {
			for _, role := range []string{RoleInitiator, RoleResponder} {
				for _, r := range e.results {
					e.negotiations.add(0, c.Connection, x, role, r)
				}
			}
		}
		e.connInfo.deleteConnection(c.Connection) // a reload may change the version
		e.connInfo.set(1, c.Connection, strconv.Itoa(int(max(c.IKEVersion, 1))))
		e.ikeRekeys.add(0, c.Connection)
		for _, side := range []string{SideLocal, SidePeer} {
			e.ikeDeletes.add(0, c.Connection, side)
			for _, t := range c.Tunnels {
				e.childDeletes.add(0, c.Connection, t, side)
			}
		}
		for _, t := range c.Tunnels {
			e.childRekeys.add(0, c.Connection, t)
		}
	}
	for conn := range e.configured {
		if !keep[conn] {
			for _, set := range e.sets() {
				set.deleteConnection(conn)
			}
		}
	}
	e.configured = keep
}

// Negotiation counts one ended negotiation.
func (e *Events) Negotiation(conn, exchange, role, result string) {
	e.negotiations.add(1, conn, exchange, role, result)
}

// Rekey counts a rekey of the connection's IKE SA (tunnel "") or of a tunnel's child SA.
func (e *Events) Rekey(conn, tunnel string) {
	if tunnel == "" {
		e.ikeRekeys.add(1, conn)
		return
	}
	e.childRekeys.add(1, conn, tunnel)
}

// Delete counts a deleted IKE SA (tunnel "") or child SA, by side (SideLocal, SidePeer).
func (e *Events) Delete(conn, tunnel, side string) {
	if tunnel == "" {
		e.ikeDeletes.add(1, conn, side)
		return
	}
	e.childDeletes.add(1, conn, tunnel, side)
}

// Received records the arrival of an IKE message from the connection's peer.
func (e *Events) Received(conn string, at time.Time) {
	e.lastIKEPacket.set(unixSeconds(at), conn)
}
