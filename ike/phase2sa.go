package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/ike/isakmp"
	"github.com/espgw/espgw/ike/proposal"
)

// espChoice is the ESP transform a quick mode settled on.
type espChoice struct {
	proposalNum uint8
	transform   isakmp.Transform
	spi         uint32 // the peer's inbound SPI
	prop        proposal.ESP
	life        lifetimes
	encap       bool
}

// reply is the responder's SA payload: the chosen transform echoed with our SPI.
func (c *espChoice) reply(spi uint32) *isakmp.SA {
	return &isakmp.SA{DOI: isakmp.DOIIPsec, Situation: isakmp.SituationIdentityOnly, Proposals: []isakmp.Proposal{{
		Number: c.proposalNum, ProtocolID: isakmp.ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, spi),
		Transforms: []isakmp.Transform{c.transform},
	}}}
}

// espOffer is the initiator's quick-mode SA payload: one ESP proposal with our inbound SPI
// and the tunnel's proposals as transforms.
func espOffer(t *model.Tunnel, spi uint32, encap uint16) *isakmp.SA {
	p := isakmp.Proposal{Number: 1, ProtocolID: isakmp.ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, spi)}
	for i, esp := range t.Proposals {
		o := proposal.ESPOffer{ESP: esp, Lifetime: t.Lifetime, LifeKilobytes: t.LifeKilobytes, Encap: encap}
		p.Transforms = append(p.Transforms, o.Transform(uint8(i+1)))
	}
	return &isakmp.SA{DOI: isakmp.DOIIPsec, Situation: isakmp.SituationIdentityOnly, Proposals: []isakmp.Proposal{p}}
}

// pfsGroup is the DH group of the quick mode's KE payload: the first proposal's.
func pfsGroup(t *model.Tunnel) uint16 { return t.Proposals[0].Group }

func choice(p *isakmp.Proposal, t isakmp.Transform, o proposal.ESPOffer) espChoice {
	return espChoice{
		proposalNum: p.Number, transform: t, spi: binary.BigEndian.Uint32(p.SPI), prop: o.ESP,
		life:  lifetimes{seconds: o.Lifetime, kilobytes: o.LifeKilobytes},
		encap: o.Encap != isakmp.EncapTunnel,
	}
}

// chooseESP selects, as responder, the first offered ESP transform that matches one of the
// tunnel's proposals. The error names both sides' proposals in swanctl syntax.
func chooseESP(t *model.Tunnel, offer *isakmp.SA) (espChoice, error) {
	var theirs []string
	for i := range offer.Proposals {
		p := &offer.Proposals[i]
		if p.ProtocolID != isakmp.ProtoESP || len(p.SPI) != 4 {
			continue
		}
		tr, o, err := proposal.SelectESP(t.Proposals, p.Transforms)
		if npc := (*proposal.NoProposalChosenError)(nil); errors.As(err, &npc) {
			theirs = append(theirs, npc.Theirs)
			continue
		} else if err != nil {
			return espChoice{}, err
		}
		return choice(p, tr, o), nil
	}
	return espChoice{}, &proposal.NoProposalChosenError{Ours: proposal.FormatESP(t.Proposals), Theirs: strings.Join(theirs, ", ")}
}

// acceptESPChoice checks the responder's QM2 SA payload: one ESP transform we offered.
func acceptESPChoice(t *model.Tunnel, ps []isakmp.Payload) (espChoice, error) {
	sa, _, ok := findPayload[*isakmp.SA](ps, nil)
	if !ok || len(sa.Proposals) != 1 || len(sa.Proposals[0].Transforms) != 1 ||
		sa.Proposals[0].ProtocolID != isakmp.ProtoESP || len(sa.Proposals[0].SPI) != 4 {
		return espChoice{}, fmt.Errorf("responder's quick-mode SA payload: want one ESP proposal with a 4-byte SPI and one transform")
	}
	p := &sa.Proposals[0]
	o, err := proposal.ParseESPTransform(p.Transforms[0])
	if err != nil {
		return espChoice{}, fmt.Errorf("responder's ESP choice: %w", err)
	}
	if !slices.Contains(t.Proposals, o.ESP) {
		return espChoice{}, fmt.Errorf("responder chose ESP %s, which we did not offer (%s)", o.ESP, proposal.FormatESP(t.Proposals))
	}
	return choice(p, p.Transforms[0], o), nil
}

// peerProxyIDs returns the IDci/IDcr of a quick mode, or the IKE peers' addresses when
// the initiator sent none (RFC 2409 5.5).
func peerProxyIDs(ps []isakmp.Payload, sa *ikeSA) (ci, cr TrafficSelector, present bool, err error) {
	var ids []*isakmp.Identification
	for _, p := range ps {
		if id, ok := p.(*isakmp.Identification); ok {
			ids = append(ids, id)
		}
	}
	switch len(ids) {
	case 0:
		// The QM initiator is the peer: IDci is its address, IDcr ours.
		ci = TrafficSelector{Prefix: hostPrefix(sa.remote.Addr())}
		cr = TrafficSelector{Prefix: hostPrefix(sa.local.Addr())}
		return ci, cr, false, nil
	case 2:
		if ci, err = selectorFromID(ids[0]); err != nil {
			return ci, cr, true, fmt.Errorf("IDci: %w", err)
		}
		if cr, err = selectorFromID(ids[1]); err != nil {
			return ci, cr, true, fmt.Errorf("IDcr: %w", err)
		}
		return ci, cr, true, nil
	}
	return ci, cr, true, fmt.Errorf("quick mode carries %d ID payloads, want 0 or 2", len(ids))
}

// matchTunnel finds the tunnel of c whose selectors equal the initiator's proxy IDs exactly
// (IDci is the initiator's side, so our remote). The error names both sides.
func matchTunnel(c *connection, ps []isakmp.Payload, sa *ikeSA) (*tunnel, error) {
	ci, cr, _, err := peerProxyIDs(ps, sa)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIDMismatch, err)
	}
	var have []string
	for _, t := range c.sortedTunnels() {
		local, remote := t.proxyIDs()
		if sameTS(remote, ci) && sameTS(local, cr) {
			return t, nil
		}
		have = append(have, fmt.Sprintf("%s: %s === %s", t.cfg.Name, local, remote))
	}
	return nil, fmt.Errorf("%w: peer proposed proxy IDs %s === %s (ours first), configured tunnels [%s]",
		ErrIDMismatch, cr, ci, strings.Join(have, "; "))
}

// checkProxyIDs verifies that the responder echoed our proxy IDs, if it sent any.
func checkProxyIDs(ps []isakmp.Payload, t *tunnel) error {
	var ids []*isakmp.Identification
	for _, p := range ps {
		if id, ok := p.(*isakmp.Identification); ok {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if len(ids) != 2 {
		return fmt.Errorf("%w: responder sent %d ID payloads, want 2", ErrIDMismatch, len(ids))
	}
	ci, err1 := selectorFromID(ids[0])
	cr, err2 := selectorFromID(ids[1])
	local, remote := t.proxyIDs()
	if err1 != nil || err2 != nil || !sameTS(ci, local) || !sameTS(cr, remote) {
		return fmt.Errorf("%w: responder answered proxy IDs %s === %s, we proposed %s === %s",
			ErrIDMismatch, ci, cr, local, remote)
	}
	return nil
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func sameTS(a, b TrafficSelector) bool {
	return a.Prefix.Masked() == b.Prefix.Masked() && a.Proto == b.Proto && a.Port == b.Port
}
