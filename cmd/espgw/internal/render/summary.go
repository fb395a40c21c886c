package render

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/espgw/espgw/control"
)

// SummaryTunnels is the number of tunnels above which `espgw status` shows one line per
// connection instead of every SA and tunnel.
const SummaryTunnels = 20

// connSummary is one line of Summary.
type connSummary struct {
	peer               string
	ike                string // state of the newest IKE SA
	ikeAge             int64
	up, tunnels, ipsec int
	errored            int // tunnels with a last error
	bytesIn, bytesOut  uint64
	saDownDrops        uint64
}

// Summary writes st with one line per connection: its IKE SA, how many of its tunnels
// are up, its IPsec SAs, their traffic, the packets dropped while an SA was down and the
// tunnels with an error. `espgw status NAME` shows a connection in full.
func Summary(w io.Writer, st *control.Status) error {
	conns := make(map[string]*connSummary)
	get := func(name string) *connSummary {
		c := conns[name]
		if c == nil {
			c = &connSummary{peer: "-", ike: "-"}
			conns[name] = c
		}
		return c
	}
	for _, s := range st.IKESAs {
		c := get(s.Connection)
		if c.ike == "-" || s.AgeSeconds < c.ikeAge {
			c.peer, c.ike, c.ikeAge = s.Peer.Addr().String(), s.State, s.AgeSeconds
			if s.Version == 2 {
				c.ike += " (IKEv2)"
			}
		}
	}
	for _, s := range st.IPsecSAs {
		c := get(s.Connection)
		c.ipsec++
		c.bytesIn += s.BytesIn
		c.bytesOut += s.BytesOut
		if c.peer == "-" {
			c.peer = s.Remote.String()
		}
	}
	for _, t := range st.Tunnels {
		c := get(t.Connection)
		c.tunnels++
		if t.State == control.TunnelUp {
			c.up++
		}
		if t.LastError != "" {
			c.errored++
		}
		if t.Policy != nil {
			c.saDownDrops += t.Policy.SADownDrops
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Datapath: %s\n\n", st.Datapath)
	fmt.Fprintf(tw, "CONNECTION\tPEER\tIKE SA\tTUNNELS UP\tIPSEC SAS\tBYTES IN/OUT\tSA-DOWN DROPS\tERRORS\n")
	names := slices.Sorted(maps.Keys(conns))
	up := 0
	for _, name := range names {
		c := conns[name]
		up += c.up
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d/%d\t%d\t%d\n", name, c.peer, c.ike, c.up, c.tunnels,
			c.ipsec, c.bytesIn, c.bytesOut, c.saDownDrops, c.errored)
	}
	fmt.Fprintf(tw, "\n%d connections, %d of %d tunnels up, %d IPsec SAs. `espgw status NAME`: one connection in full; --all: every table; --json: everything.\n",
		len(names), up, len(st.Tunnels), len(st.IPsecSAs))
	if e := st.EBPF; e.Loaded {
		fmt.Fprintf(tw, "eBPF XDP drops: unknown SPI %d, IKE from non-peers %d\n", e.UnknownSPIDrops, e.NonPeerDrops)
	}
	return tw.Flush()
}
