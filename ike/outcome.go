package ike

import (
	"errors"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/ike/proposal"
)

// Outcomes for monitoring. Every phase 1 and quick mode that ends is reported once to
// Options.Observer with a Result from a fixed set, so that a metric labelled with it stays
// small; deletions of established SAs are reported with the side that caused them, and
// every IKE message from a configured peer's address with its arrival time.

// Exchange is the kind of negotiation an Outcome reports.
type Exchange string

const (
	ExchangeMain       Exchange = "main"
	ExchangeAggressive Exchange = "aggressive"
	ExchangeQuick      Exchange = "quick"
	ExchangeIKEv2      Exchange = "ikev2"       // IKE_SA_INIT and IKE_AUTH
	ExchangeChildV2    Exchange = "ikev2_child" // an IKEv2 CHILD_SA (IKE_AUTH or CREATE_CHILD_SA)
)

// Result is how a negotiation ended: ResultSuccess or one failure reason.
type Result string

const (
	ResultSuccess Result = "success"
	// ResultNoProposalChosen: no proposal was acceptable, to us or (NO-PROPOSAL-CHOSEN) to the peer.
	ResultNoProposalChosen Result = "no_proposal_chosen"
	// ResultPSKMismatch: the peer's MM5/MM6 (AM2/AM3) did not decrypt or its HASH did not
	// verify, or the peer said it could not authenticate us or answered with a message under
	// keys that differ from ours (ErrPSKMismatch).
	ResultPSKMismatch Result = "psk_mismatch"
	// ResultIDMismatch: the peer's identity or quick-mode proxy IDs do not match the
	// configuration, or the peer rejected ours (INVALID-ID-INFORMATION).
	ResultIDMismatch Result = "id_mismatch"
	// ResultTimeout: the peer stopped answering (ErrTimeout). A silent peer after our MM5 is
	// often one with a different key, but nothing proves it: it counts as a timeout.
	ResultTimeout Result = "timeout"
	// ResultPeerNotify: the peer rejected the exchange with another error notification.
	ResultPeerNotify Result = "peer_notify"
	// ResultAborted: the exchange ended unfinished because its IKE SA went away (deleted by
	// the peer, DPD, replaced) or the connection was taken down, removed or shut down.
	ResultAborted Result = "aborted"
	// ResultOther: anything else, e.g. a malformed message or a local error.
	ResultOther Result = "other"
)

// Results lists every Result, success first.
var Results = []Result{ResultSuccess, ResultNoProposalChosen, ResultPSKMismatch, ResultIDMismatch,
	ResultTimeout, ResultPeerNotify, ResultAborted, ResultOther}

// ErrNoProposalChosen is wrapped when the peer answered NO-PROPOSAL-CHOSEN; when we find no
// acceptable proposal, the error wraps a *proposal.NoProposalChosenError instead.
var ErrNoProposalChosen = errors.New("no proposal chosen")

// Outcome is the end of one negotiation.
type Outcome struct {
	Connection string
	Tunnel     string // quick mode: the tunnel; "" in phase 1 or when no tunnel matched
	Exchange   Exchange
	Initiator  bool
	Result     Result
	// Rekey is set on a success that replaced an established SA of the same connection
	// (phase 1) or tunnel (quick mode).
	Rekey bool
}

// Deletion reports that an established SA went away.
type Deletion struct {
	Connection string
	Tunnel     string // "" for an IKE SA
	// ByPeer: the peer deleted it (Delete payload), announced a restart (INITIAL-CONTACT) or
	// was declared dead by DPD; otherwise we did (lifetime, rekey, down, reload, shutdown).
	ByPeer bool
}

// Observer receives outcomes for monitoring. The engine calls it with its lock held: the
// methods must be quick and must not call back into the Engine.
type Observer interface {
	Negotiated(Outcome)
	Deleted(Deletion)
	// Received reports an IKE message from the address of the connection's peer.
	Received(connection string, at time.Time)
}

// Classify maps a negotiation error onto its Result; nil is ResultSuccess.
func Classify(err error) Result {
	npc := (*proposal.NoProposalChosenError)(nil)
	switch {
	case err == nil:
		return ResultSuccess
	case errors.Is(err, ErrTimeout):
		return ResultTimeout
	case errors.Is(err, ErrPSKMismatch):
		return ResultPSKMismatch
	case errors.Is(err, ErrIDMismatch):
		return ResultIDMismatch
	case errors.Is(err, ErrNoProposalChosen), errors.As(err, &npc):
		return ResultNoProposalChosen
	case errors.Is(err, ErrPeerNotify):
		return ResultPeerNotify
	}
	for _, e := range []error{errShutdown, errDown, errRemoved, errDeleted, errDPD, errPeerSilent, errReplaced,
		errExpired, errRekeyed, errEvicted} {
		if errors.Is(err, e) {
			return ResultAborted
		}
	}
	return ResultOther
}

func (e *Engine) observe(o Outcome) {
	if e.opts.Observer != nil {
		e.opts.Observer.Negotiated(o)
	}
}

func phase1Exchange(aggressive bool) Exchange {
	if aggressive {
		return ExchangeAggressive
	}
	return ExchangeMain
}

// observePhase1 reports the end of sa's phase 1; call it before sa becomes established.
func (e *Engine) observePhase1(sa *ikeSA, err error) {
	o := Outcome{Connection: sa.conn.cfg.Name, Exchange: phase1Exchange(sa.aggressive), Initiator: sa.initiator,
		Result: Classify(err)}
	o.Rekey = err == nil && e.establishedSA(sa.conn) != nil
	e.observe(o)
}

// observeFirstMessage reports a phase 1 that failed (err != nil) on the peer's first message.
func (e *Engine) observeFirstMessage(c *connection, err error) {
	if err == nil {
		return
	}
	e.observe(Outcome{Connection: c.cfg.Name, Exchange: phase1Exchange(c.cfg.IKE.Mode == model.ModeAggressive),
		Result: Classify(err)})
}

// observeQuickFailure reports a quick mode that fails with err, once: only while it is
// still registered with its IKE SA. Call it before qm.fail unregisters it.
func (e *Engine) observeQuickFailure(qm *quickMode, err error) {
	if qm.done || qm.sa.qms[qm.msgID] != qm {
		return
	}
	e.observeQuick(qm.sa, qm.tunnel, qm.initiator, err, false)
}

// observeQuick reports the end of a quick mode for t (nil: no tunnel matched) under sa.
func (e *Engine) observeQuick(sa *ikeSA, t *tunnel, initiator bool, err error, rekey bool) {
	o := Outcome{Connection: sa.conn.cfg.Name, Exchange: ExchangeQuick, Initiator: initiator,
		Result: Classify(err), Rekey: rekey}
	if t != nil {
		o.Tunnel = t.cfg.Name
	}
	e.observe(o)
}

// observeChildDeleted reports the deletion of an installed child SA; tell is deleteChild's.
func (e *Engine) observeChildDeleted(ch *childSA, tell bool) {
	if e.opts.Observer != nil {
		e.opts.Observer.Deleted(Deletion{Connection: ch.Connection, Tunnel: ch.Tunnel, ByPeer: !tell})
	}
}

// observeIKESADeleted reports the deletion of sa if it was established; tell is deleteIKESA's.
func (e *Engine) observeIKESADeleted(sa *ikeSA, tell bool) {
	if e.opts.Observer != nil && sa.state == stateEstablished {
		e.opts.Observer.Deleted(Deletion{Connection: sa.conn.cfg.Name, ByPeer: !tell})
	}
}

// observeReceived reports an IKE message from c's peer.
func (e *Engine) observeReceived(c *connection) {
	if e.opts.Observer != nil {
		e.opts.Observer.Received(c.cfg.Name, e.now())
	}
}

// DPDState is what dead peer detection knows about a connection's peer.
type DPDState string

const (
	DPDOff     DPDState = "off"     // no established IKE SA, DPD not configured or not supported by the peer
	DPDAlive   DPDState = "alive"   // the last R-U-THERE was acknowledged within dpd_delay
	DPDProbing DPDState = "probing" // no acknowledgement for longer than dpd_delay
)

// DPDStates lists every DPDState.
var DPDStates = []DPDState{DPDOff, DPDAlive, DPDProbing}

// Liveness is the state of one configured connection's IKE SA, for monitoring.
type Liveness struct {
	Connection string
	IKESAUp    bool // an established IKE SA exists
	DPD        DPDState
	LastDPDAck time.Time // DPDAlive, DPDProbing: the last acknowledgement (or when DPD started)
}

// Liveness reports every configured connection, sorted by name.
func (e *Engine) Liveness() []Liveness {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Liveness
	for _, c := range e.sortedConns() {
		l := Liveness{Connection: c.cfg.Name, DPD: DPDOff}
		if sa := e.establishedSA(c); sa != nil {
			l.IKESAUp = true
			if sa.dpd.timer != nil {
				l.DPD, l.LastDPDAck = DPDAlive, sa.dpd.lastAck
				if e.now().Sub(sa.dpd.lastAck) > c.cfg.IKE.DPDDelay {
					l.DPD = DPDProbing
				}
			}
		}
		out = append(out, l)
	}
	return out
}
