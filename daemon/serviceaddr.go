package daemon

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/vishvananda/netns"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/datapath/serviceaddr"
)

// serviceAddress is a connection's service address as applied to the host.
type serviceAddress struct {
	spec    serviceaddr.Spec
	applied *serviceaddr.Applied
}

// serviceSpecs are the service addresses cfg asks for, by connection. With xfrm the routes
// to the remote subnets come along (their source selects the policy); they leave the way
// the route to the peer does, wherever the address lives (lo, a dummy link, the WAN). The
// userspace datapath routes those subnets into its TUN itself, from the service address
// once it exists, so it needs the address only.
func serviceSpecs(cfg *config.Config, withRoutes bool) map[string]serviceaddr.Spec {
	specs := make(map[string]serviceaddr.Spec)
	for _, c := range cfg.Connections {
		if c.ServiceAddress == nil {
			continue
		}
		spec := serviceaddr.Spec{Address: c.ServiceAddress.Address, Interface: c.ServiceAddress.Interface}
		if withRoutes {
			spec.Peer, spec.Local = c.RemoteAddress, c.LocalAddress
			for _, t := range c.Tunnels {
				spec.Routes = append(spec.Routes, t.RemoteSubnets...)
			}
		}
		specs[c.Name] = spec
	}
	return specs
}

// syncServiceAddresses applies cfg's service addresses and removes those it no longer has,
// before the policies go in. Caller holds no lock.
func (d *daemon) syncServiceAddresses(ctx context.Context, cfg *config.Config) error {
	want := serviceSpecs(cfg, d.dp.Name() == KindXFRM)
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for name, sa := range d.services {
		if spec, ok := want[name]; ok && reflect.DeepEqual(spec, sa.spec) {
			continue
		}
		if err := sa.applied.Remove(); err != nil {
			errs = append(errs, fmt.Errorf("connection %s: remove service address %v: %w", name, sa.spec.Address, err))
			continue
		}
		delete(d.services, name)
		d.log.Info("service address removed", "conn", name, "address", sa.spec.Address, "interface", sa.spec.Interface)
	}
	for name, spec := range want {
		if _, ok := d.services[name]; ok {
			continue
		}
		a, err := serviceaddr.Apply(ctx, netns.None(), spec, d.log.With("conn", name))
		if err != nil {
			errs = append(errs, fmt.Errorf("connection %s: %w", name, err))
			continue
		}
		d.services[name] = serviceAddress{spec: spec, applied: a}
		d.log.Info("service address applied", "conn", name, "address", spec.Address, "interface", spec.Interface, "routes", spec.Routes, "peer", spec.Peer)
	}
	return errors.Join(errs...)
}

// removeServiceAddresses undoes every service address applied, at shutdown.
func (d *daemon) removeServiceAddresses() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, sa := range d.services {
		if err := sa.applied.Remove(); err != nil {
			d.log.Error("cannot remove service address", "conn", name, "address", sa.spec.Address, "err", err)
		}
		delete(d.services, name)
	}
}
