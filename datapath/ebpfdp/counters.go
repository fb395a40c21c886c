package ebpfdp

import (
	"fmt"

	"github.com/espgw/espgw/loader"
)

// TunnelCounters are what the classifier counted for one tunnel's policies. Out counts
// traffic into the tunnel while its SA is up, In the traffic that came out of it.
type TunnelCounters struct {
	PacketsOut, BytesOut uint64
	PacketsIn, BytesIn   uint64
	SADownDrops          uint64 // dropped while the SA was not up (fail closed)
	SADownPasses         uint64 // passed on while the SA was not up
	MSSRewrites          uint64 // SYN and SYN-ACK segments whose MSS was lowered
	Events               uint64 // interesting-traffic events that asked for negotiation
	MSS                  uint16 // the clamp in force; 0 = none
}

// TunnelCounters returns the counters of every tunnel's policies by reqid, with its MSS
// clamp. While a tunnel's policy is being replaced it has two; their counters are summed.
func (d *Datapath) TunnelCounters() (map[uint32]TunnelCounters, error) {
	cs, err := d.l.PolicyCounters()
	if err != nil {
		return nil, fmt.Errorf("ebpf: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[uint32]TunnelCounters, len(cs))
	for id, c := range cs {
		p, ok := d.policies[id]
		if !ok {
			continue
		}
		t := out[p.ReqID]
		t.PacketsOut += c.Out.Packets
		t.BytesOut += c.Out.Bytes
		t.PacketsIn += c.In.Packets
		t.BytesIn += c.In.Bytes
		t.SADownDrops += c.SADownDrops
		t.SADownPasses += c.SADownPasses
		t.MSSRewrites += c.MSSRewrites
		t.Events += c.Events
		if sa, up := d.current(p.ReqID); up {
			t.MSS = d.clampMSS(p, sa)
		}
		out[p.ReqID] = t
	}
	return out, nil
}

// Flow is the traffic of one 5-tuple through the tunnel with ReqID (0 if it is gone).
type Flow struct {
	loader.Flow5
	ReqID          uint32
	Packets, Bytes uint64
}

// TopFlows returns the n flows with the most bytes, most first.
func (d *Datapath) TopFlows(n int) ([]Flow, error) {
	fs, err := d.l.TopFlows(n)
	if err != nil {
		return nil, fmt.Errorf("ebpf: %w", err)
	}
	out := make([]Flow, len(fs))
	for i, f := range fs {
		out[i] = Flow{Flow5: f.Flow5, ReqID: d.reqID(f.PolicyID), Packets: f.Packets, Bytes: f.Bytes}
	}
	return out, nil
}

// XDPCounters returns what the XDP filter counted.
func (d *Datapath) XDPCounters() (loader.XDPCounters, error) {
	x, err := d.l.XDPCounters()
	if err != nil {
		return loader.XDPCounters{}, fmt.Errorf("ebpf: %w", err)
	}
	return x, nil
}

// InboundPackets returns the ESP packets the XDP program saw per installed inbound SPI.
func (d *Datapath) InboundPackets() (map[uint32]uint64, error) {
	cs, err := d.l.SACounters(loader.Inbound)
	if err != nil {
		return nil, fmt.Errorf("ebpf: %w", err)
	}
	out := make(map[uint32]uint64, len(cs))
	for spi, c := range cs {
		out[spi] = c.Packets
	}
	return out, nil
}
