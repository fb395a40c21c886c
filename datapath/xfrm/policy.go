package xfrm

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
)

// policiesFor builds the SPD entries for p: out (Local -> Remote, tunnel TunnelLocal ->
// TunnelRemote), and in plus fwd for the reverse direction. The kernel checks decapsulated
// traffic against in (for this host) or fwd (for hosts behind it); without a matching
// template there it would drop what the tunnel delivers.
func policiesFor(p datapath.Policy) ([]netlink.XfrmPolicy, error) {
	if !p.TunnelLocal.IsValid() || !p.TunnelRemote.IsValid() || p.TunnelLocal.Is4() != p.TunnelRemote.Is4() {
		return nil, fmt.Errorf("policy reqid %d tunnel %v -> %v: want two addresses of one family", p.ReqID, p.TunnelLocal, p.TunnelRemote)
	}
	out, err := selectorPolicy(p.Selector, dirOut)
	if err != nil {
		return nil, fmt.Errorf("policy reqid %d selector: %w", p.ReqID, err)
	}
	in, _ := selectorPolicy(p.Selector, dirIn)
	fwd := *in

	tmpl := func(src, dst []byte) []netlink.XfrmPolicyTmpl {
		return []netlink.XfrmPolicyTmpl{{
			Src:   src,
			Dst:   dst,
			Proto: netlink.XFRM_PROTO_ESP,
			Mode:  netlink.XFRM_MODE_TUNNEL,
			Reqid: int(p.ReqID),
		}}
	}
	local, remote := ip(p.TunnelLocal), ip(p.TunnelRemote)
	out.Dir, out.Tmpls = netlink.XFRM_DIR_OUT, tmpl(local, remote)
	in.Dir, in.Tmpls = netlink.XFRM_DIR_IN, tmpl(remote, local)
	fwd.Dir, fwd.Tmpls = netlink.XFRM_DIR_FWD, tmpl(remote, local)
	ps := []netlink.XfrmPolicy{*out, *in, fwd}
	for i := range ps {
		ps[i].Priority = int(p.Priority)
	}
	return ps, nil
}

// AddPolicy installs the out, in and fwd policies for p, all or none. Adding a policy that
// this Datapath already installed is a no-op; one installed by someone else is an error.
func (d *Datapath) AddPolicy(ctx context.Context, p datapath.Policy) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ps, err := policiesFor(p)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	if _, ok := d.policies[p]; ok {
		return nil
	}
	for i := range ps {
		if err := d.h.XfrmPolicyAdd(&ps[i]); err != nil {
			err = fmt.Errorf("add policy %s %v -> %v reqid %d: %w", ps[i].Dir, ps[i].Src, ps[i].Dst, p.ReqID, err)
			return errors.Join(err, d.deletePolicies(ps[:i]))
		}
	}
	d.policies[p] = ps
	return nil
}

// DeletePolicy removes the policies AddPolicy installed for p; for any other p it does nothing.
func (d *Datapath) DeletePolicy(ctx context.Context, p datapath.Policy) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ps, ok := d.policies[p]
	if !ok {
		return nil
	}
	delete(d.policies, p)
	return d.deletePolicies(ps)
}

// deletePolicies removes ps from the kernel; ones already gone are not an error.
func (d *Datapath) deletePolicies(ps []netlink.XfrmPolicy) error {
	var errs []error
	for i := range ps {
		err := d.h.XfrmPolicyDel(&ps[i])
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete policy %s %v -> %v: %w", ps[i].Dir, ps[i].Src, ps[i].Dst, err))
		}
	}
	return errors.Join(errs...)
}

// hasPolicyReqID tells whether an installed policy uses reqid; d.mu must be held.
func (d *Datapath) hasPolicyReqID(reqid uint32) bool {
	for p := range d.policies {
		if p.ReqID == reqid {
			return true
		}
	}
	return false
}
