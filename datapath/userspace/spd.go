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
	if !p.Selector.Remote.IsValid() {
		return fmt.Errorf("userspace: policy reqid %d: remote selector %v, expected a prefix", p.ReqID, p.Selector.Remote)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.state.Load()
	if slices.ContainsFunc(st.policies, func(q *policy) bool { return q.p == p }) {
		return fmt.Errorf("userspace: policy %v -> %v reqid %d: already installed", p.Selector.Local, p.Selector.Remote, p.ReqID)
	}
	if err := d.routes.Add(p.Selector.Remote, p.Selector.Local); err != nil {
		return err
	}
	st = st.clone()
	i, _ := slices.BinarySearchFunc(st.policies, p.Priority, func(q *policy, prio uint32) int {
		if q.p.Priority <= prio { // equal priorities keep insertion order
			return -1
		}
		return 1
	})
	st.policies = slices.Insert(st.policies, i, &policy{p: p})
	d.state.Store(st)
	return nil
}

// DeletePolicy implements datapath.Datapath.
func (d *Datapath) DeletePolicy(ctx context.Context, p datapath.Policy) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.state.Load()
	i := slices.IndexFunc(st.policies, func(q *policy) bool { return q.p == p })
	if i < 0 {
		return nil
	}
	st = st.clone()
	st.policies = slices.Delete(st.policies, i, i+1)
	d.state.Store(st)
	return d.routes.Release(p.Selector.Remote)
}
