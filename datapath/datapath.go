// Package datapath is the boundary between the IKE control plane and the packet path.
//
// The control plane negotiates security associations; a Datapath installs them (SAD), installs
// the policies that steer traffic into them (SPD), reports their counters and tells the control
// plane when traffic wants a tunnel (acquire) or an SA reached a lifetime limit (expire).
// Two backends implement it: datapath/xfrm (Linux kernel ESP) and datapath/userspace (TUN + Go ESP).
package datapath

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// Encryption is an ESP encryption transform (RFC 4303 section 3.2).
type Encryption uint8

const (
	EncNone     Encryption = iota
	Enc3DESCBC             // RFC 2451, 24-byte key, 8-byte IV
	EncAESCBC              // RFC 3602, 16/24/32-byte key, 16-byte IV
	EncAESGCM16            // RFC 4106, key = AES key + 4-byte salt, 8-byte IV, 16-byte ICV
)

// Integrity is an ESP integrity transform; EncAESGCM16 uses IntegNone.
type Integrity uint8

const (
	IntegNone           Integrity = iota
	IntegHMACSHA1_96              // RFC 2404, 20-byte key, 12-byte ICV
	IntegHMACSHA256_128           // RFC 4868, 32-byte key, 16-byte ICV
	IntegHMACSHA384_192           // RFC 4868, 48-byte key, 24-byte ICV
	IntegHMACSHA512_256           // RFC 4868, 64-byte key, 32-byte ICV
)

// Key is secret key material. It never prints its bytes.
type Key []byte

// LogValue implements slog.LogValuer so keys are redacted in every log line.
func (Key) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// String keeps keys out of fmt output as well.
func (Key) String() string { return "[redacted]" }

// Selector is one side-pair of an IPsec policy (RFC 4301 section 4.4.1.1).
// Proto 0 means any protocol; ports 0 mean any port.
type Selector struct {
	Local, Remote         netip.Prefix
	Proto                 uint8
	LocalPort, RemotePort uint16
}

// Lifetime holds the limits of one SA; zero means unlimited.
type Lifetime struct {
	SoftBytes, HardBytes uint64
	Soft, Hard           time.Duration
}

// SA is one direction of an ESP tunnel-mode security association.
type SA struct {
	SPI      uint32     // host byte order
	Src, Dst netip.Addr // outer (tunnel) addresses
	// EncapSrcPort/EncapDstPort are set for ESP in UDP (RFC 3948, usually 4500/4500); zero = raw ESP.
	EncapSrcPort, EncapDstPort uint16
	Enc                        Encryption
	EncKey                     Key // for EncAESGCM16: AES key followed by the 4-byte salt
	Integ                      Integrity
	IntegKey                   Key
	ReplayWindow               uint32 // packets; inbound only
	Lifetime                   Lifetime
	ReqID                      uint32 // ties the SA to its policies
	// Selectors are every (local, remote) combination the SA carries, as seen from this
	// host (Local = our protected side): one per policy of its reqid.
	Selectors []Selector
}

// SAPair is the inbound and outbound SA negotiated together in one quick mode.
type SAPair struct {
	In, Out SA
}

// Policy steers traffic matching Selector through the tunnel between TunnelLocal and TunnelRemote.
type Policy struct {
	Selector                  Selector
	TunnelLocal, TunnelRemote netip.Addr
	ReqID                     uint32
	Priority                  uint32
}

// Counters are the traffic an SA carried.
type Counters struct {
	Bytes, Packets uint64
	ReplayDrops    uint64 // inbound only
	AuthFailures   uint64 // inbound only
	Installed      time.Time
}

// EventKind tells what a datapath Event reports.
type EventKind uint8

const (
	// EventAcquire: traffic matched a policy whose SA is not up (start: on-demand).
	EventAcquire EventKind = iota + 1
	// EventSoftExpire: an SA reached its soft lifetime; rekey.
	EventSoftExpire
	// EventHardExpire: an SA reached its hard lifetime and was removed.
	EventHardExpire
	// EventOutboundSwitch: a SwitchDeferrer let the outbound SA (SPI, Dst) of tunnel ReqID
	// carry traffic; the tunnel's newest such SA does. It may name an SA deleted meanwhile.
	EventOutboundSwitch
)

// Event is sent by a datapath to the control plane.
type Event struct {
	Kind     EventKind
	ReqID    uint32   // acquire: the policy's reqid; expire, switch: the SA's
	Selector Selector // acquire: the policy selector that matched
	// PacketSrc and PacketDst are the addresses of the packet that caused an acquire, when the backend
	// knows them: the IKEv2 initiator offers them first (RFC 7296 2.9).
	PacketSrc, PacketDst netip.Addr
	SPI                  uint32     // expire, switch: the SA
	Dst                  netip.Addr // expire, switch: the SA's destination
}

// Datapath is implemented by every backend. Methods are safe for concurrent use.
type Datapath interface {
	// Name is "xfrm" or "userspace".
	Name() string
	// AllocSPI reserves a unique inbound SPI for an SA from remote to local.
	AllocSPI(ctx context.Context, local, remote netip.Addr) (uint32, error)
	// AddSAPair installs both directions or neither.
	AddSAPair(ctx context.Context, p SAPair) error
	// DeleteSA removes one SA, or releases an inbound SPI that AllocSPI reserved for dst and
	// that never had an SA installed; deleting an unknown SA is not an error.
	DeleteSA(ctx context.Context, dst netip.Addr, spi uint32) error
	// AddPolicy installs out (and in/fwd where the backend needs them) policies for p.
	AddPolicy(ctx context.Context, p Policy) error
	// DeletePolicy removes what AddPolicy installed for p.
	DeletePolicy(ctx context.Context, p Policy) error
	// Counters reports the traffic of one SA.
	Counters(dst netip.Addr, spi uint32) (Counters, error)
	// Events delivers acquire and expire events until Close.
	Events() <-chan Event
	// Close removes everything the backend installed.
	Close() error
}

// SwitchDeferrer is a Datapath that makes a rekey's new outbound SA before it breaks the old
// one: when AddSAPair installs a pair for a tunnel that has an outbound SA already, the tunnel
// keeps sending on the older SA until the first packet opened on the new pair's inbound SA
// (the peer has the pair installed, so what we send on it is not lost), until
// SwitchTimeout has passed (traffic only we send), or until the older SAs are deleted,
// whichever comes first; it then reports EventOutboundSwitch. Other datapaths (xfrm) send
// on the new outbound SA as soon as AddSAPair returns.
type SwitchDeferrer interface {
	Datapath
	// SwitchTimeout is the longest a rekeyed tunnel stays on its older outbound SA.
	SwitchTimeout() time.Duration
}

// PolicyBatcher is a Datapath that installs many policies at once for less than one at a
// time (at start, every tunnel's policy).
type PolicyBatcher interface {
	// AddPolicies is AddPolicy for each of ps in order: errs[i] is what AddPolicy(ps[i])
	// would have returned.
	AddPolicies(ctx context.Context, ps []Policy) (errs []error)
}

// AddPolicies installs ps through dp, in one batch if dp is a PolicyBatcher; errs[i] is the
// outcome of ps[i].
func AddPolicies(ctx context.Context, dp Datapath, ps []Policy) []error {
	if b, ok := dp.(PolicyBatcher); ok {
		return b.AddPolicies(ctx, ps)
	}
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = dp.AddPolicy(ctx, p)
	}
	return errs
}
