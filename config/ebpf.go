package config

import "math"

// SADownAction is what the eBPF guard does with traffic of a tunnel whose SA is not up.
type SADownAction string

const (
	SADownDrop SADownAction = "drop" // fail closed
	SADownPass SADownAction = "pass" // let it through to the datapath
)

// EBPF configures the eBPF programs (the ebpf: section): the tc classifier with its
// fail-closed guard, MSS clamp and counters, and the XDP filter on the WAN interface.
// The zero value is off; a file without the section gets DefaultEBPF.
type EBPF struct {
	Enabled bool
	// WANInterface carries IKE and ESP; "" = the interface routing to the first
	// connection's remote_address.
	WANInterface   string
	WhenSADown     SADownAction
	MSSClamp       bool
	PathMTU        int // of the WAN path, for the MSS clamp
	TopFlows       int // flows exported on /metrics
	DropUnknownSPI bool
	DropNonPeerIKE bool
}

// Defaults of the ebpf: section.
const (
	DefaultPathMTU  = 1500
	DefaultTopFlows = 10
	minPathMTU      = 1280 // below it no transform leaves room for a sensible MSS
	maxTopFlows     = 1000
)

// DefaultEBPF is the ebpf: section of a file that has none.
var DefaultEBPF = EBPF{
	Enabled: true, WhenSADown: SADownDrop, MSSClamp: true, PathMTU: DefaultPathMTU,
	TopFlows: DefaultTopFlows, DropUnknownSPI: true, DropNonPeerIKE: true,
}

var (
	ebpfKeys = []string{"enabled", "wan_interface", "when_sa_down", "mss_clamp", "path_mtu", "top_flows", "xdp"}
	xdpKeys  = []string{"drop_unknown_spi", "drop_non_peer_ike"}
)

func (d *decoder) ebpf(path string, v any) EBPF {
	e := DefaultEBPF
	m := d.object(path, v, ebpfKeys...)
	d.boolean(sub(path, "enabled"), m["enabled"], &e.Enabled)
	if s, ok := d.str(sub(path, "wan_interface"), m["wan_interface"], "an interface name such as eth0"); ok {
		e.WANInterface = s
	}
	if s, ok := d.str(sub(path, "when_sa_down"), m["when_sa_down"], "drop or pass"); ok {
		e.WhenSADown = SADownAction(s)
	}
	d.boolean(sub(path, "mss_clamp"), m["mss_clamp"], &e.MSSClamp)
	if n, ok := d.uint(sub(path, "path_mtu"), m["path_mtu"], math.MaxUint16, "an MTU in bytes (want e.g. 1500)"); ok {
		e.PathMTU = int(n)
	}
	if n, ok := d.uint(sub(path, "top_flows"), m["top_flows"], maxTopFlows, "a number of flows from 0 to 1000"); ok {
		e.TopFlows = int(n)
	}
	xdp := d.object(sub(path, "xdp"), m["xdp"], xdpKeys...)
	d.boolean(sub(path, "xdp.drop_unknown_spi"), xdp["drop_unknown_spi"], &e.DropUnknownSPI)
	d.boolean(sub(path, "xdp.drop_non_peer_ike"), xdp["drop_non_peer_ike"], &e.DropNonPeerIKE)
	return e
}

// boolean sets *b to the boolean at path, if there is one.
func (d *decoder) boolean(path string, v any, b *bool) {
	if v == nil {
		return
	}
	x, ok := v.(bool)
	if !ok {
		d.fail(path, "%s is not a boolean (want true or false)", describe(v))
		return
	}
	*b = x
}

// ebpf checks the section when it is enabled; the zero EBPF (off) is valid.
func (v *validator) ebpf(path string, e *EBPF) {
	if !e.Enabled {
		return
	}
	if n := e.WANInterface; n != "" && !validIfName(n) {
		v.add(sub(path, "wan_interface"), "%q is not an interface name (want e.g. eth0, or \"\" for the route to the first peer)", n)
	}
	switch e.WhenSADown {
	case SADownDrop, SADownPass:
	default:
		v.add(sub(path, "when_sa_down"), "%q is not an action (want drop or pass)", e.WhenSADown)
	}
	if e.PathMTU < minPathMTU || e.PathMTU > math.MaxUint16 {
		v.add(sub(path, "path_mtu"), "%d is not an MTU from %d to %d (want e.g. 1500)", e.PathMTU, minPathMTU, math.MaxUint16)
	}
	if e.TopFlows < 0 || e.TopFlows > maxTopFlows {
		v.add(sub(path, "top_flows"), "%d is not from 0 to %d (want e.g. 10)", e.TopFlows, maxTopFlows)
	}
}
