package ike

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/ike/isakmp"
)

// phase1ID returns the ID payload for a phase-1 identity (RFC 2407 4.6.2); protocol and
// port are 0 as RFC 2409 allows. A zero Identity means our (or the peer's) IKE address.
func phase1ID(id model.Identity, addr netip.Addr) *isakmp.Identification {
	switch id.Kind {
	case model.IDFQDN:
		return &isakmp.Identification{IDType: isakmp.IDFQDN, Data: []byte(id.Name)}
	case model.IDUserFQDN:
		return &isakmp.Identification{IDType: isakmp.IDUserFQDN, Data: []byte(id.Name)}
	case model.IDKeyID:
		return &isakmp.Identification{IDType: isakmp.IDKeyID, Data: []byte(id.Name)}
	case model.IDAddr:
		addr = id.Addr
	}
	a := addr.Unmap()
	return isakmp.IDFromPrefix(netip.PrefixFrom(a, a.BitLen()))
}

// checkPeerID compares the peer's phase-1 ID payload with the configured remote_id.
// Port and protocol are not compared: implementations send 0/0 or 17/500 alike.
func checkPeerID(c *model.Connection, got *isakmp.Identification) error {
	want := phase1ID(c.RemoteID, c.RemoteAddress)
	if got.IDType == want.IDType && bytes.Equal(got.Data, want.Data) {
		return nil
	}
	return fmt.Errorf("%w: peer identity %s, want remote_id %s", ErrIDMismatch, idString(got), idString(want))
}

// idString formats an ID payload for errors and logs.
func idString(id *isakmp.Identification) string {
	switch id.IDType {
	case isakmp.IDFQDN, isakmp.IDUserFQDN, isakmp.IDKeyID:
		return fmt.Sprintf("%s %q", id.IDType, id.Data)
	}
	if p, err := id.Prefix(); err == nil {
		if p.IsSingleIP() {
			return fmt.Sprintf("%s %s", id.IDType, p.Addr())
		}
		return fmt.Sprintf("%s %s", id.IDType, p)
	}
	return fmt.Sprintf("%s %x", id.IDType, id.Data)
}

// proxyID returns a quick-mode ID payload (IDci/IDcr) for a traffic selector.
func proxyID(ts TrafficSelector) *isakmp.Identification {
	id := isakmp.IDFromPrefix(ts.Prefix)
	id.ProtocolID, id.Port = ts.Proto, ts.Port
	return id
}

// selectorFromID parses a received IDci/IDcr.
func selectorFromID(id *isakmp.Identification) (TrafficSelector, error) {
	p, err := id.Prefix()
	if err != nil {
		return TrafficSelector{}, fmt.Errorf("proxy ID: %w", err)
	}
	return TrafficSelector{Prefix: p, Proto: id.ProtocolID, Port: id.Port}, nil
}
