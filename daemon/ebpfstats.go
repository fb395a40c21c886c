package daemon

import (
	"cmp"
	"slices"

	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/metrics"
)

// ebpfSource implements metrics.EBPFSource: the eBPF programs' counters, named after the
// tunnels whose policies the daemon installed.
type ebpfSource struct{ d *daemon }

var _ metrics.EBPFSource = ebpfSource{}

// tunnelsByReqID indexes the installed policies' tunnels by reqid, for naming what the
// programs counted per reqid (one pass, not one per counter).
func (d *daemon) tunnelsByReqID() map[uint32]ike.TunnelInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := make(map[uint32]ike.TunnelInfo, len(d.policies))
	for _, t := range d.policies {
		m[t.ReqID] = t
	}
	return m
}

// PolicyStats implements metrics.EBPFSource.
func (s ebpfSource) PolicyStats() ([]metrics.PolicyStat, error) {
	cs, err := s.d.ebpf.TunnelCounters()
	if err != nil {
		return nil, err
	}
	tunnels := s.d.tunnelsByReqID()
	out := make([]metrics.PolicyStat, 0, len(cs))
	for reqID, c := range cs {
		t := tunnels[reqID] // zero: the policy is gone
		out = append(out, metrics.PolicyStat{Connection: t.Connection, Tunnel: t.Tunnel,
			SADownDrops: c.SADownDrops, SADownPasses: c.SADownPasses, MSSRewrites: c.MSSRewrites, Events: c.Events})
	}
	slices.SortFunc(out, func(a, b metrics.PolicyStat) int {
		return cmp.Or(cmp.Compare(a.Connection, b.Connection), cmp.Compare(a.Tunnel, b.Tunnel))
	})
	return out, nil
}

// FilterStats implements metrics.EBPFSource.
func (s ebpfSource) FilterStats() (metrics.FilterStats, error) {
	x, err := s.d.ebpf.XDPCounters()
	if err != nil {
		return metrics.FilterStats{}, err
	}
	return metrics.FilterStats{UnknownSPIDrops: x.UnknownSPIDrops, UnknownSPIPasses: x.UnknownSPIPasses,
		NonPeerDrops: x.NonPeerDrops, NonPeerPasses: x.NonPeerPasses}, nil
}

// TopFlows implements metrics.EBPFSource.
func (s ebpfSource) TopFlows(n int) ([]metrics.FlowStat, error) {
	fs, err := s.d.topFlows(n)
	if err != nil {
		return nil, err
	}
	out := make([]metrics.FlowStat, len(fs))
	for i, f := range fs {
		out[i] = metrics.FlowStat{Connection: f.Connection, Tunnel: f.Tunnel, Src: f.Src, Dst: f.Dst, Proto: f.Proto,
			SrcPort: f.SrcPort, DstPort: f.DstPort, Bytes: f.Bytes, Packets: f.Packets}
	}
	return out, nil
}

// topFlows returns the n flows with the most bytes, named after their tunnels.
func (d *daemon) topFlows(n int) ([]control.TopFlow, error) {
	fs, err := d.ebpf.TopFlows(n)
	if err != nil {
		return nil, err
	}
	tunnels := d.tunnelsByReqID()
	out := make([]control.TopFlow, len(fs))
	for i, f := range fs {
		t := tunnels[f.ReqID]
		out[i] = control.TopFlow{Connection: t.Connection, Tunnel: t.Tunnel, ReqID: f.ReqID, Src: f.Src, Dst: f.Dst, Proto: f.Proto,
			SrcPort: f.SrcPort, DstPort: f.DstPort, Packets: f.Packets, Bytes: f.Bytes}
	}
	return out, nil
}

// ebpfStatus reports where the programs are attached and what the XDP filter counted.
func (d *daemon) ebpfStatus() control.EBPFStatus {
	if d.ebpf == nil {
		return control.EBPFStatus{Reason: d.ebpfOff}
	}
	st := control.EBPFStatus{Loaded: true, Attached: d.ebpfAttached}
	f, err := ebpfSource{d}.FilterStats()
	if err != nil {
		st.CountersError = err.Error()
	}
	st.UnknownSPIDrops, st.UnknownSPIPasses = f.UnknownSPIDrops, f.UnknownSPIPasses
	st.NonPeerDrops, st.NonPeerPasses = f.NonPeerDrops, f.NonPeerPasses
	return st
}
