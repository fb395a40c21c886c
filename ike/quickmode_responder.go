package ike

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/espgw/espgw/ike/isakmp"
)

// respondQM1 answers a peer's quick mode: it authenticates QM1, finds the tunnel whose
// proxy IDs match exactly, selects an ESP proposal and sends QM2. Errors before QM1
// authenticates are returned for handleError to drop (anyone can send them); every
// failure after ends in refuseQM1.
func (e *Engine) respondQM1(sa *ikeSA, in *inbound) error {
	msgID := in.m.Header.MessageID
	if n := sa.respondingQuickModes(); n >= maxResponderQuickModes {
		return fmt.Errorf("quick mode %08x: %d responder quick modes in progress (limit %d)", msgID, n, maxResponderQuickModes)
	}
	mid := binary.BigEndian.AppendUint32(nil, msgID)
	qm := &quickMode{
		exchange: exchange{e: e, local: sa.local, remote: sa.remote},
		sa:       sa, msgID: msgID, iv: sa.phase2IV(msgID),
	}
	ps, err := qm.openProtected(in, mid)
	if err != nil {
		return err
	}
	sa.msgIDs.add(msgID)
	offer, _, ok := findPayload[*isakmp.SA](ps, nil)
	if !ok {
		return e.refuseQM1(qm, fmt.Errorf("quick mode %08x lacks an SA payload", msgID), 0, nil)
	}
	t, err := matchTunnel(sa.conn, ps, sa)
	if err != nil {
		return e.refuseQM1(qm, err, isakmp.NotifyInvalidIDInformation, offer)
	}
	qm.tunnel, qm.gen = t, t.installs
	ch, err := chooseESP(&t.cfg, offer)
	if err != nil {
		return e.refuseQM1(qm, err, isakmp.NotifyNoProposalChosen, offer)
	}
	if err := qm.takeNonceKE(ps, ch.prop.Group); err != nil {
		return e.refuseQM1(qm, err, 0, nil)
	}
	if qm.nonceR, err = e.makeNonce(); err != nil {
		return e.refuseQM1(qm, err, 0, nil)
	}
	// The SPI comes last: once reserved, the quick mode is registered and only ends through
	// qm.fail (which releases it) or qm.install.
	spi, err := e.opts.Kernel.AllocSPI(context.Background(), sa.local.Addr(), sa.remote.Addr())
	if err != nil {
		return e.refuseQM1(qm, fmt.Errorf("allocating SPI: %w", err), 0, nil)
	}
	qm.spiIn, qm.spiOut, qm.prop, qm.encap = spi, ch.spi, ch.prop, ch.encap
	sa.qms[msgID] = qm
	qm.onGiveUp = func() { qm.fail(fmt.Errorf("quick mode %08x: %w", msgID, ErrTimeout)) }
	if ch.prop.Group == 0 {
		e.sendQM2(qm, ch, offer, ps)
		return nil
	}
	e.quickDH(qm, &dhJob{group: ch.prop.Group}, func(j *dhJob) error {
		qm.dhKey, j.key = j.key, nil
		e.sendQM2(qm, ch, offer, ps)
		return nil
	})
	return nil
}

// sendQM2 answers the peer's QM1 (payloads ps after HASH(1), offer its SA payload) with
// the chosen proposal ch.
func (e *Engine) sendQM2(qm *quickMode, ch espChoice, offer *isakmp.SA, ps []isakmp.Payload) {
	t := qm.tunnel
	reply := []isakmp.Payload{ch.reply(qm.spiIn), &isakmp.Nonce{Data: qm.nonceR}}
	if qm.dhKey != nil {
		reply = append(reply, &isakmp.KeyExchange{Data: qm.dhKey.Public()})
	}
	for _, p := range ps {
		if id, ok := p.(*isakmp.Identification); ok {
			reply = append(reply, id)
		}
	}
	ours := lifetimes{seconds: t.cfg.Lifetime, kilobytes: t.cfg.LifeKilobytes}
	var notify []isakmp.Attribute
	qm.life, notify = negotiateLifetime(ch.life, ours)
	if notify != nil {
		reply = append(reply, &isakmp.Notification{DOI: isakmp.DOIIPsec, ProtocolID: isakmp.ProtoESP,
			SPI: firstSPI(offer), NotifyType: isakmp.NotifyResponderLifetime, Data: isakmp.AppendAttributes(nil, notify)})
	}
	qm.sendProtected(reply, qm.nonceI, true)
}

// refuseQM1 ends a peer's authenticated quick mode that we cannot answer (it is not
// registered yet): it records err, for qm's tunnel once known, reports the outcome and,
// unless notify is 0, tells the peer about its offer.
func (e *Engine) refuseQM1(qm *quickMode, err error, notify isakmp.NotifyType, offer *isakmp.SA) error {
	sa, t := qm.sa, qm.tunnel
	dropKey(&qm.dhKey)
	if t != nil {
		e.recordError(sa, fmt.Errorf("tunnel %s: %w", t.cfg.Name, err))
	} else {
		e.recordError(sa, err)
	}
	e.observeQuick(sa, t, false, err, false)
	if notify != 0 {
		e.sendESPNotify(sa, firstSPI(offer), notify, nil)
	}
	return nil
}

// maxResponderQuickModes caps the quick modes a peer may have open with us under one IKE
// SA: each holds an allocated SPI and, with PFS, a DH key until it completes or times out.
const maxResponderQuickModes = 32

// respondingQuickModes counts the peer's quick modes under sa that are not complete.
func (sa *ikeSA) respondingQuickModes() int {
	n := 0
	for _, qm := range sa.qms {
		if !qm.initiator && !qm.done {
			n++
		}
	}
	return n
}

// firstSPI returns the SPI of the first proposal of an SA payload (for notifications).
func firstSPI(sa *isakmp.SA) []byte {
	if len(sa.Proposals) == 0 {
		return nil
	}
	return sa.Proposals[0].SPI
}

// negotiateLifetime returns the child SA lifetimes as responder: the offer, shortened to
// ours where ours is shorter, and the RESPONDER-LIFETIME attributes to send when it was
// shortened (RFC 2407 4.6.3.1). An offer without a time limit means the RFC default.
func negotiateLifetime(offer, ours lifetimes) (lifetimes, []isakmp.Attribute) {
	if offer.seconds == 0 {
		offer.seconds = defaultChildLifetime
	}
	got := offer
	var attrs []isakmp.Attribute
	if ours.seconds > 0 && ours.seconds < offer.seconds {
		got.seconds = ours.seconds
		attrs = append(attrs, isakmp.BasicAttribute(isakmp.IPsecAttrLifeType, isakmp.LifeTypeSeconds),
			isakmp.LifeAttribute(isakmp.IPsecAttrLifeDuration, uint64(ours.seconds/time.Second)))
	}
	if ours.kilobytes > 0 && (offer.kilobytes == 0 || ours.kilobytes < offer.kilobytes) {
		got.kilobytes = ours.kilobytes
		attrs = append(attrs, isakmp.BasicAttribute(isakmp.IPsecAttrLifeType, isakmp.LifeTypeKilobytes),
			isakmp.LifeAttribute(isakmp.IPsecAttrLifeDuration, ours.kilobytes))
	}
	return got, attrs
}

// responderLifetime returns the limits a RESPONDER-LIFETIME notification states; zero
// (no limit) for what it does not state or when it is malformed.
func responderLifetime(data []byte) lifetimes {
	attrs, err := isakmp.ParseAttributes(data)
	if err != nil {
		return lifetimes{}
	}
	return applyLifeAttributes(lifetimes{}, attrs)
}

// applyLifeAttributes reads SA Life Type / SA Life Duration pairs (RFC 2407 4.5).
func applyLifeAttributes(cur lifetimes, attrs []isakmp.Attribute) lifetimes {
	var lifeType uint64
	for _, a := range attrs {
		v, err := a.Uint()
		if err != nil {
			continue
		}
		switch a.Type {
		case isakmp.IPsecAttrLifeType:
			lifeType = v
		case isakmp.IPsecAttrLifeDuration:
			switch lifeType {
			case isakmp.LifeTypeSeconds:
				cur.seconds = time.Duration(v) * time.Second
			case isakmp.LifeTypeKilobytes:
				cur.kilobytes = v
			}
		}
	}
	return cur
}
