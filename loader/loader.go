// Package loader loads espgw's eBPF programs (the C in bpf/), attaches them to interfaces and
// reads and writes their maps. It is the only part of espgw that knows the map layouts; the
// control plane programs it through Loader's methods.
//
// The tc programs classify IPv4 packets against the policy selectors, count them per policy,
// per outbound SA and per flow, drop traffic of policies whose SA is down (fail closed) while
// reporting it as an Event, and clamp the TCP MSS of SYN and SYN-ACK segments. The XDP program
// counts inbound ESP per SPI and drops ESP with unknown SPIs and IKE from unknown peers.
package loader

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// MaxPolicies is the number of policies the tc programs can hold at once (MAX_POLICIES in
// bpf/espgw.h). Classifying a packet costs the same whatever their number.
const MaxPolicies = 4096

// Options configure Open. The zero value is ready to use.
type Options struct {
	// EventInterval is the minimum time between two interesting-traffic events of one
	// policy; 0 means one second.
	EventInterval time.Duration
	// MaxFlows is the capacity of the per-flow table (least recently used flows are evicted);
	// 0 means 16384.
	MaxFlows uint32
	// XDP sets the initial XDP filters; the zero value drops both kinds of traffic.
	XDP XDPFilters
	// ClassifyEveryPacket bypasses the tc programs' flow cache, so that every packet pays
	// for its classification: for benchmarks of it.
	ClassifyEveryPacket bool
}

// Loader owns the loaded programs and maps and everything attached with them.
// Its methods are safe for concurrent use.
type Loader struct {
	tc  tcObjects
	xdp xdpObjects

	mu          sync.Mutex
	policies    policyTable
	outSAs      outboundSAs
	inSAs       inboundSAs
	peerSlots   map[uint32]uint32 // what peer_slots holds: slot -> address (kernel order)
	attachments []attachment

	ring   *ringbuf.Reader
	events chan Event
	done   chan struct{}
}

// Open loads the programs and maps into the kernel. Nothing is attached yet.
func Open(opts Options) (*Loader, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock rlimit: %w", err)
	}
	if opts.EventInterval == 0 {
		opts.EventInterval = time.Second
	}
	if opts.EventInterval < 0 {
		return nil, fmt.Errorf("EventInterval %v: want a positive duration", opts.EventInterval)
	}
	if opts.MaxFlows == 0 {
		opts.MaxFlows = 16384
	}

	l := &Loader{events: make(chan Event, 64), done: make(chan struct{})}
	tcSpec, err := loadTc()
	if err != nil {
		return nil, err
	}
	if err := tcSpec.Variables[tcVarEventIntervalNs].Set(uint64(opts.EventInterval)); err != nil {
		return nil, fmt.Errorf("set event interval: %w", err)
	}
	if err := tcSpec.Variables[tcVarFlowCacheOff].Set(opts.ClassifyEveryPacket); err != nil {
		return nil, fmt.Errorf("set flow cache bypass: %w", err)
	}
	tcSpec.Maps[tcMapFlows].MaxEntries = opts.MaxFlows
	if err := tcSpec.LoadAndAssign(&l.tc, nil); err != nil {
		return nil, fmt.Errorf("load tc programs: %w", verifierDetail(err))
	}
	xdpSpec, err := loadXdp()
	if err != nil {
		l.tc.Close()
		return nil, err
	}
	if err := xdpSpec.Variables["filters"].Set(opts.XDP.bits()); err != nil {
		l.tc.Close()
		return nil, fmt.Errorf("set XDP filters: %w", err)
	}
	if err := xdpSpec.LoadAndAssign(&l.xdp, nil); err != nil {
		l.tc.Close()
		return nil, fmt.Errorf("load XDP program: %w", verifierDetail(err))
	}
	l.ring, err = ringbuf.NewReader(l.tc.Events)
	if err != nil {
		l.tc.Close()
		l.xdp.Close()
		return nil, fmt.Errorf("open event ring buffer: %w", err)
	}
	go l.readEvents()
	return l, nil
}

// verifierDetail adds the verifier log's tail to a load error.
func verifierDetail(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w\n%+v", err, ve)
	}
	return err
}

// Close detaches every program this Loader attached, stops Events and frees the maps.
func (l *Loader) Close() error {
	l.mu.Lock()
	var errs []error
	for i := len(l.attachments) - 1; i >= 0; i-- {
		if err := l.attachments[i].detach(); err != nil {
			errs = append(errs, err)
		}
	}
	l.attachments = nil
	l.mu.Unlock()

	if err := l.ring.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close ring buffer: %w", err))
	}
	<-l.done
	errs = append(errs, l.tc.Close(), l.xdp.Close())
	return errors.Join(errs...)
}
