package ike

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/ike/ikev2"
)

// v2Inbound is a received IKEv2 message with its addresses.
type v2Inbound struct {
	m             *ikev2.Message
	raw           []byte
	local, remote netip.AddrPort
}

// isIKEv2 reports whether an IKE message's header says major version 2 (RFC 7296 2.5);
// handlePacket hands those to handleV2Packet.
func isIKEv2(b []byte) bool { return len(b) >= ikev2.HeaderLen && b[17]>>4 == 2 }

// handleV2Packet dispatches one received IKEv2 message: a new IKE_SA_INIT request, or a
// message of one of our IKE SAs, found by the SPI we chose. Message IDs (RFC 7296 2.1-2.3):
// a response must answer our request in flight; a request must carry the next ID we expect
// from the peer, and a retransmission of the previous one gets our last response again.
func (e *Engine) handleV2Packet(pkt conn.Packet) {
	m, err := ikev2.Decode(pkt.Data)
	if err != nil {
		e.log.Debug("dropping malformed IKEv2 message", "peer", pkt.Remote, "err", err)
		return
	}
	in := &v2Inbound{m: m, raw: pkt.Data, local: pkt.Local, remote: pkt.Remote}
	h := &m.Header
	fromInitiator := h.Flags&ikev2.FlagInitiator != 0
	if h.Exchange == ikev2.ExchangeIKESAInit && !h.IsResponse() && h.SPIr == (ikev2.SPI{}) && fromInitiator {
		e.respondSAInit(in)
		return
	}
	ours := h.SPIi
	if fromInitiator {
		ours = h.SPIr
	}
	sa := e.v2SAs[ours]
	switch {
	case sa == nil:
		e.log.Debug("dropping IKEv2 message for unknown IKE SA", "peer", in.remote, "exchange", h.Exchange, "spi_i", h.SPIi, "spi_r", h.SPIr)
		return
	case in.remote.Addr() != sa.remote.Addr(), sa.initiator == fromInitiator, h.SPIi != sa.spiI,
		sa.state != v2InitSent && h.SPIr != sa.spiR:
		e.log.Debug("dropping IKEv2 message that does not fit its IKE SA", sa.logArgs("from", in.remote, "exchange", h.Exchange)...)
		return
	}
	e.observeReceived(sa.conn)
	if h.IsResponse() {
		err = e.handleV2Response(sa, in)
	} else {
		err = e.handleV2Request(sa, in)
	}
	e.handleV2Error(sa, in, err)
	if sa.state != v2Deleted {
		sa.sendNext()
	}
}

// handleV2Response takes the response to our request in flight.
func (e *Engine) handleV2Response(sa *v2SA, in *v2Inbound) error {
	h := &in.m.Header
	if sa.state == v2InitSent {
		if h.Exchange != ikev2.ExchangeIKESAInit || h.MessageID != 0 {
			return errIgnore
		}
		return e.handleSAInitResponse(sa, in)
	}
	r := sa.pending
	if r == nil || h.MessageID != sa.reqID || h.Exchange != r.exchange {
		return errIgnore // a late retransmission, or not ours
	}
	ps, err := sa.openSK(in)
	if err != nil {
		return err
	}
	sa.lastRecv = e.now()
	sa.pending = nil
	sa.req.stop()
	sa.reqID++
	if r.onReply != nil {
		return r.onReply(ps)
	}
	return nil
}

// handleV2Request takes a request of the peer.
func (e *Engine) handleV2Request(sa *v2SA, in *v2Inbound) error {
	h := &in.m.Header
	switch {
	case h.MessageID+1 == sa.peerID:
		return sa.answerAgain(in)
	case h.MessageID != sa.peerID:
		return errIgnore
	case sa.state == v2InitDone && h.Exchange != ikev2.ExchangeIKEAuth,
		sa.state != v2InitDone && sa.state != v2Established:
		return errIgnore
	}
	ps, err := sa.openSK(in)
	if err != nil {
		return err
	}
	sa.peerID++
	sa.resp.accepted(in.raw)
	sa.lastRecv = e.now()
	switch {
	case h.Exchange == ikev2.ExchangeIKEAuth && sa.state == v2InitDone:
		return e.handleAuthRequest(sa, in, ps)
	case sa.state != v2Established:
		return errIgnore
	case h.Exchange == ikev2.ExchangeCreateChildSA:
		e.handleCreateChild(sa, h.MessageID, ps)
	case h.Exchange == ikev2.ExchangeInformational:
		e.handleV2Informational(sa, h.MessageID, ps)
	default:
		sa.respond(h.Exchange, h.MessageID, &ikev2.Notify{NotifyType: ikev2.NotifyInvalidSyntax})
	}
	return nil
}

// answerAgain resends our response to a retransmission of the peer's last request: a whole
// message that repeats the one we answered or, if it came in fragments, its first fragment
// once it verifies (RFC 7383 2.6.1: the peer may have fragmented it anew, smaller); the
// other fragments are ignored. The repeat says our response was lost: it goes in smaller
// fragments (v2_fragment.go).
func (sa *v2SA) answerAgain(in *v2Inbound) error {
	f := ikev2.Find[*ikev2.EncryptedFragment](in.m.Payloads)
	fragment := f != nil
	switch {
	case !fragment && !sa.resp.repeats(in.raw), fragment && (f.Number != 1 || !sa.fragments):
		return errIgnore
	case fragment:
		if _, err := sa.sk.decrypt(in.raw, f.Encrypted); err != nil {
			return err
		}
	}
	sa.refragmentResponse(in.m.Header.MessageID)
	sa.resp.transmit()
	return nil
}

// openSK verifies and decrypts a protected message. A message that does not verify is not
// the peer's: it is dropped without an answer (RFC 7296 2.21.2).
func (sa *v2SA) openSK(in *v2Inbound) ([]ikev2.Payload, error) {
	ps := in.m.Payloads
	if len(ps) == 0 || sa.sk == nil {
		return nil, fmt.Errorf("%s message without payloads, want SK", in.m.Header.Exchange)
	}
	switch sk := ps[len(ps)-1].(type) {
	case *ikev2.Encrypted:
		return sa.sk.open(in.raw, sk)
	case *ikev2.EncryptedFragment:
		return sa.reassemble(in, sk)
	}
	return nil, fmt.Errorf("%s message is not protected, want an SK payload", in.m.Header.Exchange)
}

// handleV2Error applies a handler's verdict as handleError does for IKEv1.
func (e *Engine) handleV2Error(sa *v2SA, in *v2Inbound, err error) {
	var f *fatalError
	switch {
	case err == nil, errors.Is(err, errIgnore):
	case errors.As(err, &f):
		e.failV2(sa, f.err)
	default:
		e.log.Debug("dropping IKEv2 message", sa.logArgs("exchange", in.m.Header.Exchange, "msgid", in.m.Header.MessageID, "err", err)...)
	}
}
