package daemon

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/datapath/ebpfdp"
	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/ike/proposal"
)

// status assembles the engine's SAs, the datapath's counters, the tunnels' states and the
// eBPF programs' counters but the per-SA ones (addXDPPackets): of every connection, or of connection conn only (then without
// the daemon's recent errors, as control.Status.Connection selects), which spares asking
// the datapath for the other connections' counters.
func (d *daemon) status(conn string) *control.Status {
	st := d.engine.Status()
	tunnels := d.engine.Tunnels()
	now := time.Now()
	out := &control.Status{Datapath: d.dp.Name(), IKESAs: []control.IKESA{}, IPsecSAs: []control.IPsecSA{}, Tunnels: []control.TunnelState{}, Errors: []control.NegotiationError{}}
	other := func(c string) bool { return conn != "" && c != conn }
	if conn == "" { // sized at once: growing them cost 1.6 MB per status of 1,000 tunnels
		out.IPsecSAs = make([]control.IPsecSA, 0, childSAs(st))
		out.Tunnels = make([]control.TunnelState, 0, len(tunnels))
	}
	up := make(map[tunnelKey]bool, cap(out.IPsecSAs))
	negotiating := make(map[string]bool) // connections with a phase 1 in progress
	for _, s := range st.IKESAs {
		if other(s.Connection) {
			continue
		}
		out.IKESAs = append(out.IKESAs, ikeSA(s))
		if s.Established.IsZero() {
			negotiating[s.Connection] = true
		}
		for _, c := range s.ChildSAs {
			out.IPsecSAs = append(out.IPsecSAs, d.ipsecSA(s, c, now))
			up[tunnelKey{s.Connection, c.Tunnel}] = true
		}
	}
	retry := make(map[tunnelKey]ike.TunnelRetry)
	for _, r := range st.Retrying {
		retry[tunnelKey{r.Connection, r.Tunnel}] = r
	}
	lastErr := make(map[string]ike.ConnError)
	for _, e := range st.Errors { // oldest first: the last one wins
		lastErr[e.Connection] = e
		if conn != "" {
			continue
		}
		out.Errors = append(out.Errors, control.NegotiationError{Connection: e.Connection, Time: e.Time, Error: e.Err, Ours: e.Ours, Theirs: e.Theirs})
	}
	d.mu.Lock()
	upping := make(map[tunnelKey]bool, len(d.upping))
	for k := range d.upping {
		upping[k] = true
	}
	d.mu.Unlock()
	out.EBPF = d.ebpfStatus()
	var policies map[uint32]ebpfdp.TunnelCounters
	if d.ebpf != nil {
		var err error
		if policies, err = d.ebpf.TunnelCounters(); err != nil {
			out.EBPF.CountersError = err.Error()
		}
	}
	for _, t := range tunnels {
		if other(t.Connection) {
			continue
		}
		k := tunnelKey{t.Connection, t.Tunnel}
		ts := control.TunnelState{
			Connection: t.Connection, Tunnel: t.Tunnel, Start: string(t.Start), State: control.TunnelDown,
			LocalSelector: ike.JoinTS(t.LocalTS), RemoteSelector: ike.JoinTS(t.RemoteTS),
		}
		switch {
		case up[k]:
			ts.State, ts.OneSidedSince = control.TunnelUp, t.OneSidedSince
		case upping[k] || negotiating[t.Connection]:
			ts.State = control.TunnelConnecting
		}
		if e, ok := lastErr[t.Connection]; ok && ts.State != control.TunnelUp {
			ts.LastError, ts.LastErrorTime = e.Err, e.Time
		}
		if r, ok := retry[k]; ok && ts.State != control.TunnelUp {
			ts.Failures, ts.RetryAt = r.Failures, r.At
			if ts.LastError == "" {
				ts.LastError = r.Err
			}
		}
		if tc, ok := policies[t.ReqID]; ok {
			pc := control.PolicyCounters(tc)
			ts.Policy = &pc
		}
		out.Tunnels = append(out.Tunnels, ts)
	}
	return out
}

// addXDPPackets sets each IPsec SA's XDPPacketsIn from the XDP program's counters (the
// summary does not show them: reading them is a third of a status of 1,000 tunnels).
func (d *daemon) addXDPPackets(st *control.Status) {
	if d.ebpf == nil {
		return
	}
	wire, err := d.ebpf.InboundPackets()
	if err != nil {
		return
	}
	for i, sa := range st.IPsecSAs {
		if spi, err := strconv.ParseUint(sa.SPIIn, 16, 32); err == nil {
			if n, ok := wire[uint32(spi)]; ok {
				st.IPsecSAs[i].XDPPacketsIn = &n
			}
		}
	}
}

// childSAs counts the child SAs of every IKE SA in st.
func childSAs(st ike.Status) int {
	n := 0
	for _, s := range st.IKESAs {
		n += len(s.ChildSAs)
	}
	return n
}

func ikeSA(s ike.IKESAStatus) control.IKESA {
	mode := "main"
	switch {
	case s.Version == 2:
		mode = "ikev2"
	case s.Aggressive:
		mode = "aggressive"
	}
	return control.IKESA{
		Connection: s.Connection, Version: s.Version, Local: s.Local, Peer: s.Remote,
		InitiatorCookie: s.InitiatorCookie, ResponderCookie: s.ResponderCookie,
		State: s.State, Initiator: s.Initiator, Mode: mode, Algorithms: s.Proposal,
		Established: s.Established, AgeSeconds: int64(s.Age / time.Second), NATT: s.NATDetected,
		LastReceived: s.LastReceived,
		DPD: control.DPD{DelaySeconds: int64(s.DPD.Delay / time.Second), PeerSupports: s.DPD.PeerSupports,
			Running: s.DPD.Running, LastAck: s.DPD.LastAck},
	}
}

func (d *daemon) ipsecSA(s ike.IKESAStatus, c ike.ChildSAStatus, now time.Time) control.IPsecSA {
	sa := control.IPsecSA{
		Connection: s.Connection, Tunnel: c.Tunnel, ReqID: c.ReqID,
		SPIIn: fmt.Sprintf("%08x", c.SPIIn), SPIOut: fmt.Sprintf("%08x", c.SPIOut),
		Algorithms: "esp " + c.Proposal,
		Local:      s.Local.Addr(), Remote: s.Remote.Addr(),
		LocalSelector: ike.JoinTS(c.LocalTS), RemoteSelector: ike.JoinTS(c.RemoteTS),
		Established:     c.Established,
		LifetimeSeconds: int64(c.Lifetime / time.Second),
	}
	if rem := c.Established.Add(c.Lifetime).Sub(now); rem > 0 {
		sa.RemainingSeconds = int64(rem / time.Second)
	}
	if child, ok := d.kernel.childSA(c.SPIIn); ok {
		sa.Algorithms = espAlgorithms(child.proposal)
		sa.Local, sa.Remote = child.local, child.remote
		sa.EncapLocalPort, sa.EncapRemotePort = child.encapLocalPort, child.encapRemotePort
	}
	in, errIn := d.dp.Counters(sa.Local, c.SPIIn)
	out, errOut := d.dp.Counters(sa.Remote, c.SPIOut)
	sa.BytesIn, sa.PacketsIn = in.Bytes, in.Packets
	sa.BytesOut, sa.PacketsOut = out.Bytes, out.Packets
	if err := cmp.Or(errIn, errOut); err != nil {
		sa.CountersError = err.Error()
	}
	return sa
}

// espAlgorithms formats a child SA's transform the way racoon's logs do:
// "esp 3des-sha1 pfs modp1024", "esp aes256gcm16" (no PFS).
func espAlgorithms(p proposal.ESP) string {
	noPFS := p
	noPFS.Group = 0
	s := "esp " + noPFS.String()
	if p.Group != 0 {
		s += " pfs " + strings.TrimPrefix(p.String(), noPFS.String()+"-")
	}
	return s
}
