// Package userspace is the datapath that does ESP in Go: inner packets travel through a TUN
// device, ESP goes out as ESP in UDP on the shared conn.Bind (RFC 3948) or as raw IP
// protocol 50. It carries traffic where the kernel has no ESP (containers, OpenVZ/LXC, or
// kernels built without INET_ESP).
//
// Outbound: TUN (TSO super-packets split into segments) → SPD lookup → the SA carrying the
// policy's reqid (after a rekey the old one until the peer has the new pair, switch.go) →
// seal in place → batched send (conn.Bind.SendESPBatch: sendmmsg + UDP GSO; sendmmsg on
// the raw socket). Inbound, on the receiving goroutine: Bind (recvmmsg + UDP GRO) / raw
// socket (recvmmsg) → SAD lookup by SPI → replay check, ICV, decrypt, window update
// (datapath/esp) → selector check (→ the first packet of a rekeyed pair switches its
// tunnel's outbound SA) → queue; then the worker: batched TUN write (GRO).
package userspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/esp"
)

// Defaults for Options.
const (
	DefaultTUNName = "espgw0"
	// DefaultMTU leaves room for the largest overhead on a 1500-byte path: outer IPv4 (20),
	// UDP (8), ESP header (8), 16-byte IV, up to 17 bytes padding and trailer, 32-byte ICV
	// = 101 bytes; at 1400 the padding is at most 8 bytes, so every transform fits.
	DefaultMTU        = 1400
	DefaultRouteTable = 220
	DefaultRulePrio   = 220
)

// Options configures New.
type Options struct {
	// Bind carries ESP in UDP; it may be nil if only raw ESP SAs are installed.
	Bind conn.Bind
	// TUN is the device inner packets travel through; nil: New creates a kernel TUN named
	// TUNName. New takes it over: Close closes it.
	TUN     TUN
	TUNName string // default DefaultTUNName
	MTU     int    // default DefaultMTU
	// Routes points the policies' remote prefixes at the TUN; nil: netlink routes into the
	// TUN New created (table RouteTable), none for an injected TUN (its owner routes).
	Routes Routes
	// RawESP opens a raw IP protocol 50 socket for SAs without UDP encapsulation.
	RawESP bool
	// RouteTable and RulePriority place the routes into the TUN (policy routing, like
	// strongSwan's table 220).
	RouteTable, RulePriority int
	// LifetimeInterval is how often lifetimes are checked; default 1 s.
	LifetimeInterval time.Duration
	// SwitchTimeout is the longest a rekeyed tunnel keeps sending on its older outbound SA
	// while no packet arrived on the new pair (switch.go); default DefaultSwitchTimeout.
	SwitchTimeout time.Duration
	// Logger receives errors of the background packet loops; default discards.
	Logger *slog.Logger
}

// Datapath implements datapath.Datapath with Go ESP over a TUN device.
type Datapath struct {
	opts     Options
	tun      TUN
	name     string
	raw      *rawESP
	events   chan datapath.Event
	switches *eventQueue // EventOutboundSwitch, raised on the packet path
	drops    dropCounters

	// policyMu serializes policy changes and with them routes, taken before mu: a batch of
	// routes (netlink, one per policy) must not hold up AllocSPI's quick modes.
	policyMu sync.Mutex
	routes   Routes
	mu       sync.Mutex // serializes writers of sad, spd, reserved
	sad      sad
	spd      atomic.Pointer[spd]
	reserved map[uint32]netip.Addr // SPIs handed out by AllocSPI, not yet installed: their local address

	inQueue   chan *packetBuf
	free      chan *packetBuf
	bufSize   int
	bindBatch int // packets per Bind.SendESPBatch

	done   chan struct{}
	closed atomic.Bool
	wg     sync.WaitGroup
	once   sync.Once
}

var _ datapath.SwitchDeferrer = (*Datapath)(nil)

// ErrNoSA is returned by Counters for an SA that is not installed.
var ErrNoSA = errors.New("userspace: no such SA")

// New starts the packet loops over opts.TUN and opts.Bind, creating the kernel TUN (and its
// routes) when opts.TUN is nil.
//
// Without opts.TUN, or with RawESP, New must run on an OS thread inside the target network
// namespace (runtime.LockOSThread + netns.Set): the TUN device, the netlink handle and the
// raw socket it opens stay in that namespace, whatever thread later uses them.
func New(opts Options) (_ *Datapath, err error) {
	if opts.TUNName == "" {
		opts.TUNName = DefaultTUNName
	}
	if opts.MTU == 0 {
		opts.MTU = DefaultMTU
	}
	if opts.MTU < 576 || opts.MTU > 65535-256 {
		return nil, fmt.Errorf("userspace: MTU %d, expected 576..65279", opts.MTU)
	}
	if opts.RouteTable == 0 {
		opts.RouteTable = DefaultRouteTable
	}
	if opts.RulePriority == 0 {
		opts.RulePriority = DefaultRulePrio
	}
	if opts.LifetimeInterval == 0 {
		opts.LifetimeInterval = time.Second
	}
	if opts.SwitchTimeout == 0 {
		opts.SwitchTimeout = DefaultSwitchTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Datapath{
		opts:     opts,
		tun:      opts.TUN,
		routes:   opts.Routes,
		events:   make(chan datapath.Event, 64),
		switches: newEventQueue(),
		reserved: make(map[uint32]netip.Addr),
		done:     make(chan struct{}),
		bufSize:  bufOffset + opts.MTU + esp.Headroom + esp.Tailroom + 64,
	}
	d.spd.Store(&spd{})
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.tun == nil {
		kt, err := createTUN(opts.TUNName, opts.MTU)
		if err != nil {
			return nil, err
		}
		d.tun = kt
		if d.routes == nil {
			nr, err := newNetlinkRoutes(kt.Name(), opts.RouteTable, opts.RulePriority)
			if err != nil {
				return nil, err
			}
			d.routes = nr
		}
	}
	if d.routes == nil {
		d.routes = noRoutes{}
	}
	d.name = d.tun.Name()
	if opts.RawESP {
		if d.raw, err = listenRawESP(); err != nil {
			return nil, fmt.Errorf("userspace: raw ESP socket: %w", err)
		}
	}
	if opts.Bind != nil {
		d.bindBatch = max(1, opts.Bind.BatchSize())
	}
	d.startInbound()
	d.start(d.outboundLoop)
	d.start(d.lifetimeLoop)
	d.start(d.reportSwitches)
	if opts.Bind != nil {
		opts.Bind.SetESPHandler(d.receiveUDP)
	}
	return d, nil
}

func (d *Datapath) start(f func()) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f()
	}()
}

// Name implements datapath.Datapath.
func (d *Datapath) Name() string { return "userspace" }

// TUNName reports the name of the TUN device.
func (d *Datapath) TUNName() string { return d.name }

// Events implements datapath.Datapath. The channel is closed by Close.
func (d *Datapath) Events() <-chan datapath.Event { return d.events }

// Drops reports how many packets were discarded for reason r.
func (d *Datapath) Drops(r DropReason) uint64 { return d.drops[r].Load() }

// Close implements datapath.Datapath: it stops the loops and removes the routes, rule and
// TUN device it created.
func (d *Datapath) Close() error {
	var errs []error
	d.once.Do(func() {
		d.closed.Store(true)
		close(d.done)
		if d.opts.Bind != nil {
			d.opts.Bind.SetESPHandler(nil)
		}
		if d.raw != nil {
			d.raw.Close()
		}
		if d.tun != nil {
			errs = append(errs, d.tun.Close())
		}
		d.wg.Wait()
		d.stopSwitchTimeouts()
		d.policyMu.Lock()
		if d.routes != nil {
			errs = append(errs, d.routes.Close())
		}
		d.policyMu.Unlock()
		close(d.events)
	})
	return errors.Join(errs...)
}

// emit delivers an expire event, waiting while the control plane is busy.
func (d *Datapath) emit(ev datapath.Event) {
	select {
	case d.events <- ev:
	case <-d.done:
	}
}

// AllocSPI implements datapath.Datapath: a random SPI of at least 256 (RFC 4303 section
// 2.1 reserves 1-255) that no installed or reserved inbound SA uses.
func (d *Datapath) AllocSPI(ctx context.Context, local, remote netip.Addr) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for range 1000 {
		spi, err := randomUint32()
		if err != nil {
			return 0, fmt.Errorf("userspace: SPI: %w", err)
		}
		_, taken := d.reserved[spi]
		if _, installed := d.sad.in.load(spi); spi < 256 || taken || installed {
			continue
		}
		d.reserved[spi] = local.Unmap()
		return spi, nil
	}
	return 0, errors.New("userspace: SPI: no free value found after 1000 tries")
}
