package userspace

import (
	"context"
	"fmt"
	"slices"

	"github.com/espgw/espgw/datapath"
)

// AddPolicy implements datapath.Datapath: the policy joins the SPD and its remote prefix is
// routed into the TUN (Options.Routes; by default table Options.RouteTable, from
// Selector.Local's address when that is a single address configured on this host).
func (d *Datapath) AddPolicy(ctx context.Context, p datapath.Policy) error {
	return d.AddPolicies(ctx, []datapath.Policy{p})[0]
}

// AddPolicies implements datapath.PolicyBatcher: AddPolicy for each of ps, with one call to
// Routes and one copy of the SPD for all of them.
func (d *Datapath) AddPolicies(ctx context.Context, ps []datapath.Policy) []error {
	errs := make([]error, len(ps))
	d.policyMu.Lock()
	defer d.policyMu.Unlock()
	have := make(map[datapath.Policy]bool, len(ps))
	for _, q := range *d.spd.Load() {
		have[q.p] = true
	}
	var adding []int // indexes into ps
	var sels []datapath.Selector
	for i, p := range ps {
		if !p.Selector.Remote.IsValid() {
			errs[i] = fmt.Errorf("userspace: policy reqid %d: remote selector %v, expected a prefix", p.ReqID, p.Selector.Remote)
		} else if have[p] {
			errs[i] = fmt.Errorf("userspace: policy %v -> %v reqid %d: already installed", p.Selector.Local, p.Selector.Remote, p.ReqID)
		} else {
			have[p] = true
			adding = append(adding, i)
			sels = append(sels, p.Selector)
		}
	}
	if len(adding) == 0 {
		return errs
	}
	routeErrs := d.routes.Add(sels)
	d.mu.Lock()
	defer d.mu.Unlock()
	pols := slices.Clone(*d.spd.Load())
	for k, i := range adding {
		if errs[i] = routeErrs[k]; errs[i] == nil {
			pols = insertByPriority(pols, &policy{p: ps[i]})
		}
	}
	d.spd.Store(&pols)
	return errs
}

// insertByPriority inserts q after the policies of its priority or a lower one.
func insertByPriority(policies []*policy, q *policy) []*policy {
	i, _ := slices.BinarySearchFunc(policies, q.p.Priority, func(o *policy, prio uint32) int {
		if o.p.Priority <= prio { // equal priorities keep insertion order
			return -1
		}
		return 1
	})
	return slices.Insert(policies, i, q)
}

// DeletePolicy implements datapath.Datapath.
func (d *Datapath) DeletePolicy(ctx context.Context, p datapath.Policy) error {
	d.policyMu.Lock()
	defer d.policyMu.Unlock()
	d.mu.Lock()
	pols := *d.spd.Load()
	i := slices.IndexFunc(pols, func(q *policy) bool { return q.p == p })
	if i < 0 {
		d.mu.Unlock()
		return nil
	}
	pols = slices.Delete(slices.Clone(pols), i, i+1)
	d.spd.Store(&pols)
	d.mu.Unlock()
	return d.routes.Release(p.Selector.Remote)
}
