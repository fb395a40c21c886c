package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/espgw/espgw/datapath"
)

// fakeDatapath is an in-memory datapath.Datapath. It stands in for the backends in
// unprivileged tests: this kernel has no ESP (xfrm cannot install SAs) and the userspace
// backend needs root and a network namespace. It records exactly what was installed.
type fakeDatapath struct {
	mu       sync.Mutex
	nextSPI  uint32
	sas      map[saKey]datapath.SA
	reserved map[saKey]bool // inbound SPIs allocated and neither installed nor deleted
	policies map[datapath.Policy]bool
	events   chan datapath.Event
	closed   bool
	ops      []string // policy changes in order: "add|del <local> <remote> reqid <n> prio <n>"
	// leftAtClose counts the SAs and policies still installed when Close was called:
	// an orderly shutdown removes them first.
	leftAtClose int
}

type saKey struct {
	dst netip.Addr
	spi uint32
}

func newFakeDatapath(spiBase uint32) *fakeDatapath {
	return &fakeDatapath{
		nextSPI:  spiBase,
		sas:      make(map[saKey]datapath.SA),
		reserved: make(map[saKey]bool),
		policies: make(map[datapath.Policy]bool),
		events:   make(chan datapath.Event, 16),
	}
}

func (f *fakeDatapath) Name() string { return "fake" }

func (f *fakeDatapath) AllocSPI(ctx context.Context, local, remote netip.Addr) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextSPI++
	f.reserved[saKey{local, f.nextSPI}] = true
	return f.nextSPI, nil
}

func (f *fakeDatapath) AddSAPair(ctx context.Context, p datapath.SAPair) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return fmt.Errorf("fake datapath closed")
	}
	f.sas[saKey{p.In.Dst, p.In.SPI}] = p.In
	delete(f.reserved, saKey{p.In.Dst, p.In.SPI})
	f.sas[saKey{p.Out.Dst, p.Out.SPI}] = p.Out
	return nil
}

func (f *fakeDatapath) DeleteSA(ctx context.Context, dst netip.Addr, spi uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sas, saKey{dst, spi})
	delete(f.reserved, saKey{dst, spi})
	return nil
}

func (f *fakeDatapath) AddPolicy(ctx context.Context, p datapath.Policy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policies[p] = true
	f.ops = append(f.ops, policyOp("add", p))
	return nil
}

func (f *fakeDatapath) DeletePolicy(ctx context.Context, p datapath.Policy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.policies, p)
	f.ops = append(f.ops, policyOp("del", p))
	return nil
}

func policyOp(op string, p datapath.Policy) string {
	return fmt.Sprintf("%s %v %v reqid %d prio %d", op, p.Selector.Local, p.Selector.Remote, p.ReqID, p.Priority)
}

// policyOps returns the policy changes so far.
func (f *fakeDatapath) policyOps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

// Counters reports a fixed volume per installed SA, so status shows they were asked for.
func (f *fakeDatapath) Counters(dst netip.Addr, spi uint32) (datapath.Counters, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sas[saKey{dst, spi}]; !ok {
		return datapath.Counters{}, fmt.Errorf("no SA spi %08x dst %v", spi, dst)
	}
	return datapath.Counters{Bytes: uint64(spi % 1000), Packets: 1}, nil
}

func (f *fakeDatapath) Events() <-chan datapath.Event { return f.events }

func (f *fakeDatapath) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.leftAtClose = len(f.sas) + len(f.policies)
	clear(f.sas)
	clear(f.policies)
	close(f.events)
	return nil
}

// reservedSPIs returns the inbound SPIs allocated and neither installed nor deleted.
func (f *fakeDatapath) reservedSPIs() []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []uint32
	for k := range f.reserved {
		out = append(out, k.spi)
	}
	return out
}

// snapshot returns copies of the installed SAs and policies, and whether Close was called.
func (f *fakeDatapath) snapshot() (map[saKey]datapath.SA, []datapath.Policy, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sas := make(map[saKey]datapath.SA, len(f.sas))
	for k, v := range f.sas {
		sas[k] = v
	}
	var ps []datapath.Policy
	for p := range f.policies {
		ps = append(ps, p)
	}
	return sas, ps, f.closed
}
