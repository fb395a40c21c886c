// Package control is espgw's control protocol: the requests a client sends to the daemon's
// unix socket, the answers (status, flows) and the Client that sends them.
package control

import (
	"net/netip"
	"slices"
	"time"

	"github.com/espgw/espgw/model"
)

// The client connects to the unix socket, writes one JSON Request, reads one JSON Response,
// and the daemon closes the connection.
//
// The protocol grows by optional fields, each of which an older peer ignores: a daemon that
// does not know a Request field answers as before (the Client then does the rest itself, as
// StatusOf and Overview do), and an older client does not set it. What a client cannot make
// sense of is an error naming the command, never a partial answer.

// Commands of a Request.
const (
	CmdStatus = "status" // Response.Status, of Connection only if set; or Response.Summary (SummaryAbove)
	CmdUp     = "up"     // negotiate Connection (every tunnel, or Tunnel); waits for the outcome
	CmdDown   = "down"   // delete Connection's SAs (every tunnel and the IKE SA, or Tunnel)
	CmdReload = "reload" // re-read the configuration file, as SIGHUP does
	CmdFlows  = "flows"  // Response.Flows: the Limit top flows and the installed policies
)

// Request is one control request.
type Request struct {
	Command    string `json:"command"`
	Connection string `json:"connection,omitempty"`
	Tunnel     string `json:"tunnel,omitempty"`
	Limit      int    `json:"limit,omitempty"` // flows: how many top flows; 0 = ebpf.top_flows
	// SummaryAbove asks status without Connection for a Summary instead of the Status when
	// the daemon has more tunnels than that; 0 = always the Status.
	SummaryAbove int `json:"summary_above,omitempty"`
}

// Response answers a Request. Error is set when the command failed; it may span lines
// (one per configuration problem on reload).
type Response struct {
	Error   string      `json:"error,omitempty"`
	Status  *Status     `json:"status,omitempty"`
	Summary *Summary    `json:"summary,omitempty"`
	Flows   *FlowReport `json:"flows,omitempty"`
}

// Status is what `espgw status` shows.
type Status struct {
	Datapath string        `json:"datapath"` // "xfrm" or "userspace"
	IKESAs   []IKESA       `json:"ike_sas"`
	IPsecSAs []IPsecSA     `json:"ipsec_sas"`
	Tunnels  []TunnelState `json:"tunnels"`
	EBPF     EBPFStatus    `json:"ebpf"`
	// Errors are the recent negotiation failures, oldest first (at most 32).
	Errors []NegotiationError `json:"errors"`
}

// NegotiationError is one failed negotiation. Ours and Theirs are both sides' proposals in
// swanctl syntax when no proposal matched and the peer's offer was seen.
type NegotiationError struct {
	Connection string    `json:"connection"`
	Time       time.Time `json:"time"`
	Error      string    `json:"error"`
	Ours       string    `json:"ours,omitempty"`
	Theirs     string    `json:"theirs,omitempty"`
}

// DPD is the dead peer detection (RFC 3706) of one IKE SA.
type DPD struct {
	DelaySeconds int64     `json:"delay_seconds"` // dpd_delay; 0 = off
	PeerSupports bool      `json:"peer_supports"` // the peer announced DPD
	Running      bool      `json:"running"`       // R-U-THERE probes go out
	LastAck      time.Time `json:"last_ack,omitzero"`
}

// EBPFStatus tells whether the eBPF programs run, where, and what the XDP filter counted.
type EBPFStatus struct {
	Loaded           bool     `json:"loaded"`
	Reason           string   `json:"reason,omitempty"`   // why they are not loaded
	Attached         []string `json:"attached,omitempty"` // "tc egress espgw0", "xdp eth0"
	UnknownSPIDrops  uint64   `json:"unknown_spi_drops"`  // inbound ESP with an SPI we did not negotiate
	UnknownSPIPasses uint64   `json:"unknown_spi_passes"` // the same, let through (filter off)
	NonPeerDrops     uint64   `json:"non_peer_drops"`     // IKE from an address that is no remote_address
	NonPeerPasses    uint64   `json:"non_peer_passes"`
	CountersError    string   `json:"counters_error,omitempty"`
}

// IKESA is one phase-1 SA.
type IKESA struct {
	Connection      string         `json:"connection"`
	Version         int            `json:"version"` // IKE version: 1 or 2
	Local           netip.AddrPort `json:"local"`
	Peer            netip.AddrPort `json:"peer"`
	InitiatorCookie string         `json:"initiator_cookie"` // 16 hex digits (IKEv2: the initiator's SPI)
	ResponderCookie string         `json:"responder_cookie"`
	State           string         `json:"state"` // engine state, e.g. "ESTABLISHED", "MM3_SENT"
	Initiator       bool           `json:"initiator"`
	Mode            string         `json:"mode"`       // "main" or "aggressive" (IKEv1), "ikev2"
	Algorithms      string         `json:"algorithms"` // "3des-sha1-modp1024", "" until chosen
	Established     time.Time      `json:"established,omitzero"`
	AgeSeconds      int64          `json:"age_seconds"`            // since established, or since created if not yet
	NATT            bool           `json:"nat_t"`                  // a NAT was detected and IKE floated to 4500
	LastReceived    time.Time      `json:"last_received,omitzero"` // last IKE message from the peer for this SA
	DPD             DPD            `json:"dpd"`
}

// IPsecSA is one child SA: an inbound and an outbound ESP SA negotiated together.
type IPsecSA struct {
	Connection       string     `json:"connection"`
	Tunnel           string     `json:"tunnel"`
	ReqID            uint32     `json:"reqid"`
	SPIIn            string     `json:"spi_in"` // 8 hex digits
	SPIOut           string     `json:"spi_out"`
	Algorithms       string     `json:"algorithms"` // "esp 3des-sha1 pfs modp1024"
	Local            netip.Addr `json:"local"`      // tunnel endpoints
	Remote           netip.Addr `json:"remote"`
	LocalSelector    string     `json:"local_selector"` // "10.10.1.1/32"; with protocol/port: "10.10.1.0/24[6/443]"
	RemoteSelector   string     `json:"remote_selector"`
	BytesIn          uint64     `json:"bytes_in"`
	BytesOut         uint64     `json:"bytes_out"`
	PacketsIn        uint64     `json:"packets_in"`
	PacketsOut       uint64     `json:"packets_out"`
	Established      time.Time  `json:"established"`
	LifetimeSeconds  int64      `json:"lifetime_seconds"`
	RemainingSeconds int64      `json:"remaining_seconds"`
	EncapLocalPort   uint16     `json:"encap_local_port,omitempty"` // ESP in UDP (RFC 3948); 0 = raw ESP
	EncapRemotePort  uint16     `json:"encap_remote_port,omitempty"`
	CountersError    string     `json:"counters_error,omitempty"` // why the counters are missing
	// XDPPacketsIn counts the ESP packets with SPIIn that reached the WAN interface, before
	// any firewall: more than PacketsIn means this host drops them. Nil without eBPF.
	XDPPacketsIn *uint64 `json:"xdp_packets_in,omitempty"`
}

// Tunnel states.
const (
	TunnelDown       = "down"
	TunnelConnecting = "connecting"
	TunnelUp         = "up"
)

// TunnelState is the state of one configured tunnel.
type TunnelState struct {
	Connection     string    `json:"connection"`
	Tunnel         string    `json:"tunnel"`
	State          string    `json:"state"` // TunnelDown, TunnelConnecting or TunnelUp
	Start          string    `json:"start"` // on-demand, always or manual
	LocalSelector  string    `json:"local_selector"`
	RemoteSelector string    `json:"remote_selector"`
	LastError      string    `json:"last_error,omitempty"` // e.g. "pre-shared key mismatch"
	LastErrorTime  time.Time `json:"last_error_time,omitzero"`
	// OneSidedSince is set while the tunnel's newest SA pair sends ESP and receives none,
	// the peer answering IKE meanwhile: espgw re-keys it (at most every 10 minutes).
	OneSidedSince time.Time `json:"one_sided_since,omitzero"`
	// Failures counts a start: always tunnel's failed negotiations in a row while it waits
	// for its next try at RetryAt (the back-off doubles up to 5 minutes).
	Failures int       `json:"failures,omitempty"`
	RetryAt  time.Time `json:"retry_at,omitzero"`
	// Policy is what the eBPF classifier counted for the tunnel; nil without eBPF.
	Policy *PolicyCounters `json:"policy,omitempty"`
}

// PolicyCounters are the eBPF classifier's counters of one tunnel's policy. Out counts
// traffic into the tunnel while its SA is up, In the traffic that came out of it.
type PolicyCounters struct {
	PacketsOut   uint64 `json:"packets_out"`
	BytesOut     uint64 `json:"bytes_out"`
	PacketsIn    uint64 `json:"packets_in"`
	BytesIn      uint64 `json:"bytes_in"`
	SADownDrops  uint64 `json:"sa_down_drops"`  // dropped while the SA was not up (fail closed)
	SADownPasses uint64 `json:"sa_down_passes"` // passed on while the SA was not up (when_sa_down: pass)
	MSSRewrites  uint64 `json:"mss_rewrites"`   // SYN and SYN-ACK segments whose MSS was lowered
	Events       uint64 `json:"events"`         // interesting-traffic events that asked for negotiation
	MSS          uint16 `json:"mss,omitempty"`  // the clamp in force; 0 = none
}

// FlowReport is what `espgw flows` shows: the top talkers through the tunnels, as the eBPF
// classifier counted them, and the installed policies.
type FlowReport struct {
	TopFlows []TopFlow `json:"top_flows"`
	EBPFOff  string    `json:"ebpf_off,omitempty"` // why there are no top flows
	Policies []Flow    `json:"policies"`
}

// TopFlow is the traffic of one 5-tuple through a tunnel, in one direction: outbound flows
// have the local side as source, inbound ones as destination.
type TopFlow struct {
	Connection string     `json:"connection"` // "" if the tunnel is gone
	Tunnel     string     `json:"tunnel"`
	ReqID      uint32     `json:"reqid"`
	Src        netip.Addr `json:"src"`
	Dst        netip.Addr `json:"dst"`
	Proto      uint8      `json:"proto"`
	SrcPort    uint16     `json:"src_port"`
	DstPort    uint16     `json:"dst_port"`
	Packets    uint64     `json:"packets"`
	Bytes      uint64     `json:"bytes"`
}

// Flow is one installed security policy: traffic matching the selectors goes through the
// tunnel between Local and Remote (ipsecctl calls these flows).
type Flow struct {
	Connection     string     `json:"connection"`
	Tunnel         string     `json:"tunnel"`
	ReqID          uint32     `json:"reqid"`
	LocalSelector  string     `json:"local_selector"`
	RemoteSelector string     `json:"remote_selector"`
	Local          netip.Addr `json:"local"`
	Remote         netip.Addr `json:"remote"`
}

// Connection returns the part of st that concerns connection name (as model.MatchName
// finds it): its IKE SAs, IPsec SAs and tunnels, with the daemon-wide datapath and eBPF
// lines.
func (st *Status) Connection(name string) (*Status, error) {
	var names []string
	add := func(n string) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, t := range st.Tunnels {
		add(t.Connection)
	}
	for _, s := range st.IKESAs {
		add(s.Connection)
	}
	name, err := model.MatchName("connection", name, names)
	if err != nil {
		return nil, err
	}
	out := &Status{Datapath: st.Datapath, EBPF: st.EBPF}
	for _, s := range st.IKESAs {
		if s.Connection == name {
			out.IKESAs = append(out.IKESAs, s)
		}
	}
	for _, s := range st.IPsecSAs {
		if s.Connection == name {
			out.IPsecSAs = append(out.IPsecSAs, s)
		}
	}
	for _, t := range st.Tunnels {
		if t.Connection == name {
			out.Tunnels = append(out.Tunnels, t)
		}
	}
	return out, nil
}
