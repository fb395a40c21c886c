package ike

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/espgw/espgw/ike/dh"
	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/ike/proposal"
)

// Rekeying the IKE SA (RFC 7296 1.3.2, 2.18): a CREATE_CHILD_SA exchange on the old SA
// negotiates a new one, with new SPIs, nonces and a fresh Diffie-Hellman exchange:
//
//	HDR, SK {SA(IKE, new SPIi), Ni, KEi}  -->
//	                                 <--  HDR, SK {SA(IKE, new SPIr), Nr, KEr}
//
// The rekey's initiator is the new SA's original initiator. The child SAs move to the new
// SA at once; the initiator then deletes the old one with an INFORMATIONAL exchange on it.
// No reauthentication: the new keys descend from the old SK_d. The original initiator of
// an IKE SA rekeys it at 85 to 90 % of its ike.lifetime, the original responder at 90 to
// 95 % of its own (the peer's lifetime may be longer).

// errRekeyedV2 ends an IKE SA that a rekey replaced.
var errRekeyedV2 = errors.New("replaced by its rekeyed IKE SA")

// rekeyV2 starts the replacement of old.
func (e *Engine) rekeyV2(old *v2SA) {
	if old.state != v2Established || old.rekeying || old.deleting {
		return
	}
	next, err := e.newV2SA(old.conn, true, old.local, old.remote)
	if err == nil {
		next.nonceI, err = e.makeNonce()
	}
	var key dh.PrivateKey
	if err == nil {
		next.group = old.prop.Group
		key, err = e.makeKE(next.group)
	}
	if err != nil {
		e.log.Error("IKE SA rekey not started", old.logArgs("err", err)...)
		return
	}
	offer := v2Offer(&old.conn.cfg)
	for i := range offer.Proposals {
		offer.Proposals[i].SPI = next.spiI[:]
	}
	old.rekeying = true
	done := false
	e.log.Info("rekeying IKE SA", old.logArgs()...)
	old.request(&v2Request{exchange: ikev2.ExchangeCreateChildSA, rekeysIKE: true,
		payloads: []ikev2.Payload{offer, &ikev2.Nonce{Data: next.nonceI}, &ikev2.KE{Group: next.group, Data: key.Public()}},
		onReply: func(rs []ikev2.Payload) error {
			done = true
			next.dhKey = key
			if temporaryFailure(rs) {
				dropKey(&next.dhKey)
				e.ikeRekeyFailed(old)
				e.log.Info("peer answered our IKE SA rekey with TEMPORARY_FAILURE, trying again shortly (RFC 7296 2.25)", old.logArgs()...)
				old.rekey = e.afterFunc(e.jitter(2*e.opts.Retransmit.Initial), func() { e.rekeyV2(old) })
				return nil
			}
			if err := e.rekeyReply(old, next, rs); err != nil {
				dropKey(&next.dhKey)
				e.ikeRekeyFailed(old)
				e.log.Error("IKE SA rekey failed", old.logArgs("err", err)...)
				e.addError(old.conn.cfg.Name, err)
			}
			return nil
		},
		onFail: func(error) {
			if !done {
				dropKey(&key)
			}
		}})
}

// rekeyReply takes the responder's answer: the new SA takes over, the old one is deleted.
func (e *Engine) rekeyReply(old, next *v2SA, rs []ikev2.Payload) error {
	if n := firstError(rs); n != nil {
		return e.v2PeerError(old, n, "CREATE_CHILD_SA (IKE SA rekey)", nil)
	}
	sar, nr, ke := ikev2.Find[*ikev2.SA](rs), ikev2.Find[*ikev2.Nonce](rs), ikev2.Find[*ikev2.KE](rs)
	if sar == nil || nr == nil || ke == nil || len(sar.Proposals) != 1 || len(sar.Proposals[0].SPI) != 8 {
		return fmt.Errorf("IKE SA rekey response: want SA with one IKE proposal and an 8-byte SPI, Nr and KEr; got %s", payloadNames(rs))
	}
	_, prop, err := proposal.SelectIKEv2(old.conn.cfg.IKE.V2Proposals, sar.Proposals)
	if err != nil {
		return fmt.Errorf("IKE SA rekey: the responder chose a proposal we did not offer: %w", err)
	}
	if prop.Group != next.group || ke.Group != next.group {
		return fmt.Errorf("IKE SA rekey: responder's group %d (KE %d), want %d", prop.Group, ke.Group, next.group)
	}
	copy(next.spiR[:], sar.Proposals[0].SPI)
	next.prop, next.nonceR = prop, bytes.Clone(nr.Data)
	if err := next.deriveV2Keys(ke.Data, old); err != nil {
		return err
	}
	if old.race != nil {
		e.ikeRekeyedBy(old, next, false) // the peer rekeyed old too (v2_collision.go)
		return nil
	}
	e.takeOver(old, next)
	e.retireV2(old, errRekeyedV2)
	return nil
}

// retireV2 deletes an IKE SA that a rekey made redundant, telling the peer on it first.
func (e *Engine) retireV2(sa *v2SA, why error) {
	sa.deleting = true
	sa.request(&v2Request{exchange: ikev2.ExchangeInformational,
		payloads: []ikev2.Payload{&ikev2.Delete{Protocol: ikev2.ProtocolIKE}},
		onReply:  func([]ikev2.Payload) error { e.deleteV2SA(sa, false, why); return nil },
		onFail:   func(error) {}})
}

// answerIKERekey is the responder's side of an IKE SA rekey on old.
// While old is already replaced or our CREATE_CHILD_SA for a child SA is in flight, the
// peer is asked to try again later (v2_collision.go).
func (e *Engine) answerIKERekey(old *v2SA, sai *ikev2.SA, ni []byte, ke *ikev2.KE) []ikev2.Payload {
	chosen, prop, err := proposal.SelectIKEv2(old.conn.cfg.IKE.V2Proposals, sai.Proposals)
	switch {
	case old.deleting || old.childBusy():
		e.log.Info("peer's IKE SA rekey collides with our exchange: TEMPORARY_FAILURE (RFC 7296 2.25)", old.logArgs("replaced", old.deleting)...)
		return []ikev2.Payload{&ikev2.Notify{NotifyType: ikev2.NotifyTemporaryFailure}}
	case err != nil:
		e.log.Error("peer's IKE SA rekey: no acceptable proposal", old.logArgs("err", err)...)
		e.addError(old.conn.cfg.Name, fmt.Errorf("IKE SA rekey: %w", err))
		return []ikev2.Payload{&ikev2.Notify{NotifyType: ikev2.NotifyNoProposalChosen}}
	case ke == nil || len(chosen.SPI) != 8:
		return []ikev2.Payload{&ikev2.Notify{NotifyType: ikev2.NotifyInvalidSyntax}}
	case ke.Group != prop.Group:
		return []ikev2.Payload{&ikev2.Notify{NotifyType: ikev2.NotifyInvalidKEPayload, Data: binary.BigEndian.AppendUint16(nil, prop.Group)}}
	}
	next, err := e.newV2SA(old.conn, false, old.local, old.remote)
	if err == nil {
		next.nonceR, err = e.makeNonce()
	}
	if err == nil {
		next.dhKey, err = e.makeKE(prop.Group)
	}
	var pub []byte
	if err == nil {
		copy(next.spiI[:], chosen.SPI)
		next.prop, next.group, next.nonceI = prop, prop.Group, bytes.Clone(ni)
		pub = next.dhKey.Public()
		err = next.deriveV2Keys(ke.Data, old)
	}
	if err != nil {
		dropKey(&next.dhKey)
		e.log.Error("peer's IKE SA rekey failed", old.logArgs("err", err)...)
		return []ikev2.Payload{&ikev2.Notify{NotifyType: ikev2.NotifyNoProposalChosen}}
	}
	if old.rekeying {
		e.ikeRekeyedBy(old, next, true) // we are rekeying old too (v2_collision.go)
	} else {
		e.takeOver(old, next)
	}
	chosen.SPI = next.spiR[:]
	return []ikev2.Payload{&ikev2.SA{Proposals: []ikev2.Proposal{chosen}}, &ikev2.Nonce{Data: next.nonceR},
		&ikev2.KE{Group: prop.Group, Data: pub}}
}

// takeOver establishes next in old's place: it gets old's NAT state and child SAs.
func (e *Engine) takeOver(old, next *v2SA) {
	e.adoptV2(old, next)
	e.moveChildren(old, next)
	old.deleting = true // no new exchanges on it; its Delete still goes out
}

// adoptV2 establishes next, a rekey of old, with old's NAT state.
func (e *Engine) adoptV2(old, next *v2SA) {
	next.natLocal, next.behindNAT, next.natRemote = old.natLocal, old.behindNAT, old.natRemote
	e.v2SAs[next.ourSPI()] = next
	e.establishV2(next, old)
}

// moveChildren puts the child SAs of one IKE SA under another.
func (e *Engine) moveChildren(from, to *v2SA) {
	for _, ch := range e.children {
		if ch.v2 == from {
			ch.v2 = to
		}
	}
}
