package ike

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/espgw/espgw/ike/proposal"
)

// ErrPSKMismatch is wrapped by the errors of a phase 1 that failed because the peers do
// not share the pre-shared key: MM5/MM6 (or AM3/AM2) did not decrypt into a valid message,
// or its HASH did not verify.
var ErrPSKMismatch = errors.New("pre-shared key mismatch")

// ErrTimeout is wrapped when the peer stopped answering an exchange.
var ErrTimeout = errors.New("peer did not answer")

// ErrPeerNotify is wrapped when the peer rejected an exchange with an error notification.
var ErrPeerNotify = errors.New("peer sent error notification")

// ErrIDMismatch is wrapped when the peer's phase-1 identity or quick-mode proxy IDs do not
// match the configuration.
var ErrIDMismatch = errors.New("identity mismatch")

var (
	errShutdown = errors.New("engine shutting down")
	errDown     = errors.New("taken down by request")
	errRemoved  = errors.New("connection removed from configuration")
	errDeleted  = errors.New("deleted by peer")
	errDPD      = errors.New("peer declared dead by DPD")
	// errPeerSilent: no answer to a quick mode, nor anything else, on an ISAKMP SA.
	errPeerSilent = errors.New("peer silent on the ISAKMP SA for a whole quick mode")
	errReplaced   = errors.New("replaced by a new IKE SA (INITIAL-CONTACT)")
	errExpired    = errors.New("lifetime expired")
	errRekeyed    = errors.New("replaced by a newer IKE SA (reauthentication)")
	errEvicted    = errors.New("half-open SA evicted for a newer one from the same peer")
	// errDHRateLimit drops an AM1 or MM3 when the responder's DH budget is spent (dhlimit.go).
	errDHRateLimit = errors.New("responder Diffie-Hellman rate limit reached, message dropped")

	// errReplayedMsgID drops a phase-2 message whose message ID the IKE SA already used.
	errReplayedMsgID = errors.New("message ID already used in this IKE SA (replayed or reflected message)")
)

// ConnError is the last failure recorded for a connection, shown by Status.
type ConnError struct {
	Connection string
	Time       time.Time
	Err        string
	// Ours and Theirs are both sides' proposals in swanctl syntax when no proposal matched
	// and we saw the peer's offer (we were the responder).
	Ours, Theirs string
}

// maxConnErrors bounds the error history kept for Status.
const maxConnErrors = 32

// recordError logs a failed negotiation and keeps it for Status.
func (e *Engine) recordError(sa *ikeSA, err error) {
	e.log.Error("negotiation failed", sa.logArgs("err", err)...)
	e.addError(sa.conn.cfg.Name, err)
}

// addError keeps err for Status, dropping the oldest beyond maxConnErrors: unauthenticated
// packets can cause errors, so the history must not grow with them.
func (e *Engine) addError(conn string, err error) {
	if len(e.errs) == maxConnErrors {
		e.errs = slices.Delete(e.errs, 0, 1)
	}
	ce := ConnError{Connection: conn, Time: e.now(), Err: err.Error()}
	if npc := (*proposal.NoProposalChosenError)(nil); errors.As(err, &npc) {
		ce.Ours, ce.Theirs = npc.Ours, npc.Theirs
	}
	e.errs = append(e.errs, ce)
}

func hexCookie(c [8]byte) string { return fmt.Sprintf("%x", c[:]) }
func hexSPI(spi uint32) string   { return fmt.Sprintf("%08x", spi) }
