package ike

import (
	"time"

	"github.com/espgw/espgw/model"
)

// Retries of start: always tunnels. A tunnel that should be up and whose negotiation failed
// (its quick mode, or the phase 1 it waited for) tries again after a pause that doubles with
// each failure in a row, from retryBase to retryCap, jittered, so a partner that is down or
// refuses us sees a bounded trickle, and 200 tunnels that failed together do not come back
// together. Installing a child SA for the tunnel resets it. On-demand and manually started
// tunnels wait for their next packet or command.

// retryBase and retryCap are the first and the longest pause, in first-retransmission
// intervals (10 s and 5 min by default): a partner that comes up late is met within
// about the first pause.
const (
	retryBase = 10
	retryCap  = 300
)

// TunnelRetry is a start: always tunnel waiting to negotiate again after failures.
type TunnelRetry struct {
	Connection, Tunnel string
	Failures           int       // negotiations failed in a row
	At                 time.Time // when the next one starts
	Err                string    // the last failure
}

// retryTunnel schedules t's next negotiation after its failure with err, unless t is not
// start: always, was taken down or removed, or already has one scheduled.
func (e *Engine) retryTunnel(t *tunnel, err error) {
	if e.closed || t.cfg.Start != model.StartAlways || t.manualDown || t.removed || t.retry != nil {
		return
	}
	initial := e.opts.Retransmit.Initial
	pause := e.jitter(min(retryBase*initial<<min(t.failures, 8), retryCap*initial))
	t.failures++
	t.retryAt, t.lastErr = e.now().Add(pause), err.Error()
	e.log.Info("tunnel negotiation failed, will retry", "conn", t.conn.cfg.Name, "tunnel", t.cfg.Name,
		"in", pause.Round(time.Millisecond), "failures", t.failures, "err", err)
	t.retry = e.afterFunc(pause, func() {
		t.retry = nil
		if t.removed || t.manualDown || t.cfg.Start != model.StartAlways || t.qm != nil {
			return
		}
		if t.child == nil || t.child.rekeying {
			e.startTunnel(t, nil)
		}
	})
}

// retryPhase1 schedules the retries of c's start: always tunnels that are down after its
// phase 1 failed with err.
func (e *Engine) retryPhase1(c *connection, err error) {
	for _, t := range c.sortedTunnels() {
		if t.child == nil && t.qm == nil {
			e.retryTunnel(t, err)
		}
	}
}

// stopRetry forgets t's scheduled retry and, if succeeded, its failures.
func (t *tunnel) stopRetry(succeeded bool) {
	if t.retry != nil {
		t.retry.Stop()
		t.retry = nil
	}
	if succeeded {
		t.failures, t.lastErr = 0, ""
	}
}

// retrying lists the tunnels with a retry scheduled, for Status.
func (e *Engine) retrying() []TunnelRetry {
	var out []TunnelRetry
	for _, c := range e.sortedConns() {
		for _, t := range c.sortedTunnels() {
			if t.retry != nil {
				out = append(out, TunnelRetry{Connection: c.cfg.Name, Tunnel: t.cfg.Name, Failures: t.failures,
					At: t.retryAt, Err: t.lastErr})
			}
		}
	}
	return out
}
