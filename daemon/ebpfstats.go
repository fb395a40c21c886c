package daemon

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/espgw/espgw/metrics"
)

var _ metrics.EBPFSource = (*ebpfProgs)(nil)

// names returns the connection and tunnel of classifier policy id, empty if it is gone.
func (e *ebpfProgs) names(id uint32) (conn, tunnel string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.policies[id]
	return p.conn, p.tunnel
}

// tunnelCounters are a tunnel's policy counters with its names.
type tunnelCounters struct {
	conn, tunnel string
	PolicyCounters
}

// policyCounters returns the counters of every tunnel's policies by reqid, with its MSS
// clamp. While a tunnel's policy is being replaced it has two; their counters are summed.
func (e *ebpfProgs) policyCounters() (map[uint32]tunnelCounters, error) {
	cs, err := e.l.PolicyCounters()
	if err != nil {
		return nil, fmt.Errorf("ebpf: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[uint32]tunnelCounters, len(cs))
	for id, c := range cs {
		p, ok := e.policies[id]
		if !ok {
			continue
		}
		t := out[p.reqID]
		t.conn, t.tunnel = p.conn, p.tunnel
		t.PacketsOut += c.Out.Packets
		t.BytesOut += c.Out.Bytes
		t.PacketsIn += c.In.Packets
		t.BytesIn += c.In.Bytes
		t.SADownDrops += c.SADownDrops
		t.SADownPasses += c.SADownPasses
		t.MSSRewrites += c.MSSRewrites
		t.Events += c.Events
		if sa, up := e.sas[p.reqID]; up {
			t.MSS = e.clampMSS(p, sa)
		}
		out[p.reqID] = t
	}
	return out, nil
}

// PolicyStats implements metrics.EBPFSource.
func (e *ebpfProgs) PolicyStats() ([]metrics.PolicyStat, error) {
	cs, err := e.policyCounters()
	if err != nil {
		return nil, err
	}
	var out []metrics.PolicyStat
	for _, c := range cs {
		out = append(out, metrics.PolicyStat{Connection: c.conn, Tunnel: c.tunnel,
			SADownDrops: c.SADownDrops, SADownPasses: c.SADownPasses, MSSRewrites: c.MSSRewrites, Events: c.Events})
	}
	slices.SortFunc(out, func(a, b metrics.PolicyStat) int {
		return cmp.Or(cmp.Compare(a.Connection, b.Connection), cmp.Compare(a.Tunnel, b.Tunnel))
	})
	return out, nil
}

// FilterStats implements metrics.EBPFSource.
func (e *ebpfProgs) FilterStats() (metrics.FilterStats, error) {
	x, err := e.l.XDPCounters()
	if err != nil {
		return metrics.FilterStats{}, fmt.Errorf("ebpf: %w", err)
	}
	return metrics.FilterStats{UnknownSPIDrops: x.UnknownSPIDrops, UnknownSPIPasses: x.UnknownSPIPasses,
		NonPeerDrops: x.NonPeerDrops, NonPeerPasses: x.NonPeerPasses}, nil
}

// TopFlows implements metrics.EBPFSource.
func (e *ebpfProgs) TopFlows(n int) ([]metrics.FlowStat, error) {
	fs, err := e.topFlows(n)
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
func (e *ebpfProgs) topFlows(n int) ([]TopFlow, error) {
	fs, err := e.l.TopFlows(n)
	if err != nil {
		return nil, fmt.Errorf("ebpf: %w", err)
	}
	out := make([]TopFlow, len(fs))
	for i, f := range fs {
		conn, tunnel := e.names(f.PolicyID)
		out[i] = TopFlow{Connection: conn, Tunnel: tunnel, ReqID: e.reqID(f.PolicyID), Src: f.Src, Dst: f.Dst, Proto: f.Proto,
			SrcPort: f.SrcPort, DstPort: f.DstPort, Packets: f.Packets, Bytes: f.Bytes}
	}
	return out, nil
}

// status reports where the programs are attached and what the XDP filter counted.
func (e *ebpfProgs) status() EBPFStatus {
	st := EBPFStatus{Loaded: true, Attached: e.attached}
	f, err := e.FilterStats()
	if err != nil {
		st.CountersError = err.Error()
	}
	st.UnknownSPIDrops, st.UnknownSPIPasses = f.UnknownSPIDrops, f.UnknownSPIPasses
	st.NonPeerDrops, st.NonPeerPasses = f.NonPeerDrops, f.NonPeerPasses
	return st
}
