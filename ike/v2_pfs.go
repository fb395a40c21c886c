package ike

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/ike/proposal"
)

// PFS on the peer's CREATE_CHILD_SA. A child SA created or rekeyed by CREATE_CHILD_SA may
// carry its own Diffie-Hellman exchange (RFC 7296 1.3.1, 1.3.3, 2.18 for IKE SAs); when the
// tunnel's ESP proposals name a group, we insist on it as IKEv1 does in quick mode: a
// request without a KE payload or with proposals lacking our group gets NO_PROPOSAL_CHOSEN,
// one whose KE is of another group that one of its proposals also offers gets
// INVALID_KE_PAYLOAD naming the group we chose (RFC 7296 1.3), so that the peer can retry.
// As the initiator we retry so too, once per exchange, when the peer names a group of ours.

// refuseWithoutPFS checks, before any DH work, that a CREATE_CHILD_SA request for a child SA
// keeps the PFS of the tunnel it asks for. It returns the notification refusing the request,
// having recorded why, or nil when the request may proceed (answerChild then checks the
// rest: selectors, proposals without PFS).
func (e *Engine) refuseWithoutPFS(sa *v2SA, ps []ikev2.Payload) *ikev2.Notify {
	sai := ikev2.Find[*ikev2.SA](ps)
	tsi, tsr := peerTS(ps)
	if sai == nil || tsi == nil || tsr == nil {
		return nil
	}
	t, _, _ := matchV2Tunnel(sa.conn, tsi, tsr)
	if t == nil || !tunnelWantsPFS(t) {
		return nil
	}
	ke := ikev2.Find[*ikev2.KE](ps)
	theirKE := "no KE payload"
	if ke != nil {
		theirKE = "a KE of " + proposal.GroupName(ke.Group)
	}
	_, prop, err := proposal.SelectESPv2(t.cfg.Proposals, sai.Proposals, true)
	switch {
	case err != nil:
		e.childFailed(sa, t, false, fmt.Errorf("CREATE_CHILD_SA of %s without the PFS our ESP proposals ask for (peer sent %s): %w",
			t.cfg.Name, theirKE, err))
		return &ikev2.Notify{NotifyType: ikev2.NotifyNoProposalChosen}
	case prop.Group != 0 && (ke == nil || ke.Group != prop.Group):
		e.childFailed(sa, t, false, fmt.Errorf("CREATE_CHILD_SA of %s: peer sent %s, we chose its proposal esp:%s (ours: %s): asking for %s (INVALID_KE_PAYLOAD)",
			t.cfg.Name, theirKE, prop, proposal.FormatESP(t.cfg.Proposals), proposal.GroupName(prop.Group)))
		return &ikev2.Notify{NotifyType: ikev2.NotifyInvalidKEPayload, Data: binary.BigEndian.AppendUint16(nil, prop.Group)}
	}
	return nil
}

// tunnelWantsPFS reports whether one of t's ESP proposals names a DH group.
func tunnelWantsPFS(t *tunnel) bool {
	for _, p := range t.cfg.Proposals {
		if p.Group != 0 {
			return true
		}
	}
	return false
}

// retryChildKE starts t's CREATE_CHILD_SA again with a KE of the group the peer asked for
// in its INVALID_KE_PAYLOAD answer rs, if that group is one of t's proposals'. Only the
// first attempt, made with the first proposal's group (used), is retried, so a peer that
// keeps naming other groups gets one retry, not a loop. It reports whether it retried.
func (e *Engine) retryChildKE(sa *v2SA, t *tunnel, rs []ikev2.Payload, used uint16) bool {
	n := firstError(rs)
	if n == nil || n.NotifyType != ikev2.NotifyInvalidKEPayload || len(n.Data) != 2 || used != t.cfg.Proposals[0].Group {
		return false
	}
	want := binary.BigEndian.Uint16(n.Data)
	if want == used || want == 0 || !slices.ContainsFunc(t.cfg.Proposals, func(p proposal.ESP) bool { return p.Group == want }) {
		return false
	}
	e.log.Info("CREATE_CHILD_SA: the peer asks for another PFS group, retrying", sa.logArgs("tunnel", t.cfg.Name,
		"sent", proposal.GroupName(used), "wanted", proposal.GroupName(want))...)
	e.createChildKE(sa, t, want)
	return true
}
