// Package xfrm is the Linux kernel backend of datapath.Datapath: it programs the XFRM
// SAD and SPD over netlink, listens for ACQUIRE and EXPIRE messages, and removes what it
// installed when closed. Probe tells whether the kernel can run ESP at all.
package xfrm

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
)

// Options configure a Datapath.
type Options struct {
	// Logger receives the listener's warnings (dropped kernel events); nil discards them.
	Logger *slog.Logger
	// Netns is the network namespace to program. The zero value and netns.None() mean the
	// caller's current namespace. The Datapath does not close it.
	Netns netns.NsHandle
	// EventBuffer is the capacity of the Events channel; zero means 64.
	EventBuffer int
}

// Datapath programs kernel ESP through XFRM. It tracks every SA, SPI reservation and
// policy it installed and removes exactly those on Close. Methods are safe for concurrent use.
type Datapath struct {
	log    *slog.Logger
	ns     netns.NsHandle
	h      *netlink.Handle
	sub    *nl.NetlinkSocket
	events chan datapath.Event
	done   chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	sas      map[saID]saState
	policies map[datapath.Policy][]netlink.XfrmPolicy

	closeOnce sync.Once
	closeErr  error
}

var _ datapath.Datapath = (*Datapath)(nil)

// saID names an SA the way the kernel finds it: destination, SPI (protocol is always ESP).
type saID struct {
	dst netip.Addr
	spi uint32
}

func (id saID) String() string { return fmt.Sprintf("spi 0x%08x dst %s", id.spi, id.dst) }

// saState tells a reserved SPI (a larval kernel state from AllocSPI) from an installed SA.
type saState uint8

const (
	saLarval saState = iota + 1
	saInstalled
)

var errClosed = errors.New("xfrm datapath is closed")

// New opens netlink in opts.Netns and starts the ACQUIRE/EXPIRE listener.
func New(opts Options) (*Datapath, error) {
	ns := nsOrNone(opts.Netns)
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_XFRM)
	if err != nil {
		return nil, fmt.Errorf("open xfrm netlink in netns %v: %w", ns, err)
	}
	sub, err := nl.SubscribeAt(ns, netns.None(), unix.NETLINK_XFRM, nl.XFRMNLGRP_ACQUIRE, nl.XFRMNLGRP_EXPIRE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("subscribe to xfrm acquire and expire groups: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	buf := opts.EventBuffer
	if buf <= 0 {
		buf = 64
	}
	d := &Datapath{
		log:      log,
		ns:       ns,
		h:        h,
		sub:      sub,
		events:   make(chan datapath.Event, buf),
		done:     make(chan struct{}),
		sas:      make(map[saID]saState),
		policies: make(map[datapath.Policy][]netlink.XfrmPolicy),
	}
	d.wg.Add(1)
	go d.listen()
	return d, nil
}

// nsOrNone maps the zero handle to netns.None(): fd 0 is never a namespace we were given.
func nsOrNone(ns netns.NsHandle) netns.NsHandle {
	if ns == 0 {
		return netns.None()
	}
	return ns
}

// Name implements datapath.Datapath.
func (d *Datapath) Name() string { return "xfrm" }

// Events implements datapath.Datapath. Acquires are delivered for policies this Datapath
// installed, expires for SAs and SPI reservations it holds. The channel is closed by Close.
func (d *Datapath) Events() <-chan datapath.Event { return d.events }

// Close stops the listener and removes every SA, SPI reservation and policy this Datapath
// installed, and nothing else. It is safe to call more than once.
func (d *Datapath) Close() error {
	d.closeOnce.Do(func() {
		close(d.done)
		d.sub.Close()
		d.wg.Wait()
		close(d.events)

		d.mu.Lock()
		defer d.mu.Unlock()
		d.closed = true
		var errs []error
		for id := range d.sas {
			errs = append(errs, d.deleteState(id))
		}
		for _, ps := range d.policies {
			errs = append(errs, d.deletePolicies(ps))
		}
		clear(d.sas)
		clear(d.policies)
		d.h.Close()
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}
