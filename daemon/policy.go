package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/ebpfdp"
	"github.com/espgw/espgw/ike"
)

// Policy priorities. Selectors of different tunnels never overlap (config rejects that),
// so one priority would do, except while a tunnel's policy is replaced (its reqid changed
// on reload): the new one goes in beside the old one at the other priority before the old
// one goes, so that the tunnel's traffic is never without a policy and never leaves in
// clear. The kernel prefers the lower value, so the old policy rules until it is removed.
const (
	policyPriority    = 1000
	policyPriorityAlt = 1001
)

// policiesFor are the SPD entries that steer a tunnel's traffic into its SAs: one per
// (local, remote) combination of its subnets, all with its reqid.
func policiesFor(t ike.TunnelInfo) []datapath.Policy {
	sels := selectors(t.LocalTS, t.RemoteTS)
	ps := make([]datapath.Policy, len(sels))
	for i, s := range sels {
		ps[i] = datapath.Policy{Selector: s, TunnelLocal: t.LocalAddr, TunnelRemote: t.RemoteAddr,
			ReqID: t.ReqID, Priority: policyPriority}
	}
	return ps
}

// syncPolicies makes the installed policies those of the engine's tunnels, adding the new
// ones before removing the stale ones. Caller holds no lock.
func (d *daemon) syncPolicies(ctx context.Context) error {
	tunnels := d.engine.Tunnels()
	d.mu.Lock()
	defer d.mu.Unlock()
	want := make(map[datapath.Policy]ike.TunnelInfo)
	// In the tunnels' order and each tunnel's local subnets' order: the userspace datapath
	// routes a remote subnet from an address of this host in the first local subnet that
	// has one (netlinkRoutes.Add), which is then the same at every start.
	var adding []datapath.Policy
	for _, t := range tunnels {
		for _, p := range policiesFor(t) {
			if _, have := d.policies[p]; have {
				d.policies[p] = t // the start action may have changed
				want[p] = t
				continue
			}
			for q := range d.policies {
				if q.Selector == p.Selector && q.Priority == p.Priority {
					p.Priority = policyPriorityAlt
				}
			}
			want[p] = t
			adding = append(adding, p)
		}
	}
	var errs []error
	failed := make(map[datapath.Selector]bool) // keep their old policies: fail closed
	// In one batch: at start, every tunnel's policy (1,000 one by one took seconds).
	for i, err := range datapath.AddPolicies(ctx, d.dp, adding) {
		p := adding[i]
		t := want[p]
		if err != nil && !programError(err) {
			errs = append(errs, fmt.Errorf("install policy of %s/%s (%v <-> %v): %w",
				t.Connection, t.Tunnel, p.Selector.Local, p.Selector.Remote, err))
			failed[p.Selector] = true
			continue
		}
		d.policies[p] = t
		if err != nil {
			errs = append(errs, fmt.Errorf("policy of %s/%s: %w", t.Connection, t.Tunnel, err))
		}
		d.log.Info("policy installed", "conn", t.Connection, "tunnel", t.Tunnel, "reqid", t.ReqID,
			"local", p.Selector.Local, "remote", p.Selector.Remote, "start", t.Start)
	}
	for p, t := range d.policies {
		if _, keep := want[p]; keep || failed[p.Selector] {
			continue
		}
		if err := d.dp.DeletePolicy(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("remove policy of %s/%s: %w", t.Connection, t.Tunnel, err))
			if !programError(err) {
				continue
			}
		}
		delete(d.policies, p)
		d.log.Info("policy removed", "conn", t.Connection, "tunnel", t.Tunnel, "reqid", t.ReqID)
	}
	return errors.Join(errs...)
}

// removePolicies removes every policy installed, at shutdown.
func (d *daemon) removePolicies() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p, t := range d.policies {
		if err := d.dp.DeletePolicy(context.Background(), p); err != nil {
			d.log.Error("cannot remove policy", "conn", t.Connection, "tunnel", t.Tunnel, "err", err)
			if !programError(err) {
				continue
			}
		}
		delete(d.policies, p)
	}
}

// programError says the datapath made a policy change the eBPF programs could not follow:
// the change counts as made.
func programError(err error) bool {
	var pe *ebpfdp.ProgramError
	return errors.As(err, &pe)
}

// tunnelByReqID finds an installed tunnel by reqid. Caller holds d.mu.
func (d *daemon) tunnelByReqID(reqID uint32) (ike.TunnelInfo, bool) {
	for _, t := range d.policies {
		if t.ReqID == reqID {
			return t, true
		}
	}
	return ike.TunnelInfo{}, false
}
