package render

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/espgw/espgw/control"
)

// SummaryTunnels is the number of tunnels above which `espgw status` shows one line per
// connection instead of every SA and tunnel.
const SummaryTunnels = 20

// Summary writes s, one line per connection: its IKE SA, how many of its tunnels are up,
// its IPsec SAs, their traffic, the packets dropped while an SA was down and the tunnels
// with an error. `espgw status NAME` shows a connection in full.
func Summary(w io.Writer, s *control.Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Datapath: %s\n\n", s.Datapath)
	fmt.Fprintf(tw, "CONNECTION\tPEER\tIKE SA\tTUNNELS UP\tIPSEC SAS\tBYTES IN/OUT\tSA-DOWN DROPS\tERRORS\n")
	for _, c := range s.Connections {
		peer, ike := "-", "-"
		if c.Peer.IsValid() {
			peer = c.Peer.String()
		}
		if c.IKEState != "" {
			ike = c.IKEState
			if c.IKEVersion == 2 {
				ike += " (IKEv2)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d/%d\t%d\t%d\n", c.Connection, peer, ike, c.TunnelsUp, c.Tunnels,
			c.IPsecSAs, c.BytesIn, c.BytesOut, c.SADownDrops, c.TunnelErrors)
	}
	fmt.Fprintf(tw, "\n%d connections, %d of %d tunnels up, %d IPsec SAs. `espgw status NAME`: one connection in full; --all: every table; --json: everything.\n",
		len(s.Connections), s.TunnelsUp, s.Tunnels, s.IPsecSAs)
	if e := s.EBPF; e.Loaded {
		fmt.Fprintf(tw, "eBPF XDP drops: unknown SPI %d, IKE from non-peers %d\n", e.UnknownSPIDrops, e.NonPeerDrops)
	}
	return tw.Flush()
}
