// Package ike is espgw's IKEv1 engine (RFC 2409): main and aggressive mode with pre-shared
// keys, quick mode with PFS, informational exchanges (delete, notify, DPD per RFC 3706) and
// NAT traversal (RFC 3947), over a conn.Bind. It negotiates; the daemon installs what it
// negotiated through the Kernel interface.
//
// All state lives behind one mutex. Packets are handled on the goroutine running Run; timers
// and the API methods take the same lock. Kernel and KeyLogger methods are called with the
// lock held and must not call back into the Engine.
//
// The engine initiates from port 500 (conn.IKEPort) and floats to 4500 (conn.NATTPort) when
// NAT-T is in use; the Bind must listen on both. Failures are returned by Up, logged, and
// kept in Status().Errors: a pre-shared key mismatch wraps ErrPSKMismatch, identity or
// proxy-ID mismatches ErrIDMismatch, silence ErrTimeout, and proposal mismatches name both
// sides' proposals in swanctl syntax. Failures that unauthenticated packets can cause (a
// peer's first message, spoofable from any address) are logged and kept rate-limited per
// reason and peer (unauthlog.go).
//
// Child SAs outlive the IKE SA they were negotiated under (RFC 2409): the newest IKE SA
// with the peer owns them all. The initiator of an IKE SA replaces it with a new phase 1
// before it expires and then deletes the old one (rekey.go); when an IKE SA ends without a
// successor its child SAs stay installed and the next IKE SA adopts them; the next quick
// mode negotiates a new IKE SA first if none is up. Duplicate child SAs from quick modes
// both sides started at once are settled on one pair (duplicate.go). Behind a NAT the
// engine sends NAT-keepalives (keepalive.go).
package ike

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/ike/clock"
	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/ike/proposal"
)

// Kernel is the part of the datapath the engine programs. The daemon adapts it onto
// datapath.Datapath.
type Kernel interface {
	// AllocSPI reserves an inbound SPI for an SA from remote to local. The engine hands
	// every SPI it reserves either to InstallChildSA or back to ReleaseSPI.
	AllocSPI(ctx context.Context, local, remote netip.Addr) (uint32, error)
	// ReleaseSPI frees an inbound SPI that AllocSPI reserved and that will not be installed:
	// its quick mode failed, timed out or was abandoned. Releasing an SPI that was already
	// installed or released is not an error and does nothing; the engine never does so.
	ReleaseSPI(ctx context.Context, local, remote netip.Addr, spi uint32) error
	// InstallChildSA installs both directions of sa, or neither.
	InstallChildSA(ctx context.Context, sa *ChildSA) error
	// DeleteChildSA removes both directions of sa; unknown SAs are not an error.
	DeleteChildSA(ctx context.Context, sa *ChildSA) error
}

// KeyLogger receives key material for Wireshark decryption tables (the daemon's save_keys).
// A nil KeyLogger disables key export.
type KeyLogger interface {
	// IKESA reports the phase-1 encryption key of the IKE SA with that initiator cookie.
	IKESA(initiatorCookie [8]byte, encKey []byte)
	// ChildSA reports an installed child SA with its keys.
	ChildSA(sa *ChildSA)
	// IKEv2SA reports an established IKEv2 SA with its SK_e and SK_a keys.
	IKEv2SA(k IKEv2Keys)
}

// IKEv2Keys are what Wireshark's ikev2_decryption_table needs to decrypt an IKEv2 SA's
// messages: its SPIs, its proposal and the SK_ei/SK_er/SK_ai/SK_ar keys (for AES-GCM the
// encryption keys end with their 4-byte salt; there are no SK_a keys).
type IKEv2Keys struct {
	SPIi, SPIr     [8]byte
	Proposal       proposal.IKEv2
	EI, ER, AI, AR []byte
}

// Options configures an Engine. Bind and Kernel are required.
type Options struct {
	Logger     *slog.Logger // nil = discard
	Bind       conn.Bind
	Kernel     Kernel
	KeyLog     KeyLogger        // nil = no key export
	Observer   Observer         // nil = no outcome reports (outcome.go)
	Rand       io.Reader        // nil = crypto/rand.Reader
	Clock      clock.Clock      // nil = clock.Real: the time and every timer of the engine
	Retransmit RetransmitPolicy // zero fields take the defaults of DefaultRetransmit
	// NATKeepalive is the interval of NAT-keepalive packets (RFC 3948 4) while NAT-D shows
	// us behind a NAT; 0 = DefaultNATKeepalive.
	NATKeepalive time.Duration
}

// TunnelInfo describes a configured tunnel and the reqid the engine assigned to it, so the
// daemon can install the matching policies.
type TunnelInfo struct {
	Connection, Tunnel    string
	ReqID                 uint32
	LocalAddr, RemoteAddr netip.Addr
	LocalTS, RemoteTS     []TrafficSelector // every combination goes through the tunnel
	Start                 model.StartAction
	// OneSidedSince is set while the tunnel's newest child SA is one-sided: packets out and
	// none in for two DPD rounds (or unconfirmed samples) with the peer answering; see
	// onesided.go. Zero otherwise.
	OneSidedSince time.Time
}

// Engine negotiates IKEv1 SAs. Create it with New, feed it with Configure and Run.
type Engine struct {
	opts Options
	log  *slog.Logger
	mu   sync.Mutex

	conns     map[string]*connection
	ikeSAs    map[[8]byte]*ikeSA  // by initiator cookie
	v2SAs     map[ikev2.SPI]*v2SA // IKEv2, by our SPI
	children  map[uint32]*childSA
	reqIDs    map[tunnelKey]uint32 // every reqid ever assigned, so it never changes
	nextReqID uint32
	halfOpen  int // responder IKE SAs not yet established
	closed    bool
	errs      []ConnError
	unauth    unauthLog
	dhLimit   dhLimit
	cookies   v2Cookies // IKEv2 responder COOKIE secrets (v2_cookie.go)
	qmPace    quickModePace
	// work counts DH computations out of the lock (dhwork.go); dhWorkers bounds them.
	work      sync.WaitGroup
	dhWorkers chan struct{}
}

// New returns an Engine; it does nothing until Configure and Run are called.
func New(opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	} else {
		opts.Rand = &lockedReader{r: opts.Rand}
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	opts.Retransmit = opts.Retransmit.withDefaults()
	if opts.NATKeepalive <= 0 {
		opts.NATKeepalive = DefaultNATKeepalive
	}
	return &Engine{
		opts:      opts,
		log:       opts.Logger,
		conns:     make(map[string]*connection),
		ikeSAs:    make(map[[8]byte]*ikeSA),
		v2SAs:     make(map[ikev2.SPI]*v2SA),
		children:  make(map[uint32]*childSA),
		reqIDs:    make(map[tunnelKey]uint32),
		unauth:    unauthLog{window: unauthLogWindow, entries: make(map[unauthKey]*unauthEntry)},
		dhWorkers: make(chan struct{}, runtime.GOMAXPROCS(0)),
	}
}

// Run receives IKE messages from the Bind until ctx ends or the Bind closes. On return it
// deletes every child SA through the Kernel and sends Delete notifications, best effort.
func (e *Engine) Run(ctx context.Context) error {
	defer e.shutdown()
	in := e.opts.Bind.IKE()
	for {
		select {
		case <-ctx.Done():
			return nil
		case pkt, ok := <-in:
			if !ok {
				return nil
			}
			e.mu.Lock()
			e.handlePacket(pkt)
			e.mu.Unlock()
		}
	}
}

func (e *Engine) shutdown() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	for _, sa := range e.ikeSAs {
		e.deleteIKESA(sa, true, errShutdown)
	}
	for _, sa := range e.v2SAs {
		e.deleteV2SA(sa, true, errShutdown)
	}
	e.flushUnauthLog()
}

// Up negotiates the tunnel (all tunnels of the connection when tunnel is "") and returns
// when each is established or has failed, with the reason.
func (e *Engine) Up(ctx context.Context, connName, tunnel string) error {
	e.mu.Lock()
	ts, err := e.lookupTunnels(connName, tunnel)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	done := make([]chan error, 0, len(ts))
	for _, t := range ts {
		if t.child != nil {
			continue
		}
		ch := make(chan error, 1)
		done = append(done, ch)
		e.startTunnel(t, ch)
	}
	e.mu.Unlock()
	var errs []error
	for _, ch := range done {
		select {
		case err := <-ch:
			errs = append(errs, err)
		case <-ctx.Done():
			return fmt.Errorf("ike: up %s: %w", connName, ctx.Err())
		}
	}
	return errors.Join(errs...)
}

// Down deletes the tunnel's child SA (every tunnel and the IKE SA when tunnel is ""),
// telling the peer with Delete notifications.
func (e *Engine) Down(ctx context.Context, connName, tunnel string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ts, err := e.lookupTunnels(connName, tunnel)
	if err != nil {
		return err
	}
	for _, t := range ts { // first, so that ending a quick mode starts none of them
		t.manualDown = true
		t.stopRetry(false)
		t.lastOneSided = time.Time{} // the next up starts afresh
		t.conn.unqueue(t)
	}
	for _, t := range ts {
		if t.child != nil {
			e.deleteChild(t.child, true)
		}
		if t.qm != nil {
			t.qm.fail(errDown)
		}
		t.notify(errDown)
	}
	if tunnel == "" {
		c := e.conns[connName]
		for _, sa := range e.ikeSAs {
			if sa.conn == c {
				e.deleteIKESA(sa, true, errDown)
			}
		}
		e.deleteV2SAs(c, errDown)
	}
	return nil
}

// Acquire brings up the tunnel with that reqid (a datapath ACQUIRE for start: on-demand).
func (e *Engine) Acquire(reqID uint32) bool {
	return e.AcquirePacket(reqID, netip.Addr{}, netip.Addr{})
}

// AcquirePacket is Acquire for a packet from src to dst: the IKEv2 negotiation it starts
// offers the packet's addresses first (RFC 7296 2.9), so that a responder with several
// tunnels for parts of ours picks the one that holds the packet. It reports whether it
// started a negotiation: not when the tunnel has a child SA or one under way.
func (e *Engine) AcquirePacket(reqID uint32, src, dst netip.Addr) (started bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.conns {
		for _, t := range c.tunnels {
			if t.reqID == reqID && t.child == nil && t.qm == nil && !t.v2Pending {
				t.trigger = packet{src, dst}
				e.startTunnel(t, nil)
				started = true
			}
		}
	}
	return started
}

// Expire handles a lifetime event for the child SA with that SPI (inbound or outbound).
// Soft: negotiate a replacement and delete the old SA once it is installed. Hard: delete it,
// and renegotiate if the tunnel has start: always.
func (e *Engine) Expire(spi uint32, hard bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expire(spi, hard)
}

// expire is Expire with e.mu held, for the engine's own lifetime timers.
func (e *Engine) expire(spi uint32, hard bool) {
	ch := e.findChild(spi)
	if ch == nil {
		return
	}
	t := ch.tunnel
	if !hard {
		// Only the tunnel's newest child SA is rekeyed; an older one just runs out.
		if t.child == ch && t.qm == nil && !ch.rekeying {
			ch.rekeying = true
			e.startTunnel(t, nil)
		}
		return
	}
	e.deleteChild(ch, true)
	if t.cfg.Start == model.StartAlways && t.child == nil && t.qm == nil {
		e.startTunnel(t, nil)
	}
}

// Tunnels lists every configured tunnel with its reqid, sorted by connection and tunnel name.
func (e *Engine) Tunnels() []TunnelInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []TunnelInfo
	for _, c := range e.sortedConns() {
		for _, t := range c.sortedTunnels() {
			out = append(out, TunnelInfo{
				Connection: c.cfg.Name, Tunnel: t.cfg.Name, ReqID: t.reqID,
				LocalAddr: c.cfg.LocalAddress, RemoteAddr: c.cfg.RemoteAddress,
				LocalTS: t.localTS(), RemoteTS: t.remoteTS(), Start: t.cfg.Start,
				OneSidedSince: t.oneSidedSince(),
			})
		}
	}
	return out
}
