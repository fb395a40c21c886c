package ike

import (
	"cmp"
	"context"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/ike/dh"
	"github.com/espgw/espgw/ike/isakmp"
	"github.com/espgw/espgw/ike/keymat"
	"github.com/espgw/espgw/ike/proposal"
)

// Quick mode (RFC 2409 5.5) under an established ISAKMP SA:
//
//	QM1  HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr]        -->
//	QM2         <--  HDR*, HASH(2), SA, Nr [, KE] [, IDci, IDcr] [, N(RESPONDER-LIFETIME)]
//	QM3  HDR*, HASH(3)                                      -->
//
// HASH(1) = prf(SKEYID_a, M-ID | payloads after HASH(1))
// HASH(2) = prf(SKEYID_a, M-ID | Ni_b | payloads after HASH(2))
// HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)

// quickMode is one quick-mode exchange.
type quickMode struct {
	exchange
	sa        *ikeSA
	tunnel    *tunnel
	msgID     uint32
	initiator bool
	iv        []byte
	nonceI    []byte
	nonceR    []byte
	dhKey     dh.PrivateKey
	peerKE    []byte
	spiIn     uint32 // our inbound SPI; reserved until installed, released on failure
	spiOut    uint32
	prop      proposal.ESP
	life      lifetimes
	encap     bool
	done      bool
	dhBusy    bool   // a DH computation for it is out (dhwork.go)
	gen       uint64 // tunnel.installs when the exchange began
	answered  int    // initiator: sa.qm2s when the peer's QM2 for it was accepted
	paced     bool   // counted in the engine's quick modes in flight (queue.go)
}

// qm2CrossingWindow is how long after our QM3, in first-retransmission intervals, one
// repeated QM2 is still taken for the peer's retransmission that crossed it.
const qm2CrossingWindow = 5

// lifetimes are the SA life attributes of a child SA; zero means unlimited.
type lifetimes struct {
	seconds   time.Duration
	kilobytes uint64
}

// defaultChildLifetime applies when neither side states one (RFC 2407 4.5).
const defaultChildLifetime = 8 * time.Hour

// Sweet32Kilobytes is the volume limit of a child SA with a 64-bit block cipher (3DES)
// that has none: 1 GiB, 2^27 blocks, keeps the chance of a CBC block collision, which
// leaks plaintext (Sweet32, CVE-2016-2183), near 2^-11 per SA. It is ours alone (not
// offered): the datapath asks for the rekey before it.
const Sweet32Kilobytes = 1 << 20

// volumeLimit gives a child SA with a 64-bit block cipher and no volume limit Sweet32Kilobytes.
func volumeLimit(l lifetimes, p proposal.ESP) lifetimes {
	if l.kilobytes == 0 && p.Encryption.BlockSize() == 8 {
		l.kilobytes = Sweet32Kilobytes
	}
	return l
}

// offeredLifetime is what our quick-mode offer for t amounts to: its lifetimes, with the
// RFC default when it states no time limit.
func offeredLifetime(t *model.Tunnel) lifetimes {
	return lifetimes{seconds: cmp.Or(t.Lifetime, defaultChildLifetime), kilobytes: t.LifeKilobytes}
}

// initiatorLifetime is the lifetime of a child SA we initiated: the responder may only
// shorten what we offered (RFC 2407 4.6.3.1), in its echoed transform (echoed) or with
// RESPONDER-LIFETIME notifications in QM2 (ps); a longer or missing value leaves ours.
func initiatorLifetime(t *model.Tunnel, echoed lifetimes, ps []isakmp.Payload) lifetimes {
	life := offeredLifetime(t).shorter(echoed)
	for _, p := range ps {
		if n, ok := p.(*isakmp.Notification); ok && n.NotifyType == isakmp.NotifyResponderLifetime {
			life = life.shorter(responderLifetime(n.Data))
		}
	}
	return life
}

// shorter returns, limit by limit, the smaller of l and o, where zero means no limit.
func (l lifetimes) shorter(o lifetimes) lifetimes {
	if l.seconds == 0 || o.seconds != 0 && o.seconds < l.seconds {
		l.seconds = o.seconds
	}
	if l.kilobytes == 0 || o.kilobytes != 0 && o.kilobytes < l.kilobytes {
		l.kilobytes = o.kilobytes
	}
	return l
}

func (sa *ikeSA) newQuickMode(t *tunnel, msgID uint32, initiator bool) *quickMode {
	qm := &quickMode{
		exchange: exchange{e: sa.e, local: sa.local, remote: sa.remote},
		sa:       sa, tunnel: t, msgID: msgID, initiator: initiator,
		iv: sa.phase2IV(msgID),
	}
	qm.onGiveUp = func() {
		qm.fail(fmt.Errorf("quick mode %08x: %w", msgID, ErrTimeout)) // start: always retries (retry.go)
		sa.e.peerLostISAKMPSA(sa, t)
	}
	sa.qms[msgID] = qm
	return qm
}

// peerLostISAKMPSA handles a quick mode of ours that was to replace t's child SA (a rekey,
// or a one-sided re-key) and timed out without a word from the peer on sa for the whole
// exchange: the peer lost the ISAKMP SA (strongSwan drops it, without a Delete, when it
// gives up on a quick mode, e.g. after our QM3s were lost) or died. As after DPD, sa goes
// and the tunnels start afresh with a new phase 1: t at once, the start: always ones after
// the usual pause. A first negotiation fails as before. It reports whether it did so.
func (e *Engine) peerLostISAKMPSA(sa *ikeSA, t *tunnel) bool {
	if t.child == nil || sa.state != stateEstablished || e.now().Sub(sa.lastRecv) < e.opts.Retransmit.Timeout {
		return false
	}
	e.log.Warn("peer silent on the ISAKMP SA for a whole quick mode: deleting it", sa.logArgs("tunnel", t.cfg.Name, "last_received", sa.lastRecv)...)
	c := sa.conn
	e.deleteIKESA(sa, false, errPeerSilent)
	e.restartAlwaysAfter(c, e.opts.Retransmit.Initial)
	if !t.manualDown && !t.removed && e.conns[c.cfg.Name] == c {
		e.startTunnel(t, nil)
	}
	return true
}

// fail ends the quick mode with err, recording it when it was ours.
func (qm *quickMode) fail(err error) {
	qm.sa.e.observeQuickFailure(qm, err)
	e := qm.sa.e
	qm.stop()
	qm.releaseSPI()
	dropKey(&qm.dhKey)
	if qm.sa.qms[qm.msgID] == qm {
		delete(qm.sa.qms, qm.msgID)
	}
	if qm.initiator && qm.tunnel.qm == qm {
		qm.tunnel.qm = nil
		if !errors.Is(err, errShutdown) && !errors.Is(err, errDown) && !errors.Is(err, errRemoved) {
			e.recordError(qm.sa, fmt.Errorf("tunnel %s: %w", qm.tunnel.cfg.Name, err))
			e.retryTunnel(qm.tunnel, err)
		}
		qm.tunnel.notify(err)
	}
	e.releaseQuickModeRoom(qm)
	qm.sa.quickModeEnded()
}

// releaseSPI hands the reserved inbound SPI back to the kernel unless it was installed.
// It clears spiIn (SPI 0 is reserved, RFC 4303 2.1), so the SPI is released once.
func (qm *quickMode) releaseSPI() {
	if qm.spiIn == 0 || qm.done {
		return
	}
	sa, e := qm.sa, qm.sa.e
	if err := e.opts.Kernel.ReleaseSPI(context.Background(), sa.local.Addr(), sa.remote.Addr(), qm.spiIn); err != nil {
		e.log.Warn("releasing SPI failed", sa.logArgs("spi", hexSPI(qm.spiIn), "err", err)...)
	}
	qm.spiIn = 0
}

// finish keeps a completed quick mode around to answer retransmissions, then forgets it.
// As initiator that is how the peer gets our QM3 again when it lost it and resends QM2
// (RFC 2409 5.5): for as long as peers retransmit.
func (qm *quickMode) finish() {
	qm.done = true
	if qm.initiator && qm.tunnel.qm == qm {
		qm.tunnel.qm = nil
	}
	e := qm.sa.e
	e.releaseQuickModeRoom(qm)
	qm.sa.quickModeEnded()
	e.afterFunc(e.opts.Retransmit.Linger, func() {
		if qm.sa.qms[qm.msgID] == qm {
			delete(qm.sa.qms, qm.msgID)
		}
	})
}

// newMessageID returns a random message ID never used in sa and records it, so that the
// message, reflected back to us, is not taken for the peer's.
func (e *Engine) newMessageID(sa *ikeSA) (uint32, error) {
	var b [4]byte
	for {
		if _, err := io.ReadFull(e.opts.Rand, b[:]); err != nil {
			return 0, fmt.Errorf("ike: message ID: %w", err)
		}
		id := binary.BigEndian.Uint32(b[:])
		if _, used := sa.qms[id]; id != 0 && !used && !sa.msgIDs.has(id) {
			sa.msgIDs.add(id)
			return id, nil
		}
	}
}

// startQuickMode negotiates a child SA for t under sa.
func (e *Engine) startQuickMode(sa *ikeSA, t *tunnel) {
	if err := e.sendQM1(sa, t); err != nil {
		e.recordError(sa, fmt.Errorf("tunnel %s: %w", t.cfg.Name, err))
		t.notify(err)
	}
}

func (e *Engine) sendQM1(sa *ikeSA, t *tunnel) error {
	msgID, err := e.newMessageID(sa)
	if err != nil {
		return err
	}
	nonce, err := e.makeNonce()
	if err != nil {
		return err
	}
	// From here on every failure goes through qm.fail, which releases the SPI.
	spi, err := e.opts.Kernel.AllocSPI(context.Background(), sa.local.Addr(), sa.remote.Addr())
	if err != nil {
		return fmt.Errorf("allocating SPI: %w", err)
	}
	qm := sa.newQuickMode(t, msgID, true)
	e.qmPace.take(qm)
	qm.gen = t.installs
	t.qm = qm
	qm.spiIn, qm.nonceI = spi, nonce
	ps := []isakmp.Payload{espOffer(&t.cfg, spi, sa.encapMode()), &isakmp.Nonce{Data: nonce}}
	send := func() {
		local, remote := t.proxyIDs()
		ps = append(ps, proxyID(local), proxyID(remote))
		qm.sendProtected(ps, nil, true)
		e.log.Info("initiating quick mode", sa.logArgs("tunnel", t.cfg.Name, "msgid", hexSPI(msgID))...)
	}
	g := pfsGroup(&t.cfg)
	if g == 0 {
		send()
		return nil
	}
	e.quickDH(qm, &dhJob{group: g}, func(j *dhJob) error {
		qm.dhKey, j.key = j.key, nil
		ps = append(ps, &isakmp.KeyExchange{Data: qm.dhKey.Public()})
		send()
		return nil
	})
	return nil
}

// sendProtected sends HDR*, HASH, ps with HASH = prf(SKEYID_a, M-ID | prefix | ps).
func (qm *quickMode) sendProtected(ps []isakmp.Payload, prefix []byte, awaitReply bool) {
	mid := binary.BigEndian.AppendUint32(nil, qm.msgID)
	h := qm.sa.hashPayloads(append(mid, prefix...), [][]byte{isakmp.AppendPayloads(nil, ps)})
	all := append([]isakmp.Payload{&isakmp.Hash{Data: h}}, ps...)
	msg, iv := qm.sa.seal(qm.sa.header(isakmp.ExchangeQuickMode, qm.msgID), all, qm.iv)
	qm.iv = iv
	qm.send(msg, qm.sa.local, qm.sa.remote, awaitReply)
}

// openProtected decrypts a quick-mode message and verifies its leading HASH payload against
// prf(SKEYID_a, prefix | the payloads after it). It returns the payloads after HASH.
func (qm *quickMode) openProtected(in *inbound, prefix []byte) ([]isakmp.Payload, error) {
	ps, raws, iv, err := qm.sa.open(in.m, in.raw, qm.iv)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 || ps[0].Type() != isakmp.PayloadHash {
		return nil, fmt.Errorf("quick mode %08x: first payload is not HASH", qm.msgID)
	}
	rest := make([][]byte, 0, len(raws)-1)
	for _, r := range raws[1:] {
		rest = append(rest, r.Bytes)
	}
	if !hmac.Equal(ps[0].(*isakmp.Hash).Data, qm.sa.hashPayloads(prefix, rest)) {
		return nil, fmt.Errorf("quick mode %08x: HASH does not verify", qm.msgID)
	}
	qm.iv = iv
	qm.accepted(in.raw)
	qm.sa.lastQM = qm.sa.e.now()
	qm.sa.peerAlive()
	return ps[1:], nil
}

// handleQuickMode processes a quick-mode message under an established IKE SA.
func (e *Engine) handleQuickMode(sa *ikeSA, in *inbound) error {
	id := in.m.Header.MessageID
	if sa.state != stateEstablished || id == 0 {
		return errIgnore
	}
	qm := sa.qms[id]
	switch {
	case qm == nil && sa.msgIDs.has(id):
		return fmt.Errorf("quick mode %08x: %w", id, errReplayedMsgID)
	case qm == nil:
		return e.respondQM1(sa, in)
	case qm.initiator && qm.done && sa.qm2s > qm.answered && qm.repeats(in.raw):
		// The peer has answered a later quick mode of ours since: strongSwan retransmits only
		// its latest answer, so this is an echo of one of our QM1 copies (see handleQM2).
		return nil
	case qm.initiator && qm.dhBusy:
		return nil // our QM3 follows when the DH is done; lastOut is still QM1
	case qm.duplicate(in.raw):
		sa.lastQM = e.now() // the peer is still waiting for our QM3 (dpd.go)
		return nil
	case qm.done, qm.dhBusy:
		return nil
	case qm.initiator:
		return e.handleQM2(qm, in)
	}
	return e.handleQM3(qm, in)
}

func (e *Engine) handleQM2(qm *quickMode, in *inbound) error {
	sa := qm.sa
	ps, err := qm.openProtected(in, append(binary.BigEndian.AppendUint32(nil, qm.msgID), qm.nonceI...))
	if err != nil {
		return err
	}
	t := qm.tunnel
	ch, err := acceptESPChoice(&t.cfg, ps)
	if err == nil {
		err = qm.takeNonceKE(ps, ch.prop.Group)
	}
	if err == nil {
		err = checkProxyIDs(ps, t)
	}
	if err != nil {
		qm.fail(err)
		return nil
	}
	qm.spiOut, qm.prop, qm.encap = ch.spi, ch.prop, ch.encap
	qm.life = initiatorLifetime(&t.cfg, ch.life, ps)
	qm.stop() // QM1 is answered; QM3 goes once the child SA is installed (installKeys)
	e.releaseQuickModeRoom(qm)
	sa.qm2s++
	qm.answered = sa.qm2s
	return qm.install()
}

// sendQM3 ends our quick mode with HASH(3). It goes after our child SA is installed: the
// peer installs its side on receipt and may send on the new SA at once (with PFS our DH
// took hundreds of ms under load, and a rekeyed tunnel's replies were lost meanwhile).
func (qm *quickMode) sendQM3() {
	sa, e := qm.sa, qm.sa.e
	h3 := sa.hashPayloads(qm.hash3Data(), nil)
	msg, iv := sa.seal(sa.header(isakmp.ExchangeQuickMode, qm.msgID), []isakmp.Payload{&isakmp.Hash{Data: h3}}, qm.iv)
	qm.iv = iv
	// A QM3 strongSwan no longer expects fails to decrypt there and costs IV slots of the
	// quick modes after it. So as many repeated QM2s as we resent QM1 answer those copies,
	// however late we read them (a loaded gateway reads its socket seconds late), and one
	// more within qm2CrossingWindow is the peer's retransmission that crossed this QM3.
	qm.echoes, qm.crossUntil = qm.tries-1, e.now().Add(qm2CrossingWindow*e.opts.Retransmit.Initial)
	qm.send(msg, sa.local, sa.remote, false)
}

func (e *Engine) handleQM3(qm *quickMode, in *inbound) error {
	if _, err := qm.openProtected(in, qm.hash3Data()); err != nil {
		return err
	}
	qm.stop()
	qm.lastOut = nil // QM3 is the last message: a repeated one gets no answer (QM2 would loop)
	return qm.install()
}

// hash3Data is what HASH(3) is the prf of: HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)
// (RFC 2409 5.5). The initiator sends it in QM3, the responder verifies it.
func (qm *quickMode) hash3Data() []byte {
	b := binary.BigEndian.AppendUint32([]byte{0}, qm.msgID)
	return append(append(b, qm.nonceI...), qm.nonceR...)
}

// takeNonceKE stores the peer's nonce and, with PFS, its KE payload.
func (qm *quickMode) takeNonceKE(ps []isakmp.Payload, group uint16) error {
	n, _, ok := findPayload[*isakmp.Nonce](ps, nil)
	if !ok {
		return fmt.Errorf("quick mode %08x lacks a nonce payload", qm.msgID)
	}
	if qm.initiator {
		qm.nonceR = clone(n.Data)
	} else {
		qm.nonceI = clone(n.Data)
	}
	ke, _, hasKE := findPayload[*isakmp.KeyExchange](ps, nil)
	switch {
	case group == 0 && hasKE:
		return fmt.Errorf("quick mode %08x: KE payload without a PFS group in the proposal", qm.msgID)
	case group != 0 && !hasKE:
		return fmt.Errorf("quick mode %08x: PFS group %d proposed but no KE payload", qm.msgID, group)
	case group != 0:
		if err := checkKE(group, ke.Data); err != nil {
			return err
		}
		qm.peerKE = clone(ke.Data)
	}
	return nil
}

// install derives KEYMAT for both directions (RFC 2409 5.5) and installs the child SA.
func (qm *quickMode) install() error {
	e, t := qm.sa.e, qm.tunnel
	if t.removed {
		qm.fail(errRemoved)
		return nil
	}
	if qm.dhKey == nil {
		qm.installKeys(nil)
		return nil
	}
	job := &dhJob{key: qm.dhKey, peer: qm.peerKE}
	qm.dhKey = nil
	e.quickDH(qm, job, func(j *dhJob) error {
		if t.removed {
			return errRemoved
		}
		qm.installKeys(j.shared)
		return nil
	})
	return nil
}

// installKeys derives the child SA's keys with the PFS secret gxy (nil without PFS) and
// installs it.
func (qm *quickMode) installKeys(gxy []byte) {
	sa, e, t := qm.sa, qm.sa.e, qm.tunnel
	encLen, integLen := qm.prop.EncKeyLen(), qm.prop.IntegKeyLen()
	keys := func(spi uint32) ([]byte, []byte) {
		km := keymat.QuickModeKeymat(sa.keys.hash, sa.keys.D, gxy, uint8(isakmp.ProtoESP),
			binary.BigEndian.AppendUint32(nil, spi), qm.nonceI, qm.nonceR, encLen+integLen)
		return km[:encLen], km[encLen:]
	}
	cs := &ChildSA{
		Connection: sa.conn.cfg.Name, Tunnel: t.cfg.Name, ReqID: t.reqID,
		Local: sa.local.Addr(), Remote: sa.remote.Addr(),
		Proposal: qm.prop, SPIIn: qm.spiIn, SPIOut: qm.spiOut,
		LocalTS: t.localTS(), RemoteTS: t.remoteTS(), // one each
		Lifetime: qm.life.seconds, LifeKilobytes: volumeLimit(qm.life, qm.prop).kilobytes,
		Established: e.now(), Initiator: qm.initiator,
	}
	if qm.encap {
		cs.EncapLocalPort, cs.EncapRemotePort = sa.local.Port(), sa.remote.Port()
	}
	cs.EncKeyIn, cs.IntegKeyIn = keys(qm.spiIn)
	cs.EncKeyOut, cs.IntegKeyOut = keys(qm.spiOut)
	if err := e.installChild(qm, cs); err != nil {
		qm.fail(fmt.Errorf("installing child SA: %w", err))
		return
	}
	if qm.initiator {
		qm.sendQM3()
	}
	qm.finish()
	t.notify(nil)
}
