package doctor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/ike/proposal"
)

// recentErrors is how far back a failed negotiation counts when no ISAKMP SA has come up since.
const recentErrors = 30 * time.Minute

// checkLive reports, per configured connection, its ISAKMP SA, DPD and recent negotiation
// errors, and per tunnel its SA and counters, from the running daemon's status.
func checkLive(r *report, cfg *config.Config, st *control.Status, now time.Time) {
	for _, c := range cfg.Connections {
		sa := newestIKESA(st, c.Name)
		checkIKESA(r, c, st, sa, now)
		checkErrors(r, c, st, sa, now)
		for _, t := range c.Tunnels {
			checkTunnel(r, c, t, st, now)
		}
	}
}

// newestIKESA returns the connection's newest established ISAKMP SA, nil if none.
func newestIKESA(st *control.Status, conn string) *control.IKESA {
	var best *control.IKESA
	for i, s := range st.IKESAs {
		if s.Connection == conn && s.State == "ESTABLISHED" && (best == nil || s.Established.After(best.Established)) {
			best = &st.IKESAs[i]
		}
	}
	return best
}

func checkIKESA(r *report, c model.Connection, st *control.Status, sa *control.IKESA, now time.Time) {
	if sa == nil {
		for _, s := range st.IKESAs {
			if s.Connection == c.Name {
				r.warn(IDIKE, c.Name, "wait; if it stays, see the negotiation lines", "%s negotiating (%s, %s)", saName(c), s.State, ago(time.Duration(s.AgeSeconds)*time.Second))
				return
			}
		}
		if slices.ContainsFunc(c.Tunnels, func(t model.Tunnel) bool { return t.Start == model.StartAlways }) {
			r.fail(IDIKE, c.Name, fmt.Sprintf("see the negotiation lines; `espgw up %s` retries and prints the error", c.Name),
				"no %s although a tunnel has start: always", saName(c))
			return
		}
		r.ok(IDIKE, c.Name, "no %s (tunnels start on demand or manually)", saName(c))
		return
	}
	last := "no IKE message from the peer since we set it up"
	var details = map[string]any{"age_seconds": int64(now.Sub(sa.Established) / time.Second), "nat_t": sa.NATT, "algorithms": sa.Algorithms}
	if !sa.LastReceived.IsZero() {
		last = "last IKE message from the peer " + ago(now.Sub(sa.LastReceived))
		details["last_received_seconds"] = int64(now.Sub(sa.LastReceived) / time.Second)
	}
	r.ok(IDIKE, c.Name, "%s established %s[%d]-%s[%d] %s %s; %s",
		saName(c), sa.Local.Addr(), sa.Local.Port(), sa.Peer.Addr(), sa.Peer.Port(), sa.Algorithms, ago(now.Sub(sa.Established)), last).Details = details
	checkDPD(r, c, sa.DPD, now)
}

// checkDPD reports the dead peer detection of the connection's IKE SA: RFC 3706 DPD for
// IKEv1, which the peer must announce; for IKEv2 the liveness check of RFC 7296 2.4 (an
// empty INFORMATIONAL request when the peer has been quiet), which every peer answers and
// for which any message from the peer counts.
func checkDPD(r *report, c model.Connection, d control.DPD, now time.Time) {
	id, probes, ack := IDDPD, "probes", "R-U-THERE-ACK"
	if c.IKE.IsV2() {
		id, probes, ack = IDLiveness, "liveness checks", "message from the peer"
	}
	delay := time.Duration(d.DelaySeconds) * time.Second
	switch {
	case delay == 0:
		r.ok(id, c.Name, "off (ike.dpd_delay not set): a dead peer shows only when the SAs expire")
	case !d.PeerSupports:
		r.warn(id, c.Name, "ask the partner to enable DPD (or live without it)", "dpd_delay %s, but the peer did not announce DPD: no probes", delay)
	case !d.Running:
		r.warn(id, c.Name, "see espgw's log", "dpd_delay %s, but no %s run", delay, probes)
	case now.Sub(d.LastAck) > 2*delay:
		r.warn(id, c.Name, "check that UDP 500/4500 from the peer still reach us",
			"no %s for %s (every %s); the peer is declared dead at dpd_timeout", ack, now.Sub(d.LastAck).Round(time.Second), delay)
	default:
		r.ok(id, c.Name, "every %s, last %s %s", delay, ack, ago(now.Sub(d.LastAck)))
	}
}

// saName is what the connection's IKE SA is called in its version's RFC.
func saName(c model.Connection) string {
	if c.IKE.IsV2() {
		return "IKEv2 IKE SA"
	}
	return "ISAKMP-SA"
}

// checkErrors reports the connection's failed negotiations since its newest ISAKMP SA came up
// (within recentErrors if none did), one line per distinct error.
func checkErrors(r *report, c model.Connection, st *control.Status, sa *control.IKESA, now time.Time) {
	since := now.Add(-recentErrors)
	if sa != nil && sa.Established.After(since) {
		since = sa.Established
	}
	type group struct {
		e     control.NegotiationError
		count int
	}
	var groups []*group
	for _, e := range st.Errors {
		if e.Connection != c.Name || !e.Time.After(since) {
			continue
		}
		i := slices.IndexFunc(groups, func(g *group) bool { return g.e.Error == e.Error })
		if i < 0 {
			groups = append(groups, &group{e: e})
			i = len(groups) - 1
		}
		groups[i].e.Time = e.Time
		groups[i].count++
	}
	up := slices.ContainsFunc(st.Tunnels, func(t control.TunnelState) bool { return t.Connection == c.Name && t.State == control.TunnelUp })
	for _, g := range groups {
		msg := g.e.Error
		if g.e.Ours != "" || g.e.Theirs != "" {
			msg += fmt.Sprintf(" [ours: %s] [theirs: %s]", orNone(g.e.Ours), orNone(g.e.Theirs))
		}
		times := "once"
		if g.count > 1 {
			times = fmt.Sprintf("%d times", g.count)
		}
		msg = fmt.Sprintf("%s (%s, last %s)", msg, times, ago(now.Sub(g.e.Time)))
		ch := r.warn
		if !up {
			ch = r.fail
		}
		ch(IDNegotiation, c.Name, errorFix(c, g.e), "%s", msg).Details = map[string]any{
			"error": g.e.Error, "ours": g.e.Ours, "theirs": g.e.Theirs, "count": g.count, "last": g.e.Time.UTC(),
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "(not seen)"
	}
	return s
}

// errorFix is what to do about a failed negotiation, from its error.
func errorFix(c model.Connection, e control.NegotiationError) string {
	switch {
	case e.Theirs != "":
		// IKEv1 phase-1 errors start so (ike/phase1sa.go), the others are a tunnel's quick
		// mode, which may quote the same proposals. IKEv2 SA proposals always name their PRF,
		// so there the proposals alone tell.
		phase1 := strings.HasPrefix(e.Error, "phase 1")
		where, theirs := "the proposals", e.Theirs
		if (phase1 || c.IKE.IsV2()) && e.Ours == c.IKE.FormatProposals() {
			where = fmt.Sprintf("connections.%s.ike.proposals", c.Name)
		}
		for _, t := range c.Tunnels {
			if (!phase1 || c.IKE.IsV2()) && e.Ours == proposal.FormatESP(t.Proposals) {
				where = fmt.Sprintf("connections.%s.tunnels.%s.proposals", c.Name, t.Name)
				// IKEv2 errors mark ESP proposals "esp:", which a tunnel's proposals leave out.
				theirs = strings.ReplaceAll(theirs, "esp:", "")
			}
		}
		return fmt.Sprintf("add one of the partner's proposals (%s) to %s, or ask the partner to offer %s", theirs, where, e.Ours)
	case strings.Contains(e.Error, "no proposal chosen"):
		return "ask the partner which proposals they accept and compare with ours (in the error); the partner's log names theirs"
	case strings.Contains(e.Error, "pre-shared key mismatch"):
		return fmt.Sprintf("agree on the key with the partner (connections.%s.psk or psk_file; it must match byte for byte)", c.Name)
	case strings.Contains(e.Error, "peer did not answer"):
		return fmt.Sprintf("check that UDP 500 and 4500 reach %s and back (firewalls at both ends) and that the partner has configured us as %s",
			c.RemoteAddress, c.LocalAddress)
	case strings.Contains(e.Error, "identity mismatch"):
		return "compare local_id, remote_id and the tunnels' subnets with the partner's sheet"
	case strings.Contains(e.Error, "peer sent error notification"):
		return "the partner rejected it: their log says why"
	}
	return "see espgw's log around that time"
}

// newestChild returns the tunnel's newest IPsec SA, nil if none.
func newestChild(st *control.Status, conn, tunnel string) *control.IPsecSA {
	var best *control.IPsecSA
	for i, s := range st.IPsecSAs {
		if s.Connection == conn && s.Tunnel == tunnel && (best == nil || s.Established.After(best.Established)) {
			best = &st.IPsecSAs[i]
		}
	}
	return best
}

func checkTunnel(r *report, c model.Connection, t model.Tunnel, st *control.Status, now time.Time) {
	subj := subject(c.Name, t.Name)
	var ts control.TunnelState
	for _, x := range st.Tunnels {
		if x.Connection == c.Name && x.Tunnel == t.Name {
			ts = x
		}
	}
	sa := newestChild(st, c.Name, t.Name)
	if sa == nil {
		switch {
		case ts.State == control.TunnelConnecting:
			r.warn(IDTunnel, subj, "wait; if it stays, see the negotiation lines", "negotiating")
		case ts.LastError != "":
			r.fail(IDTunnel, subj, "see the connection's negotiation lines", "down: %s (%s)", ts.LastError, ago(now.Sub(ts.LastErrorTime)))
		case t.Start == model.StartAlways:
			r.fail(IDTunnel, subj, "espgw up "+subj, "down although start: always")
		default:
			r.ok(IDTunnel, subj, "down (start: %s; `espgw ping %s` brings it up)", t.Start, subj)
		}
		return
	}
	age := now.Sub(sa.Established)
	details := map[string]any{
		"spi_in": sa.SPIIn, "spi_out": sa.SPIOut, "age_seconds": int64(age / time.Second), "remaining_seconds": sa.RemainingSeconds,
		"bytes_in": sa.BytesIn, "bytes_out": sa.BytesOut, "packets_in": sa.PacketsIn, "packets_out": sa.PacketsOut,
	}
	if sa.XDPPacketsIn != nil {
		details["xdp_packets_in"] = *sa.XDPPacketsIn
	}
	counts := fmt.Sprintf("in %s (%d packets), out %s (%d packets)", bytesStr(sa.BytesIn), sa.PacketsIn, bytesStr(sa.BytesOut), sa.PacketsOut)
	life := fmt.Sprintf("SA %s old, %s left", age.Round(time.Second), (time.Duration(sa.RemainingSeconds) * time.Second).String())
	switch {
	case sa.CountersError != "":
		r.warn(IDTunnel, subj, "see espgw's log", "up, %s; counters unavailable: %s", life, sa.CountersError).Details = details
	case sa.PacketsOut > 0 && sa.PacketsIn == 0:
		causes, fix := oneSidedCauses(c, t, sa, st)
		details["causes"] = causes
		r.fail(IDTunnel, subj, fix, "packets go out but nothing comes back: %s, %s (SPI in %s, out %s); likely: %s",
			life, counts, sa.SPIIn, sa.SPIOut, strings.Join(causes, "; ")).Details = details
	default:
		r.ok(IDTunnel, subj, "up, %s, %s, %s", sa.Algorithms, life, counts).Details = details
	}
}

// oneSidedCauses lists the likely reasons why ESP goes out and none comes in, the most likely
// first, from what XDP saw on the WAN interface.
func oneSidedCauses(c model.Connection, t model.Tunnel, sa *control.IPsecSA, st *control.Status) (causes []string, fix string) {
	wire := "ESP"
	if sa.EncapLocalPort != 0 {
		wire = fmt.Sprintf("ESP in UDP %d", sa.EncapLocalPort)
	}
	if sa.XDPPacketsIn != nil && *sa.XDPPacketsIn > 0 {
		causes = append(causes, fmt.Sprintf("the partner's %s arrives (%d packets with SPI %s seen by XDP on the WAN interface) but this host drops it before espgw: a firewall rule (nft list ruleset; iptables -S)",
			wire, *sa.XDPPacketsIn, sa.SPIIn))
		return causes, fmt.Sprintf("allow inbound %s from %s in the host firewall", wire, c.RemoteAddress)
	}
	if sa.XDPPacketsIn != nil {
		causes = append(causes, fmt.Sprintf("no %s with SPI %s reached the WAN interface at all", wire, sa.SPIIn))
	}
	if st.EBPF.UnknownSPIDrops > 0 {
		causes = append(causes, fmt.Sprintf("XDP dropped %d ESP packets with SPIs we did not negotiate: the partner encrypts with an old or other SA (`espgw down %s` then up)",
			st.EBPF.UnknownSPIDrops, subject(c.Name, t.Name)))
	}
	causes = append(causes,
		fmt.Sprintf("the partner does not send into the tunnel: its SA or encryption domain differs from ours (%s <-> %s), or its host has no route back to %s through its gateway",
			sa.LocalSelector, sa.RemoteSelector, sa.LocalSelector),
		fmt.Sprintf("a firewall on the path or at the partner drops %s towards %s", wire, c.LocalAddress),
		"the host you talk to does not answer (ICMP filtered, service down)")
	return causes, fmt.Sprintf("ask the partner whether their SA with SPI %s counts our packets and sends replies; compare both encryption domains", sa.SPIOut)
}

// ago formats a past duration: "12s ago".
func ago(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String() + " ago"
}

// bytesStr formats a byte count with binary units.
func bytesStr(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
