package ike

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Status is a snapshot of the engine's SAs.
type Status struct {
	IKESAs []IKESAStatus
	Errors []ConnError // recent failures, oldest first
	// Retrying lists start: always tunnels waiting to negotiate again after failures.
	Retrying []TunnelRetry
}

// IKESAStatus describes one IKE SA.
type IKESAStatus struct {
	Connection                       string
	Version                          int // IKE version: 1, or 2 (then the cookies are the IKE SA SPIs)
	Local, Remote                    netip.AddrPort
	InitiatorCookie, ResponderCookie string // hex
	State                            string // e.g. "MM3_SENT", "ESTABLISHED"
	Initiator                        bool
	Aggressive                       bool
	Proposal                         string // swanctl syntax, "" before it is chosen
	Established                      time.Time
	Age                              time.Duration // since established (since created if half-open)
	NATDetected                      bool
	LastReceived                     time.Time // last message from the peer for this SA; zero = none yet
	DPD                              DPDStatus
	ChildSAs                         []ChildSAStatus
}

// DPDStatus is the RFC 3706 dead peer detection of one IKE SA.
type DPDStatus struct {
	Delay        time.Duration // dpd_delay; 0 = off
	PeerSupports bool          // the peer sent the DPD vendor ID
	Running      bool          // R-U-THERE probes go out
	LastAck      time.Time     // last R-U-THERE-ACK (or when probing started)
}

// ChildSAStatus describes one installed child SA.
type ChildSAStatus struct {
	Tunnel            string
	ReqID             uint32
	SPIIn, SPIOut     uint32
	Proposal          string
	LocalTS, RemoteTS []TrafficSelector
	Encapsulated      bool
	Lifetime          time.Duration
	LifeKilobytes     uint64 // volume limit; 0 = none (3DES always has one, Sweet32Kilobytes by default)
	Established       time.Time
	// OneSidedSince is when the child SA began to send packets while receiving none with
	// the peer answering DPD (onesided.go); zero while traffic flows both ways or is unknown.
	OneSidedSince time.Time
}

// Status returns the current IKE and child SAs, sorted by connection and creation.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	var st Status
	for _, sa := range e.ikeSAs {
		s := IKESAStatus{
			Connection: sa.conn.cfg.Name, Local: sa.local, Remote: sa.remote,
			InitiatorCookie: hexCookie(sa.icookie), ResponderCookie: hexCookie(sa.rcookie),
			Version: 1, State: sa.state.String(), Initiator: sa.initiator, Aggressive: sa.aggressive,
			Established: sa.established, NATDetected: sa.natDetected(), LastReceived: sa.lastRecv,
			DPD: DPDStatus{Delay: sa.conn.cfg.IKE.DPDDelay, PeerSupports: sa.peerDPD,
				Running: sa.dpd.timer != nil, LastAck: sa.dpd.lastAck},
		}
		if sa.keys != nil {
			s.Proposal = sa.prop.String()
		}
		if sa.established.IsZero() {
			s.Age = now.Sub(sa.created)
		} else {
			s.Age = now.Sub(sa.established)
		}
		s.ChildSAs = e.childStatus(func(ch *childSA) bool { return ch.ike == sa })
		st.IKESAs = append(st.IKESAs, s)
	}
	st.IKESAs = append(st.IKESAs, e.v2Status(now)...)
	slices.SortFunc(st.IKESAs, func(a, b IKESAStatus) int {
		return cmp.Or(cmp.Compare(a.Connection, b.Connection), a.Established.Compare(b.Established))
	})
	st.Errors = slices.Clone(e.errs)
	st.Retrying = e.retrying()
	return st
}

// childStatus describes the child SAs for which mine holds, sorted by tunnel.
func (e *Engine) childStatus(mine func(*childSA) bool) []ChildSAStatus {
	var out []ChildSAStatus
	for _, ch := range e.children {
		if !mine(ch) {
			continue
		}
		out = append(out, ChildSAStatus{
			Tunnel: ch.Tunnel, ReqID: ch.ReqID, SPIIn: ch.SPIIn, SPIOut: ch.SPIOut,
			Proposal: ch.Proposal.String(), LocalTS: ch.LocalTS, RemoteTS: ch.RemoteTS,
			Encapsulated: ch.EncapRemotePort != 0, Lifetime: ch.Lifetime, LifeKilobytes: ch.LifeKilobytes, Established: ch.Established,
			OneSidedSince: ch.watch.since,
		})
	}
	slices.SortFunc(out, func(a, b ChildSAStatus) int { return cmp.Compare(a.Tunnel, b.Tunnel) })
	return out
}

// v2Status describes the IKEv2 SAs (Version 2; the cookies are the SPIs).
func (e *Engine) v2Status(now time.Time) []IKESAStatus {
	var out []IKESAStatus
	for _, sa := range e.v2SAs {
		s := IKESAStatus{
			Connection: sa.conn.cfg.Name, Version: 2, Local: sa.local, Remote: sa.remote,
			InitiatorCookie: sa.spiI.String(), ResponderCookie: sa.spiR.String(),
			State: sa.state.String(), Initiator: sa.initiator, Established: sa.established,
			NATDetected: sa.natDetected(), LastReceived: sa.lastRecv,
			DPD: DPDStatus{Delay: sa.conn.cfg.IKE.DPDDelay, PeerSupports: true, Running: sa.dpd != nil, LastAck: sa.lastRecv},
			Age: now.Sub(sa.created),
		}
		if sa.sk != nil {
			s.Proposal = sa.prop.String()
		}
		if !sa.established.IsZero() {
			s.Age = now.Sub(sa.established)
		}
		s.ChildSAs = e.childStatus(func(ch *childSA) bool { return ch.v2 == sa })
		out = append(out, s)
	}
	return out
}

// racoonAddr formats an address the way racoon's log lines do: 192.0.2.1[500].
func racoonAddr(a netip.AddrPort) string { return fmt.Sprintf("%s[%d]", a.Addr(), a.Port()) }
