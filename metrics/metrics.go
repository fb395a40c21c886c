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

	saBytes = prometheus.NewDesc("espgw_sa_bytes_total",
		"Bytes carried by an SA (inbound: ESP packets received, outbound: packets sent into it).", saLabels, nil)
	saPackets = prometheus.NewDesc("espgw_sa_packets_total",
		"Packets carried by an SA.", saLabels, nil)
	saDownDrops = prometheus.NewDesc("espgw_policy_sa_down_drops_total",
		"Packets dropped because the tunnel's SA was not up (fail closed).", policyLabels, nil)
	saDownPasses = prometheus.NewDesc("espgw_policy_sa_down_passes_total",
		"Packets passed in the clear because the tunnel's SA was not up (action pass).", policyLabels, nil)
	mssRewrites = prometheus.NewDesc("espgw_policy_mss_rewrites_total",
		"TCP SYN and SYN-ACK segments whose MSS option was lowered.", policyLabels, nil)
	events = prometheus.NewDesc("espgw_policy_ondemand_events_total",
		"Interesting-traffic events sent to start negotiation.", policyLabels, nil)
	xdpDrops = prometheus.NewDesc("espgw_xdp_drops_total",
		"Packets dropped by the XDP filters, by reason (unknown_spi, non_peer).", []string{"reason"}, nil)
	xdpPasses = prometheus.NewDesc("espgw_xdp_unfiltered_total",
		"Packets the XDP filters would drop but passed because the filter is off, by reason.", []string{"reason"}, nil)
	flowBytes = prometheus.NewDesc("espgw_top_flow_bytes",
		"Bytes of one of the top flows through a tunnel.", flowLabels, nil)
	flowPackets = prometheus.NewDesc("espgw_top_flow_packets",
		"Packets of one of the top flows through a tunnel.", flowLabels, nil)
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

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{saBytes, saPackets, saDownDrops, saDownPasses, mssRewrites,
		events, xdpDrops, xdpPasses, flowBytes, flowPackets} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A failing source fails the scrape with its error.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.sa != nil {
		c.collectSAs(ch)
	}
	if c.ebpf != nil {
		c.collectPolicies(ch)
		c.collectFilters(ch)
		c.collectFlows(ch)
	}
}

func counter(d *prometheus.Desc, v uint64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func (c *Collector) collectSAs(ch chan<- prometheus.Metric) {
	sas, err := c.sa.SAStats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(saBytes, fmt.Errorf("read SA counters: %w", err))
		return
	}
	for _, s := range sas {
		spi := fmt.Sprintf("0x%08x", s.SPI)
		ch <- counter(saBytes, s.Bytes, s.Connection, s.Tunnel, spi, s.Direction)
		ch <- counter(saPackets, s.Packets, s.Connection, s.Tunnel, spi, s.Direction)
	}
}

func (c *Collector) collectPolicies(ch chan<- prometheus.Metric) {
	ps, err := c.ebpf.PolicyStats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(saDownDrops, fmt.Errorf("read policy counters: %w", err))
		return
	}
	for _, p := range ps {
		ch <- counter(saDownDrops, p.SADownDrops, p.Connection, p.Tunnel)
		ch <- counter(saDownPasses, p.SADownPasses, p.Connection, p.Tunnel)
		ch <- counter(mssRewrites, p.MSSRewrites, p.Connection, p.Tunnel)
		ch <- counter(events, p.Events, p.Connection, p.Tunnel)
	}
}

func (c *Collector) collectFilters(ch chan<- prometheus.Metric) {
	f, err := c.ebpf.FilterStats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(xdpDrops, fmt.Errorf("read XDP counters: %w", err))
		return
	}
	ch <- counter(xdpDrops, f.UnknownSPIDrops, "unknown_spi")
	ch <- counter(xdpDrops, f.NonPeerDrops, "non_peer")
	ch <- counter(xdpPasses, f.UnknownSPIPasses, "unknown_spi")
	ch <- counter(xdpPasses, f.NonPeerPasses, "non_peer")
}

func (c *Collector) collectFlows(ch chan<- prometheus.Metric) {
	if c.topN <= 0 {
		return
	}
	flows, err := c.ebpf.TopFlows(c.topN)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(flowBytes, fmt.Errorf("read flows: %w", err))
		return
	}
	for _, f := range flows {
		labels := []string{f.Connection, f.Tunnel, f.Src.String(), f.Dst.String(),
			strconv.Itoa(int(f.Proto)), strconv.Itoa(int(f.SrcPort)), strconv.Itoa(int(f.DstPort))}
		ch <- prometheus.MustNewConstMetric(flowBytes, prometheus.GaugeValue, float64(f.Bytes), labels...)
		ch <- prometheus.MustNewConstMetric(flowPackets, prometheus.GaugeValue, float64(f.Packets), labels...)
	}
}
