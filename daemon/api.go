package daemon

import (
	"net/netip"
	"time"
)

// The control protocol: the client connects to the unix socket, writes one JSON Request,
// reads one JSON Response, and the daemon closes the connection.

// Commands of a Request.
const (
	CmdStatus = "status" // Response.Status
	CmdUp     = "up"     // negotiate Connection (every tunnel, or Tunnel); waits for the outcome
	CmdDown   = "down"   // delete Connection's SAs (every tunnel and the IKE SA, or Tunnel)
	CmdReload = "reload" // re-read the configuration file, as SIGHUP does
	CmdFlows  = "flows"  // Response.Flows
)

// Request is one control request.
type Request struct {
	Command    string `json:"command"`
	Connection string `json:"connection,omitempty"`
	Tunnel     string `json:"tunnel,omitempty"`
}

// Response answers a Request. Error is set when the command failed; it may span lines
// (one per configuration problem on reload).
type Response struct {
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
	Flows  []Flow  `json:"flows,omitempty"`
}

// Status is what `espgw status` shows.
type Status struct {
	Datapath string        `json:"datapath"` // "xfrm" or "userspace"
	IKESAs   []IKESA       `json:"ike_sas"`
	IPsecSAs []IPsecSA     `json:"ipsec_sas"`
	Tunnels  []TunnelState `json:"tunnels"`
}

// IKESA is one phase-1 SA.
type IKESA struct {
	Connection      string         `json:"connection"`
	Local           netip.AddrPort `json:"local"`
	Peer            netip.AddrPort `json:"peer"`
	InitiatorCookie string         `json:"initiator_cookie"` // 16 hex digits
	ResponderCookie string         `json:"responder_cookie"`
	State           string         `json:"state"` // engine state, e.g. "ESTABLISHED", "MM3_SENT"
	Initiator       bool           `json:"initiator"`
	Mode            string         `json:"mode"`       // "main" or "aggressive"
	Algorithms      string         `json:"algorithms"` // "3des-sha1-modp1024", "" until chosen
	Established     time.Time      `json:"established,omitzero"`
	AgeSeconds      int64          `json:"age_seconds"` // since established, or since created if not yet
	NATT            bool           `json:"nat_t"`       // a NAT was detected and IKE floated to 4500
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
