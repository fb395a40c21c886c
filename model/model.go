// Package model is the engine's view of what to negotiate: connections (IKE peers) and
// their tunnels (pairs of traffic selectors). config translates a file into it; ike,
// daemon and the tools read it. It holds no behaviour beyond formatting.
package model

import (
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/espgw/espgw/ike/proposal"
)

const (
	// DefaultQuickModes is safe with every peer. strongSwan keeps the IVs of only 3 phase-2
	// exchanges per ISAKMP SA, least recently used out, and its worker threads may take a
	// QM3 after the next QM1 sent behind it: with 2 in flight, 1 in 3 runs of 8 tunnels
	// lost a child SA that way (measured with 5.9.8). libreswan and Cisco keep an IV per
	// exchange and take more.
	DefaultQuickModes = 1
	// MaxQuickModes is the most quick_modes accepts: beyond it peers fail, not speed up.
	MaxQuickModes = 16
	// DefaultCookieThreshold is how many half-open IKEv2 SAs a responder keeps before it
	// demands a COOKIE (RFC 7296 2.6): a few peers starting at once pass without one.
	DefaultCookieThreshold = 32
	// DefaultFragmentSize is the largest IKEv2 message sent unfragmented (RFC 7383): 1280,
	// the IPv6 minimum MTU, passes most paths.
	DefaultFragmentSize = 1280
	// MinFragmentSize is the smallest fragment_size accepted: the largest fragment
	// overhead (IPv6, UDP, non-ESP marker, IKE and SKF headers, AES-CBC IV and padding,
	// HMAC-SHA-512 checksum: 152 bytes) and some data.
	MinFragmentSize = 200
)

// KeyIDPrefix marks an ID_KEY_ID identity in its text form.
const KeyIDPrefix = "keyid:"

// Mode is the phase-1 exchange.
type Mode string

const (
	ModeMain       Mode = "main"
	ModeAggressive Mode = "aggressive"
)

// NATTraversal is the RFC 3947 policy.
type NATTraversal string

const (
	NATTAuto  NATTraversal = "auto"  // float to 4500 when NAT-D shows a NAT
	NATTForce NATTraversal = "force" // always encapsulate ESP in UDP
	NATTOff   NATTraversal = "off"   // never: raw ESP, no NAT-T vendor IDs
)

// StartAction says when a tunnel is negotiated.
type StartAction string

const (
	StartOnDemand StartAction = "on-demand" // on the first packet (ACQUIRE / eBPF event)
	StartAlways   StartAction = "always"    // at startup, and again whenever it goes down
	StartManual   StartAction = "manual"    // only on `espgw up`
)

// IDKind is the type of an IKE identity (RFC 2407 4.6.2.1).
type IDKind uint8

const (
	IDAddr     IDKind = iota + 1 // ID_IPV4_ADDR / ID_IPV6_ADDR
	IDFQDN                       // ID_FQDN
	IDUserFQDN                   // ID_USER_FQDN
	IDKeyID                      // ID_KEY_ID
)

// Identity is a phase-1 identity.
type Identity struct {
	Kind IDKind
	Addr netip.Addr // IDAddr
	Name string     // other kinds
}

// Secret is a pre-shared key; it never appears in logs or fmt output.
type Secret []byte

func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }
func (Secret) String() string       { return "[redacted]" }

// IKE holds the phase-1 settings of a connection.
type IKE struct {
	// Version is the IKE version: 1 (RFC 2409) or 2 (RFC 7296); 0 means 1.
	Version   uint8
	Mode      Mode           // IKEv1 only
	Proposals []proposal.IKE // IKEv1
	// V2Proposals are the IKE SA proposals of an IKEv2 connection (with their PRF).
	V2Proposals  []proposal.IKEv2
	Lifetime     time.Duration
	NATTraversal NATTraversal
	DPDDelay     time.Duration // 0 = no DPD (RFC 3706)
	DPDTimeout   time.Duration
	// QuickModes is how many quick modes may be in flight under one ISAKMP SA at once; the
	// rest wait in order. Peers keep the CBC IV of only a few phase-2 exchanges per ISAKMP
	// SA (strongSwan: charon.max_ikev1_exchanges, 3, counting DPD too).
	QuickModes int
	// CookieThreshold (IKEv2 responder): at this many half-open IKE SAs, all peers
	// together, an IKE_SA_INIT must carry a COOKIE (RFC 7296 2.6); 0 = always.
	CookieThreshold int
	// FragmentSize (IKEv2) is the largest IP datagram an encrypted IKE message may fill;
	// longer ones go out as fragments (RFC 7383) if the peer supports them; 0 = no
	// fragmentation offered.
	FragmentSize int
}

// ServiceAddress is the address the protected traffic leaves from (the seed's secondary IP).
type ServiceAddress struct {
	Address   netip.Prefix
	Interface string
}

// Connection is one IKE peer.
type Connection struct {
	Name           string
	LocalAddress   netip.Addr
	RemoteAddress  netip.Addr
	LocalID        Identity
	RemoteID       Identity
	PSK            Secret
	IKE            IKE
	ServiceAddress *ServiceAddress // nil = none
	Tunnels        []Tunnel        // sorted by Name
}

// Tunnel is one child SA: an IKEv1 quick mode's pair of proxy IDs, or an IKEv2 CHILD_SA
// whose traffic selectors list every subnet of each side (RFC 7296 2.9), so that one SA
// pair carries every (local, remote) combination.
type Tunnel struct {
	Name string
	// LocalSubnets and RemoteSubnets are IPv4 prefixes, at least one each; IKEv1 carries
	// exactly one per side.
	LocalSubnets  []netip.Prefix
	RemoteSubnets []netip.Prefix
	Protocol      uint8  // 0 = any
	LocalPort     uint16 // 0 = any
	RemotePort    uint16 // 0 = any
	Proposals     []proposal.ESP
	Lifetime      time.Duration
	LifeKilobytes uint64 // 0 = no volume limit
	ReplayWindow  uint32
	Start         StartAction
}

// Prefixes formats subnets comma-separated, the way config reads a local_subnet list.
func Prefixes(subnets []netip.Prefix) string {
	s := make([]string, len(subnets))
	for i, p := range subnets {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// String formats id the way config.ParseIdentity reads it.
func (id Identity) String() string {
	switch id.Kind {
	case IDAddr:
		return id.Addr.String()
	case IDKeyID:
		return KeyIDPrefix + id.Name
	default:
		return id.Name
	}
}
