// Package render writes the daemon's answers as plain-text tables: `espgw status` (in full
// or one line per connection) and `espgw flows`.
package render

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/espgw/espgw/control"
)

// Status writes st as plain-text tables in the spirit of `racoonctl show-sa`: the
// IKE SAs, the IPsec SAs and the tunnels. now dates the tunnels' last errors.
func Status(w io.Writer, st *control.Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Datapath: %s\n\n", st.Datapath)

	fmt.Fprintf(tw, "IKE SAs:")
	if len(st.IKESAs) == 0 {
		fmt.Fprintf(tw, " none\n")
	} else {
		fmt.Fprintf(tw, "\nCONNECTION\tLOCAL\tPEER\tCOOKIES\tSTATE\tMODE\tROLE\tALGORITHMS\tAGE\tNAT-T\n")
		for _, s := range st.IKESAs {
			fmt.Fprintf(tw, "%s\t%v\t%v\t%s:%s\t%s\t%s\t%s\t%s\t%v\t%s\n",
				s.Connection, s.Local, s.Peer, s.InitiatorCookie, s.ResponderCookie, s.State, mode(s),
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
			last := lastError(t, now)
			state := t.State
			if !t.OneSidedSince.IsZero() {
				state += fmt.Sprintf(", one-sided %v", now.Sub(t.OneSidedSince).Round(time.Second))
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s <-> %s\t%s\n",
				t.Connection, t.Tunnel, state, t.Start, t.LocalSelector, t.RemoteSelector, last)
		}
	}
	renderEBPF(tw, st)
	return tw.Flush()
}

// lastError is the LAST ERROR column: the error, how long ago, and when a start: always
// tunnel tries again.
func lastError(t control.TunnelState, now time.Time) string {
	if t.LastError == "" {
		return "-"
	}
	s := oneLine(t.LastError)
	var when []string
	if !t.LastErrorTime.IsZero() {
		when = append(when, fmt.Sprintf("%v ago", now.Sub(t.LastErrorTime).Round(time.Second)))
	}
	if !t.RetryAt.IsZero() {
		when = append(when, fmt.Sprintf("%d failed, retry in %v", t.Failures, max(t.RetryAt.Sub(now), 0).Round(time.Second)))
	}
	if len(when) > 0 {
		s += " (" + strings.Join(when, "; ") + ")"
	}
	return s
}

// mode is the MODE column: IKEv1's exchange mode, or IKEv2, which has none.
func mode(s control.IKESA) string {
	if s.Version == 2 {
		return "IKEv2"
	}
	return s.Mode
}

// renderEBPF writes where the eBPF programs run, the XDP filter's drops and each tunnel's
// policy counters.
func renderEBPF(w io.Writer, st *control.Status) {
	e := st.EBPF
	if !e.Loaded {
		fmt.Fprintf(w, "\neBPF: off (%s)\n", dash(e.Reason))
		return
	}
	fmt.Fprintf(w, "\neBPF: %s\n", strings.Join(e.Attached, ", "))
	if e.CountersError != "" {
		fmt.Fprintf(w, "counters unavailable: %s\n", oneLine(e.CountersError))
	}
	fmt.Fprintf(w, "XDP drops: unknown SPI %d, IKE from non-peers %d (passed with the filter off: %d, %d)\n",
		e.UnknownSPIDrops, e.NonPeerDrops, e.UnknownSPIPasses, e.NonPeerPasses)
	fmt.Fprintf(w, "TUNNEL\tPACKETS OUT/IN\tBYTES OUT/IN\tSA-DOWN DROPS\tSA-DOWN PASSES\tEVENTS\tMSS\tMSS REWRITES\n")
	for _, t := range st.Tunnels {
		p := t.Policy
		if p == nil {
			fmt.Fprintf(w, "%s/%s\t-\t-\t-\t-\t-\t-\t-\n", t.Connection, t.Tunnel)
			continue
		}
		mss := "-"
		if p.MSS != 0 {
			mss = fmt.Sprint(p.MSS)
		}
		fmt.Fprintf(w, "%s/%s\t%d/%d\t%d/%d\t%d\t%d\t%d\t%s\t%d\n", t.Connection, t.Tunnel,
			p.PacketsOut, p.PacketsIn, p.BytesOut, p.BytesIn, p.SADownDrops, p.SADownPasses, p.Events, mss, p.MSSRewrites)
	}
}

// Flows writes the top flows and the installed policies as plain-text tables.
func Flows(w io.Writer, r *control.FlowReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	switch {
	case r.EBPFOff != "":
		fmt.Fprintf(tw, "Top flows: unavailable (%s)\n", oneLine(r.EBPFOff))
	case len(r.TopFlows) == 0:
		fmt.Fprintf(tw, "Top flows: none\n")
	default:
		fmt.Fprintf(tw, "Top flows:\nTUNNEL\tSOURCE\tDESTINATION\tPROTO\tPACKETS\tBYTES\n")
		for _, f := range r.TopFlows {
			tunnel := "-"
			if f.Connection != "" {
				tunnel = f.Connection + "/" + f.Tunnel
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", tunnel, endpoint(f.Src, f.SrcPort, f.Proto),
				endpoint(f.Dst, f.DstPort, f.Proto), protoName(f.Proto), f.Packets, f.Bytes)
		}
	}
	if len(r.Policies) == 0 {
		fmt.Fprintf(tw, "\nPolicies: none\n")
		return tw.Flush()
	}
	fmt.Fprintf(tw, "\nPolicies:\nTUNNEL\tREQID\tLOCAL\tREMOTE\tENDPOINTS\n")
	for _, f := range r.Policies {
		fmt.Fprintf(tw, "%s/%s\t%d\t%s\t%s\t%v <-> %v\n",
			f.Connection, f.Tunnel, f.ReqID, f.LocalSelector, f.RemoteSelector, f.Local, f.Remote)
	}
	return tw.Flush()
}

// endpoint shows an address with its port for protocols that have ports.
func endpoint(a netip.Addr, port uint16, proto uint8) string {
	if proto != 6 && proto != 17 {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}

func protoName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	}
	return fmt.Sprint(p)
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
