package ike

import (
	"bytes"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/ike/isakmp"
	"github.com/espgw/espgw/ike/proposal"
)

// Informational exchanges (RFC 2408 4.8, RFC 2409 5.7) under an established ISAKMP SA are
// HDR*, HASH(1), N/D with HASH(1) = prf(SKEYID_a, M-ID | N/D). They are one-shot: their IV
// is derived from the message ID and nothing is retransmitted.

// sendInformational sends ps in a protected informational exchange of sa.
func (e *Engine) sendInformational(sa *ikeSA, ps ...isakmp.Payload) {
	if sa.keys == nil || sa.state != stateEstablished {
		return
	}
	msgID, err := e.newMessageID(sa)
	if err != nil {
		e.log.Warn("informational not sent", sa.logArgs("err", err)...)
		return
	}
	mid := binary.BigEndian.AppendUint32(nil, msgID)
	h := sa.hashPayloads(mid, [][]byte{isakmp.AppendPayloads(nil, ps)})
	all := append([]isakmp.Payload{&isakmp.Hash{Data: h}}, ps...)
	msg, _ := sa.seal(sa.header(isakmp.ExchangeInformational, msgID), all, sa.phase2IV(msgID))
	if err := e.opts.Bind.SendIKE(msg, sa.local, sa.remote); err != nil {
		e.log.Debug("send failed", sa.logArgs("err", err)...)
	}
}

func (e *Engine) sendDeleteESP(sa *ikeSA, spiIn uint32) {
	e.sendInformational(sa, &isakmp.Delete{DOI: isakmp.DOIIPsec, ProtocolID: isakmp.ProtoESP,
		SPISize: 4, SPIs: [][]byte{binary.BigEndian.AppendUint32(nil, spiIn)}})
}

func (e *Engine) sendDeleteISAKMP(sa *ikeSA) {
	e.sendInformational(sa, &isakmp.Delete{DOI: isakmp.DOIIPsec, ProtocolID: isakmp.ProtoISAKMP,
		SPISize: 16, SPIs: [][]byte{sa.cookies()}})
}

// sendESPNotify reports a quick-mode failure for the SA with that SPI.
func (e *Engine) sendESPNotify(sa *ikeSA, spi []byte, t isakmp.NotifyType, data []byte) {
	e.sendInformational(sa, &isakmp.Notification{DOI: isakmp.DOIIPsec, ProtocolID: isakmp.ProtoESP,
		SPI: spi, NotifyType: t, Data: data})
}

// handleInformational processes an informational exchange for sa.
func (e *Engine) handleInformational(sa *ikeSA, in *inbound) error {
	if in.m.Header.Flags&isakmp.FlagEncryption == 0 {
		return e.handlePlainNotify(sa, in)
	}
	if sa.keys == nil {
		return errIgnore
	}
	ps, err := sa.openInformational(in)
	if sa.state != stateEstablished {
		return e.handlePhase1Informational(sa, ps, err)
	}
	if err != nil {
		return err
	}
	id := in.m.Header.MessageID
	if sa.msgIDs.has(id) {
		// A replay, or one of ours reflected: only answering R-U-THERE is harmless to
		// repeat, and a peer that lost our ACK retransmits its request unchanged.
		for _, p := range ps {
			if n, ok := p.(*isakmp.Notification); ok && n.NotifyType == isakmp.NotifyRUThere {
				e.handleNotify(sa, n)
			}
		}
		return fmt.Errorf("informational %08x: %w", id, errReplayedMsgID)
	}
	sa.msgIDs.add(id)
	for _, p := range ps {
		switch p := p.(type) {
		case *isakmp.Delete:
			e.handleDelete(sa, p)
		case *isakmp.Notification:
			e.handleNotify(sa, p)
		}
		if sa.state == stateDeleted {
			break
		}
	}
	return nil
}

// handleDelete honours a peer's Delete payload (RFC 2408 3.15).
func (e *Engine) handleDelete(sa *ikeSA, d *isakmp.Delete) {
	switch d.ProtocolID {
	case isakmp.ProtoISAKMP:
		for _, spi := range d.SPIs {
			if bytes.Equal(spi, sa.cookies()) {
				// Its child SAs stay (RFC 2409 ties them to no ISAKMP SA): the peer deletes
				// them with their own Delete payloads when it means to.
				e.log.Info("peer deleted IKE SA", sa.logArgs()...)
				conn := sa.conn
				e.handOverChildren(sa)
				e.deleteIKESA(sa, false, errDeleted)
				e.restartAlways(conn)
				return
			}
		}
	case isakmp.ProtoESP:
		for _, spi := range d.SPIs {
			if len(spi) != 4 {
				continue
			}
			v := binary.BigEndian.Uint32(spi)
			found := false
			for _, ch := range e.children {
				// The peer should name its inbound SPI (our outbound one), but a peer that
				// failed to install the pair names the SPI it was given (our inbound one):
				// either way the pair is gone on its side. Any IKE SA with the peer may
				// carry the Delete: after a reauthentication the peer's and our idea of
				// which one owns a child SA can differ for a moment.
				if ch.tunnel.conn == sa.conn && (ch.SPIOut == v || ch.SPIIn == v) {
					found = true
					t := ch.tunnel
					e.log.Info("peer deleted child SA", sa.logArgs("tunnel", t.cfg.Name, "spi", hexSPI(v))...)
					e.deleteChild(ch, false)
					e.restartAlways(t.conn)
				}
			}
			if !found {
				e.log.Debug("peer deleted an unknown child SA", sa.logArgs("spi", hexSPI(v))...)
			}
		}
	}
}

// handleNotify acts on a protected notification.
func (e *Engine) handleNotify(sa *ikeSA, n *isakmp.Notification) {
	switch {
	case n.NotifyType == isakmp.NotifyRUThere:
		e.sendInformational(sa, &isakmp.Notification{DOI: isakmp.DOIIPsec, ProtocolID: isakmp.ProtoISAKMP,
			SPI: sa.cookies(), NotifyType: isakmp.NotifyRUThereAck, Data: n.Data})
	case n.NotifyType == isakmp.NotifyRUThereAck:
		sa.dpd.ack(n.Data, e.now())
	case n.NotifyType == isakmp.NotifyInitialContact:
		e.initialContact(sa)
	case n.NotifyType == isakmp.NotifyInvalidSPI && n.ProtocolID == isakmp.ProtoESP:
		e.invalidSPI(sa, n)
	case n.NotifyType.IsError():
		e.quickModeRejected(sa, n)
	}
}

// quickModeRejected fails the quick mode of ours an error notification is about: the one
// whose SPI it names or, from peers that name none, the only one pending. A notification
// that a message did not parse names no exchange, whatever its SPI: strongSwan sends
// PAYLOAD-MALFORMED for the ISAKMP SA when a late retransmission no longer decrypts under
// the IV it has moved on to. Failing the quick mode then in flight dropped the peer's QM2
// for it as a replay (bench/setup, 1,000 tunnels); its own retransmissions settle it.
func (e *Engine) quickModeRejected(sa *ikeSA, n *isakmp.Notification) {
	if n.NotifyType == isakmp.NotifyPayloadMalformed || n.NotifyType == isakmp.NotifyInvalidPayloadType {
		e.log.Warn("peer could not parse one of our messages", sa.logArgs("notify", n.NotifyType)...)
		return
	}
	err := fmt.Errorf("%w %s", ErrPeerNotify, n.NotifyType)
	if n.NotifyType == isakmp.NotifyInvalidIDInformation {
		err = fmt.Errorf("%w: peer rejected our proxy IDs (%s)", ErrIDMismatch, n.NotifyType)
	}
	var pending []*quickMode
	for _, qm := range sa.qms {
		if qm.initiator && !qm.done {
			pending = append(pending, qm)
		}
	}
	for _, qm := range pending {
		if len(pending) == 1 || len(n.SPI) == 4 && binary.BigEndian.Uint32(n.SPI) == qm.spiIn {
			if n.NotifyType == isakmp.NotifyNoProposalChosen {
				err = fmt.Errorf("%w: peer rejected our ESP proposals %s: %w", ErrNoProposalChosen,
					proposal.FormatESP(qm.tunnel.cfg.Proposals), err)
			}
			qm.fail(fmt.Errorf("quick mode for tunnel %s: %w", qm.tunnel.cfg.Name, err))
		}
	}
}

// invalidSPIGrace is how young a child SA may be for the peer's INVALID-SPI to be taken as
// a race with our QM3 (ESP that overtook it) rather than a lost SA.
const invalidSPIGrace = 2 * time.Second

// invalidSPI acts on the peer's protected INVALID-SPI (Cisco's "invalid SPI recovery"): it
// got ESP with an SPI it does not know, so the child SA with that outbound SPI carries our
// traffic into a black hole. It is deleted and the tunnel renegotiated, whatever its start
// action: it had traffic. The SPI is in the notification's SPI field or, from some peers,
// in its data.
func (e *Engine) invalidSPI(sa *ikeSA, n *isakmp.Notification) {
	raw := n.SPI
	if len(raw) != 4 {
		raw = n.Data
	}
	if len(raw) != 4 {
		return
	}
	spi := binary.BigEndian.Uint32(raw)
	for _, ch := range e.children {
		if ch.tunnel.conn != sa.conn || ch.SPIOut != spi {
			continue
		}
		t := ch.tunnel
		if e.now().Sub(ch.Established) < invalidSPIGrace {
			e.log.Debug("peer sent INVALID-SPI for a child SA just installed; ignored", sa.logArgs("tunnel", t.cfg.Name, "spi", hexSPI(spi))...)
			return
		}
		e.log.Warn("peer does not know the child SA (INVALID-SPI): renegotiating", sa.logArgs("tunnel", t.cfg.Name, "spi_out", hexSPI(spi))...)
		e.addError(sa.conn.cfg.Name, fmt.Errorf("tunnel %s: %w INVALID-SPI for our outbound SPI %08x: renegotiating", t.cfg.Name, ErrPeerNotify, spi))
		e.deleteChild(ch, true)
		if !t.manualDown && !t.removed {
			e.startTunnel(t, nil)
		}
		return
	}
	e.log.Debug("peer sent INVALID-SPI for an SPI we do not use", sa.logArgs("spi", hexSPI(spi))...)
}

// openInformational decrypts a protected informational message and verifies HASH(1).
// It returns the payloads after HASH(1).
func (sa *ikeSA) openInformational(in *inbound) ([]isakmp.Payload, error) {
	ps, raws, _, err := sa.open(in.m, in.raw, sa.phase2IV(in.m.Header.MessageID))
	if err != nil {
		return nil, err
	}
	if len(ps) < 2 || ps[0].Type() != isakmp.PayloadHash {
		return nil, fmt.Errorf("informational: want HASH then N or D, got %d payloads", len(ps))
	}
	rest := make([][]byte, 0, len(raws)-1)
	for _, r := range raws[1:] {
		rest = append(rest, r.Bytes)
	}
	if !hmac.Equal(ps[0].(*isakmp.Hash).Data, sa.hashPayloads(binary.BigEndian.AppendUint32(nil, in.m.Header.MessageID), rest)) {
		return nil, errors.New("informational: HASH(1) does not verify")
	}
	return ps[1:], nil
}

// handlePhase1Informational handles a protected informational that answers our MM5 (the
// keys exist, phase 1 is not complete). A peer that could not decrypt MM5 answers with a
// notification under its own, different keys (strongSwan: PAYLOAD-MALFORMED), which we in
// turn cannot decrypt: with pre-shared keys, that means the keys differ.
func (e *Engine) handlePhase1Informational(sa *ikeSA, ps []isakmp.Payload, openErr error) error {
	if sa.state != stateMM5Sent {
		return errIgnore
	}
	if openErr != nil {
		return fatal(fmt.Errorf("%w: peer answered MM5 with a notification we cannot decrypt (%v)", ErrPSKMismatch, openErr))
	}
	for _, p := range ps {
		n, ok := p.(*isakmp.Notification)
		if !ok || !n.NotifyType.IsError() {
			continue
		}
		if n.NotifyType == isakmp.NotifyInvalidIDInformation {
			return fatal(fmt.Errorf("%w: peer rejected our identity (%s)", ErrIDMismatch, n.NotifyType))
		}
		return fatal(fmt.Errorf("%w %s in state %s", ErrPeerNotify, n.NotifyType, sa.state))
	}
	return errIgnore
}

// handlePlainNotify handles an unencrypted notification for a half-open IKE SA: the peer
// gave up on phase 1 and says why.
func (e *Engine) handlePlainNotify(sa *ikeSA, in *inbound) error {
	if sa.state == stateEstablished {
		return errIgnore
	}
	n, _, ok := findPayload[*isakmp.Notification](in.m.Payloads, nil)
	if !ok || !n.NotifyType.IsError() {
		return errIgnore
	}
	err := fmt.Errorf("%w %s in state %s", ErrPeerNotify, n.NotifyType, sa.state)
	switch {
	case n.NotifyType == isakmp.NotifyNoProposalChosen:
		err = fmt.Errorf("%w: peer rejected our proposals %s: %w", ErrNoProposalChosen, ikeProposalsString(&sa.conn.cfg), err)
	case n.NotifyType == isakmp.NotifyInvalidIDInformation:
		err = fmt.Errorf("%w: peer rejected our identity: %w", ErrIDMismatch, err)
	case sa.state == stateMM5Sent || sa.state == stateAM2Sent:
		err = fmt.Errorf("%w: peer could not authenticate us: %w", ErrPSKMismatch, err)
	}
	return fatal(err)
}

// restartAlways renegotiates the start: always tunnels of c that went down, after a short
// pause so that a peer deleting everything does not meet an instant storm.
func (e *Engine) restartAlways(c *connection) {
	e.restartAlwaysAfter(c, e.opts.Retransmit.Initial)
}

// restartAlwaysAfter is restartAlways after delay.
func (e *Engine) restartAlwaysAfter(c *connection, delay time.Duration) {
	if e.closed {
		return
	}
	e.afterFunc(delay, func() {
		if e.conns[c.cfg.Name] != c {
			return
		}
		for _, t := range c.sortedTunnels() {
			if t.cfg.Start == model.StartAlways && !t.manualDown && t.child == nil && t.qm == nil {
				e.startTunnel(t, nil)
			}
		}
	})
}
