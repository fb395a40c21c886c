package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/espgw/espgw/model"
)

// overlaps reports every tunnel whose traffic selector overlaps that of an earlier tunnel,
// in any connection: the security policy database could not tell which tunnel a packet
// belongs to (RFC 4301 section 4.4.1 requires decorrelated entries to avoid order semantics).
func (v *validator) overlaps(conns []model.Connection) {
	type seen struct {
		path string
		t    *model.Tunnel
	}
	var earlier []seen
	for ci := range conns {
		for ti := range conns[ci].Tunnels {
			t := &conns[ci].Tunnels[ti]
			if !validSubnets(t.LocalSubnets) || !validSubnets(t.RemoteSubnets) {
				continue // reported on its own
			}
			path := sub(sub(sub("connections", conns[ci].Name), "tunnels"), t.Name)
			for _, e := range earlier {
				if !selectorsOverlap(e.t, t) {
					continue
				}
				verb := "overlaps"
				if sameSelector(e.t, t) {
					verb = "duplicates"
				}
				v.add(path, "%s %s %s (%s) (want disjoint local_subnet/remote_subnet/protocol/ports)",
					selectorString(t), verb, e.path, selectorString(e.t))
			}
			earlier = append(earlier, seen{path, t})
		}
	}
}

// selectorsOverlap reports whether some (local, remote) pair of a overlaps one of b.
func selectorsOverlap(a, b *model.Tunnel) bool {
	return anyOverlap(a.LocalSubnets, b.LocalSubnets) && anyOverlap(a.RemoteSubnets, b.RemoteSubnets) &&
		anyOrEqual(a.Protocol, b.Protocol) && anyOrEqual(a.LocalPort, b.LocalPort) &&
		anyOrEqual(a.RemotePort, b.RemotePort)
}

func sameSelector(a, b *model.Tunnel) bool {
	return slices.Equal(a.LocalSubnets, b.LocalSubnets) && slices.Equal(a.RemoteSubnets, b.RemoteSubnets) &&
		a.Protocol == b.Protocol && a.LocalPort == b.LocalPort && a.RemotePort == b.RemotePort
}

// anyOverlap reports whether a prefix of a overlaps one of b.
func anyOverlap(a, b []netip.Prefix) bool {
	return slices.ContainsFunc(a, func(p netip.Prefix) bool {
		return slices.ContainsFunc(b, p.Overlaps)
	})
}

// validSubnets reports whether one side's subnets are there and pass checkSubnet.
func validSubnets(ps []netip.Prefix) bool {
	return len(ps) > 0 && !slices.ContainsFunc(ps, func(p netip.Prefix) bool { return checkSubnet(p) != nil })
}

// anyOrEqual reports whether two selector fields, where zero means any, match a common value.
func anyOrEqual[T comparable](a, b T) bool {
	var zero T
	return a == zero || b == zero || a == b
}

// selectorString shows a tunnel's selector as "10.10.1.0/24 <-> 10.20.0.0/24 tcp ports any/443".
func selectorString(t *model.Tunnel) string {
	s := fmt.Sprintf("%s <-> %s %s", model.Prefixes(t.LocalSubnets), model.Prefixes(t.RemoteSubnets), protocolName(t.Protocol))
	if t.LocalPort != 0 || t.RemotePort != 0 {
		s += " ports " + portString(t.LocalPort) + "/" + portString(t.RemotePort)
	}
	return s
}

func portString(p uint16) string {
	if p == 0 {
		return "any"
	}
	return strconv.Itoa(int(p))
}
