// Package metrics exports espgw's counters to Prometheus. A Collector reads them at every
// scrape from two small interfaces the daemon implements: SASource (per-SA traffic, from the
// datapath) and EBPFSource (per-policy, XDP-filter and per-flow counters, from the loader),
// with the connection and tunnel names the daemon knows.
package metrics

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// SAStat is the traffic of one SA.
type SAStat struct {
	Connection, Tunnel string
	SPI                uint32
	Direction          string // "in" or "out"
	Bytes, Packets     uint64
}

// PolicyStat is what the eBPF programs counted for one tunnel's policy.
type PolicyStat struct {
	Connection, Tunnel string
	SADownDrops        uint64 // egress packets dropped while the SA was down
	SADownPasses       uint64 // egress packets passed in the clear while the SA was down
	MSSRewrites        uint64
	Events             uint64 // interesting-traffic (on-demand) events sent
}

// FilterStats is what the XDP filters counted.
type FilterStats struct {
	UnknownSPIDrops, UnknownSPIPasses uint64
	NonPeerDrops, NonPeerPasses       uint64
}

func (s SAStat) labels() labelValues {
	return labelValues{s.Connection, s.Tunnel, fmt.Sprintf("0x%08x", s.SPI), s.Direction}
}

// FlowStat is one of the top flows.
type FlowStat struct {
	Connection, Tunnel string
	Src, Dst           netip.Addr
	Proto              uint8
	SrcPort, DstPort   uint16
	Bytes, Packets     uint64
}

// SASource reports the traffic of every installed SA.
type SASource interface {
	SAStats() ([]SAStat, error)
}

// EBPFSource reports the eBPF programs' counters.
type EBPFSource interface {
	PolicyStats() ([]PolicyStat, error)
	FilterStats() (FilterStats, error)
	// TopFlows returns the n flows with the most bytes.
	TopFlows(n int) ([]FlowStat, error)
}

var (
	saLabels     = []string{"connection", "tunnel", "spi", "direction"}
	policyLabels = []string{"connection", "tunnel"}
	flowLabels   = []string{"connection", "tunnel", "src", "dst", "proto", "sport", "dport"}

	saBytes = counterFamily("espgw_sa_bytes_total",
		"Bytes carried by an SA (inbound: ESP packets received, outbound: packets sent into it).", saLabels...)
	saPackets = counterFamily("espgw_sa_packets_total",
		"Packets carried by an SA.", saLabels...)
	saDownDrops = counterFamily("espgw_policy_sa_down_drops_total",
		"Packets dropped because the tunnel's SA was not up (fail closed).", policyLabels...)
	saDownPasses = counterFamily("espgw_policy_sa_down_passes_total",
		"Packets passed in the clear because the tunnel's SA was not up (action pass).", policyLabels...)
	mssRewrites = counterFamily("espgw_policy_mss_rewrites_total",
		"TCP SYN and SYN-ACK segments whose MSS option was lowered.", policyLabels...)
	events = counterFamily("espgw_policy_ondemand_events_total",
		"Interesting-traffic events sent to start negotiation.", policyLabels...)
	xdpDrops = counterFamily("espgw_xdp_drops_total",
		"Packets dropped by the XDP filters, by reason (unknown_spi, non_peer).", "reason")
	xdpPasses = counterFamily("espgw_xdp_unfiltered_total",
		"Packets the XDP filters would drop but passed because the filter is off, by reason.", "reason")
	flowBytes = gaugeFamily("espgw_top_flow_bytes",
		"Bytes of one of the top flows through a tunnel.", flowLabels...)
	flowPackets = gaugeFamily("espgw_top_flow_packets",
		"Packets of one of the top flows through a tunnel.", flowLabels...)
)

// Collector is a prometheus.Collector over an SASource and an EBPFSource.
type Collector struct {
	sa   SASource
	ebpf EBPFSource
	topN int
}

// NewCollector returns a Collector; either source may be nil (no SAs, or no eBPF programs).
// topN is the number of flows exported.
func NewCollector(sa SASource, ebpf EBPFSource, topN int) *Collector {
	return &Collector{sa: sa, ebpf: ebpf, topN: topN}
}

func (c *Collector) families() []*family {
	return []*family{saBytes, saPackets, saDownDrops, saDownPasses, mssRewrites, events, xdpDrops, xdpPasses, flowBytes, flowPackets}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { describe(c, ch) }

// Collect implements prometheus.Collector. A failing source fails the scrape with its error.
func (c *Collector) Collect(ch chan<- prometheus.Metric) { collect(c, ch) }

func (c *Collector) expose(s sink) {
	if c.sa != nil {
		c.exposeSAs(s)
	}
	if c.ebpf != nil {
		c.exposePolicies(s)
		c.exposeFilters(s)
		c.exposeFlows(s)
	}
}

func (c *Collector) exposeSAs(s sink) {
	sas, err := c.sa.SAStats()
	if err != nil {
		s.fail(saBytes, fmt.Errorf("read SA counters: %w", err))
		return
	}
	for _, sa := range sas {
		s.sample(saBytes, float64(sa.Bytes), sa.labels())
	}
	for _, sa := range sas {
		s.sample(saPackets, float64(sa.Packets), sa.labels())
	}
}

func (c *Collector) exposePolicies(s sink) {
	ps, err := c.ebpf.PolicyStats()
	if err != nil {
		s.fail(saDownDrops, fmt.Errorf("read policy counters: %w", err))
		return
	}
	for _, f := range []struct {
		fam *family
		val func(PolicyStat) uint64
	}{
		{saDownDrops, func(p PolicyStat) uint64 { return p.SADownDrops }},
		{saDownPasses, func(p PolicyStat) uint64 { return p.SADownPasses }},
		{mssRewrites, func(p PolicyStat) uint64 { return p.MSSRewrites }},
		{events, func(p PolicyStat) uint64 { return p.Events }},
	} {
		for _, p := range ps {
			s.sample(f.fam, float64(f.val(p)), labelValues{p.Connection, p.Tunnel})
		}
	}
}

func (c *Collector) exposeFilters(s sink) {
	f, err := c.ebpf.FilterStats()
	if err != nil {
		s.fail(xdpDrops, fmt.Errorf("read XDP counters: %w", err))
		return
	}
	s.sample(xdpDrops, float64(f.UnknownSPIDrops), labelValues{"unknown_spi"})
	s.sample(xdpDrops, float64(f.NonPeerDrops), labelValues{"non_peer"})
	s.sample(xdpPasses, float64(f.UnknownSPIPasses), labelValues{"unknown_spi"})
	s.sample(xdpPasses, float64(f.NonPeerPasses), labelValues{"non_peer"})
}

func (c *Collector) exposeFlows(s sink) {
	if c.topN <= 0 {
		return
	}
	flows, err := c.ebpf.TopFlows(c.topN)
	if err != nil {
		s.fail(flowBytes, fmt.Errorf("read flows: %w", err))
		return
	}
	labels := make([]labelValues, len(flows))
	for i, f := range flows {
		labels[i] = labelValues{f.Connection, f.Tunnel, f.Src.String(), f.Dst.String(),
			strconv.Itoa(int(f.Proto)), strconv.Itoa(int(f.SrcPort)), strconv.Itoa(int(f.DstPort))}
	}
	for i, f := range flows {
		s.sample(flowBytes, float64(f.Bytes), labels[i])
	}
	for i, f := range flows {
		s.sample(flowPackets, float64(f.Packets), labels[i])
	}
}
