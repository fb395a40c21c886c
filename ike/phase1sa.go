package ike

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/ike/dh"
	"github.com/espgw/espgw/ike/isakmp"
	"github.com/espgw/espgw/ike/proposal"
)

// ikeOffer is the initiator's phase-1 SA payload: one ISAKMP proposal whose transforms are
// the configured proposals in order of preference.
func ikeOffer(c *model.Connection) *isakmp.SA {
	p := isakmp.Proposal{Number: 1, ProtocolID: isakmp.ProtoISAKMP}
	for i, ike := range c.IKE.Proposals {
		p.Transforms = append(p.Transforms, ike.Transform(uint8(i+1), c.IKE.Lifetime))
	}
	return &isakmp.SA{DOI: isakmp.DOIIPsec, Situation: isakmp.SituationIdentityOnly, Proposals: []isakmp.Proposal{p}}
}

// ikeProposalsString is c's phase-1 proposals in swanctl syntax.
func ikeProposalsString(c *model.Connection) string { return proposal.FormatIKE(c.IKE.Proposals) }

// chooseIKE selects, as responder, the first transform of the peer's MM1/AM1 SA payload that
// matches a configured proposal (in aggressive mode also the group of the peer's KE). It
// sets sa.prop and sa.saiB and returns the SA payload for the reply: the chosen transform
// echoed as received. Without a match the peer gets NO-PROPOSAL-CHOSEN and the error names
// both sides' proposals.
func (e *Engine) chooseIKE(sa *ikeSA, in *inbound) (*isakmp.SA, error) {
	offer, raw, ok := findPayload[*isakmp.SA](in.m.Payloads, in.m.Raw)
	if !ok {
		return nil, fmt.Errorf("first phase-1 message from %v lacks an SA payload", in.remote)
	}
	configured := slices.DeleteFunc(slices.Clone(sa.conn.cfg.IKE.Proposals), func(p proposal.IKE) bool {
		return !keFits(p.Group, sa.kePeerLen)
	})
	var theirs []string
	for _, p := range offer.Proposals {
		if p.ProtocolID != isakmp.ProtoISAKMP {
			continue
		}
		t, ike, err := proposal.SelectIKE(configured, p.Transforms)
		if npc := (*proposal.NoProposalChosenError)(nil); errors.As(err, &npc) {
			theirs = append(theirs, npc.Theirs)
			continue
		} else if err != nil {
			return nil, err
		}
		sa.prop = ike
		sa.saiB = clone(raw.Body())
		return &isakmp.SA{DOI: offer.DOI, Situation: offer.Situation, Proposals: []isakmp.Proposal{{
			Number: p.Number, ProtocolID: p.ProtocolID, SPI: p.SPI, Transforms: []isakmp.Transform{t},
		}}}, nil
	}
	e.sendPhase1Notify(sa, in.local, in.remote, isakmp.NotifyNoProposalChosen)
	npc := &proposal.NoProposalChosenError{Ours: proposal.FormatIKE(configured), Theirs: strings.Join(theirs, ", ")}
	return nil, fmt.Errorf("phase 1 with %v: %w", in.remote, npc)
}

// keFits reports whether a KE payload of n bytes (0 = not yet known) belongs to group.
func keFits(group uint16, n int) bool {
	if n == 0 {
		return true
	}
	g, err := dh.ByID(group)
	return err == nil && g.PublicLen() == n
}

// acceptIKEChoice checks the responder's MM2/AM2 SA payload: exactly one transform, one we
// offered. It sets sa.prop.
func (sa *ikeSA) acceptIKEChoice(ps []isakmp.Payload) error {
	reply, _, ok := findPayload[*isakmp.SA](ps, nil)
	if !ok || len(reply.Proposals) != 1 || len(reply.Proposals[0].Transforms) != 1 {
		return fmt.Errorf("responder's SA payload: want one proposal with one transform")
	}
	ike, _, err := proposal.ParseIKETransform(reply.Proposals[0].Transforms[0])
	if err != nil {
		return fmt.Errorf("responder's choice: %w", err)
	}
	if !slices.Contains(sa.conn.cfg.IKE.Proposals, ike) {
		return fmt.Errorf("responder chose %s, which we did not offer (%s)", ike, ikeProposalsString(&sa.conn.cfg))
	}
	if sa.aggressive && ike.Group != sa.prop.Group {
		return fmt.Errorf("responder chose %s, but our KE is for group %d", ike, sa.prop.Group)
	}
	sa.prop = ike
	return nil
}
