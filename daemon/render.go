package daemon

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// RenderStatus writes st as plain-text tables in the spirit of `racoonctl show-sa`: the
// IKE SAs, the IPsec SAs and the tunnels. now dates the tunnels' last errors.
func RenderStatus(w io.Writer, st *Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Datapath: %s\n\n", st.Datapath)

	fmt.Fprintf(tw, "IKE SAs:")
	if len(st.IKESAs) == 0 {
		fmt.Fprintf(tw, " none\n")
	} else {
		fmt.Fprintf(tw, "\nCONNECTION\tLOCAL\tPEER\tCOOKIES\tSTATE\tMODE\tROLE\tALGORITHMS\tAGE\tNAT-T\n")
		for _, s := range st.IKESAs {
			fmt.Fprintf(tw, "%s\t%v\t%v\t%s:%s\t%s\t%s\t%s\t%s\t%v\t%s\n",
				s.Connection, s.Local, s.Peer, s.InitiatorCookie, s.ResponderCookie, s.State, s.Mode,
				role(s.Initiator), dash(s.Algorithms), seconds(s.AgeSeconds), yesNo(s.NATT))
		}
	}

	fmt.Fprintf(tw, "\nIPsec SAs:")
	if len(st.IPsecSAs) == 0 {
		fmt.Fprintf(tw, " none\n")
	} else {
		fmt.Fprintf(tw, "\nTUNNEL\tSPI IN\tSPI OUT\tALGORITHMS\tSELECTORS\tBYTES IN/OUT\tPACKETS IN/OUT\tLIFETIME\tREMAINING\tENCAP\n")
		for _, s := range st.IPsecSAs {
			encap := "-"
			if s.EncapLocalPort != 0 {
				encap = fmt.Sprintf("udp %d/%d", s.EncapLocalPort, s.EncapRemotePort)
			}
			counters := fmt.Sprintf("%d/%d\t%d/%d", s.BytesIn, s.BytesOut, s.PacketsIn, s.PacketsOut)
			if s.CountersError != "" {
				counters = "?\t?"
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s <-> %s\t%s\t%v\t%v\t%s\n",
				s.Connection, s.Tunnel, s.SPIIn, s.SPIOut, s.Algorithms, s.LocalSelector, s.RemoteSelector,
				counters, seconds(s.LifetimeSeconds), seconds(s.RemainingSeconds), encap)
		}
	}

	fmt.Fprintf(tw, "\nTunnels:")
	if len(st.Tunnels) == 0 {
		fmt.Fprintf(tw, " none\n")
	} else {
		fmt.Fprintf(tw, "\nTUNNEL\tSTATE\tSTART\tSELECTORS\tLAST ERROR\n")
		for _, t := range st.Tunnels {
			last := "-"
			if t.LastError != "" {
				last = fmt.Sprintf("%s (%v ago)", oneLine(t.LastError), now.Sub(t.LastErrorTime).Round(time.Second))
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s <-> %s\t%s\n",
				t.Connection, t.Tunnel, t.State, t.Start, t.LocalSelector, t.RemoteSelector, last)
		}
	}
	return tw.Flush()
}

// RenderFlows writes the installed policies as a plain-text table.
func RenderFlows(w io.Writer, flows []Flow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(flows) == 0 {
		fmt.Fprintf(tw, "Flows: none\n")
		return tw.Flush()
	}
	fmt.Fprintf(tw, "TUNNEL\tREQID\tLOCAL\tREMOTE\tENDPOINTS\n")
	for _, f := range flows {
		fmt.Fprintf(tw, "%s/%s\t%d\t%s\t%s\t%v <-> %v\n",
			f.Connection, f.Tunnel, f.ReqID, f.LocalSelector, f.RemoteSelector, f.Local, f.Remote)
	}
	return tw.Flush()
}

func seconds(s int64) time.Duration { return time.Duration(s) * time.Second }

func role(initiator bool) string {
	if initiator {
		return "initiator"
	}
	return "responder"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a multi-line error inside its table cell.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }
