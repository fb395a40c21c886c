// Package datapathtest is an in-memory datapath.Datapath for tests of what programs a
// datapath: this kernel has no ESP (xfrm cannot install SAs) and the userspace backend
// carries packets, which those tests do not look at.
package datapathtest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/espgw/espgw/datapath"
)

// Datapath is an in-memory datapath.Datapath. It records exactly what was installed.
type Datapath struct {
	mu          sync.Mutex
	nextSPI     uint32
	sas         map[SAKey]datapath.SA
	reserved    map[SAKey]bool // inbound SPIs allocated and neither installed nor deleted
	policies    map[datapath.Policy]bool
	events      chan datapath.Event
	closed      bool
	ops         []string // policy changes in order: "add|del <local> <remote> reqid <n> prio <n>"
	leftAtClose int
}

// LeftAtClose counts the SAs and policies still installed when Close was called: an
// orderly shutdown removes them first.
func (f *Datapath) LeftAtClose() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leftAtClose
}

// Send delivers ev on the Events channel, as a backend reports acquires and expires.
func (f *Datapath) Send(ev datapath.Event) { f.events <- ev }

// SAKey names an SA as datapath.Datapath.DeleteSA does.
type SAKey struct {
	Dst netip.Addr
	SPI uint32
}

// New returns an empty datapath whose AllocSPI counts up from spiBase+1.
func New(spiBase uint32) *Datapath {
	return &Datapath{
		nextSPI:  spiBase,
		sas:      make(map[SAKey]datapath.SA),
		reserved: make(map[SAKey]bool),
		policies: make(map[datapath.Policy]bool),
		events:   make(chan datapath.Event, 16),
	}
}

func (f *Datapath) Name() string { return "fake" }

func (f *Datapath) AllocSPI(ctx context.Context, local, remote netip.Addr) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextSPI++
	f.reserved[SAKey{local, f.nextSPI}] = true
	return f.nextSPI, nil
}

func (f *Datapath) AddSAPair(ctx context.Context, p datapath.SAPair) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return fmt.Errorf("fake datapath closed")
	}
	f.sas[SAKey{p.In.Dst, p.In.SPI}] = p.In
	delete(f.reserved, SAKey{p.In.Dst, p.In.SPI})
	f.sas[SAKey{p.Out.Dst, p.Out.SPI}] = p.Out
	return nil
}

func (f *Datapath) DeleteSA(ctx context.Context, dst netip.Addr, spi uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sas, SAKey{dst, spi})
	delete(f.reserved, SAKey{dst, spi})
	return nil
}

func (f *Datapath) AddPolicy(ctx context.Context, p datapath.Policy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policies[p] = true
	f.ops = append(f.ops, policyOp("add", p))
	return nil
}

func (f *Datapath) DeletePolicy(ctx context.Context, p datapath.Policy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.policies, p)
	f.ops = append(f.ops, policyOp("del", p))
	return nil
}

func policyOp(op string, p datapath.Policy) string {
	return fmt.Sprintf("%s %v %v reqid %d prio %d", op, p.Selector.Local, p.Selector.Remote, p.ReqID, p.Priority)
}

// PolicyOps returns the policy changes so far: "add|del <local> <remote> reqid <n> prio <n>".
func (f *Datapath) PolicyOps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

// Counters reports a fixed volume per installed SA, so status shows they were asked for.
func (f *Datapath) Counters(dst netip.Addr, spi uint32) (datapath.Counters, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sas[SAKey{dst, spi}]; !ok {
		return datapath.Counters{}, fmt.Errorf("no SA spi %08x dst %v", spi, dst)
	}
	return datapath.Counters{Bytes: uint64(spi % 1000), Packets: 1}, nil
}

func (f *Datapath) Events() <-chan datapath.Event { return f.events }

func (f *Datapath) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.leftAtClose = len(f.sas) + len(f.policies)
	clear(f.sas)
	clear(f.policies)
	close(f.events)
	return nil
}

// ReservedSPIs returns the inbound SPIs allocated and neither installed nor deleted.
func (f *Datapath) ReservedSPIs() []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []uint32
	for k := range f.reserved {
		out = append(out, k.SPI)
	}
	return out
}

// Snapshot returns copies of the installed SAs and policies, and whether Close was called.
func (f *Datapath) Snapshot() (map[SAKey]datapath.SA, []datapath.Policy, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sas := make(map[SAKey]datapath.SA, len(f.sas))
	for k, v := range f.sas {
		sas[k] = v
	}
	var ps []datapath.Policy
	for p := range f.policies {
		ps = append(ps, p)
	}
	return sas, ps, f.closed
}
