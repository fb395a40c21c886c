package ike

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/espgw/espgw/ike/dh"
)

// Diffie-Hellman off the engine lock. One exponentiation takes up to milliseconds (modp2048 0.4 ms,
// modp4096 1.8, more on a loaded machine) and a negotiation needs two per side, with PFS
// four: 1,000 tunnels are thousands. Under e.mu every timer, API call and packet of every
// other SA would wait for them, DPD acknowledgements included. So handlers hand the work to
// offLock and return; it runs without the lock, at most dhWorkers at once, and the handler's
// continuation runs with the lock held again. The continuation must check that the state
// it continues is still current (the SA may have been deleted, the quick mode failed, the
// engine shut down meanwhile) and destroy the results otherwise. Handlers ignore the peer's
// messages for an exchange while its DH is out (dhBusy): the peer retransmits.
// Responder DH stays rate-limited (dhlimit.go) before it is handed out.

// offLock runs compute without the engine lock, then resume with it.
func (e *Engine) offLock(compute, resume func()) {
	e.work.Add(1)
	go func() {
		defer e.work.Done()
		e.dhWorkers <- struct{}{}
		compute()
		<-e.dhWorkers
		e.mu.Lock()
		defer e.mu.Unlock()
		resume()
	}()
}

// phase1DH runs job for sa off the lock. If sa is then still registered and in the state
// it was in, it takes the job's key (sa.dhKey) and next continues the exchange with the
// shared secret, if any; an error from next or the job ends the phase 1.
func (e *Engine) phase1DH(sa *ikeSA, job *dhJob, next func(shared []byte) error) {
	state := sa.state
	sa.dhBusy = true
	job.rand = e.opts.Rand
	e.offLock(job.run, func() {
		sa.dhBusy = false
		defer job.discard()
		if sa.state != state || e.ikeSAs[sa.icookie] != sa {
			return
		}
		err := job.err
		if err == nil {
			sa.dhKey, job.key = job.key, nil
			err = next(job.shared)
		}
		if err != nil {
			if f := (*fatalError)(nil); errors.As(err, &f) {
				err = f.err
			}
			e.failPhase1(sa, err)
		}
	})
}

// quickDH runs job for qm off the lock; if qm is then still under way, next continues it
// (taking the job's key if it keeps it). An error from the job or next fails qm.
func (e *Engine) quickDH(qm *quickMode, job *dhJob, next func(*dhJob) error) {
	qm.dhBusy = true
	job.rand = e.opts.Rand
	e.offLock(job.run, func() {
		qm.dhBusy = false
		defer job.discard()
		if qm.sa.qms[qm.msgID] != qm || qm.done {
			return
		}
		err := job.err
		if err == nil {
			err = next(job)
		} else {
			err = fmt.Errorf("quick mode %08x Diffie-Hellman: %w", qm.msgID, err)
		}
		if err != nil {
			qm.fail(err)
		}
	})
}

// dhJob is the DH work of one message: our key pair for group unless given, and with the
// peer's public value the shared secret. The job owns key until its continuation takes it.
type dhJob struct {
	group  uint16
	rand   io.Reader
	key    dh.PrivateKey
	peer   []byte
	shared []byte
	err    error
}

func (j *dhJob) run() {
	if j.key == nil {
		g, err := dh.ByID(j.group)
		if err != nil {
			j.err = err
			return
		}
		if j.key, j.err = g.GenerateKey(j.rand); j.err != nil {
			return
		}
	}
	if j.peer != nil {
		j.shared, j.err = j.key.SharedSecret(j.peer)
	}
}

// discard destroys the job's key and shared secret, for a continuation that is no longer
// current or failed.
func (j *dhJob) discard() {
	clear(j.shared)
	dropKey(&j.key)
}

// lockedReader serialises reads of a random source the engine's DH workers share with it
// (crypto/rand is safe for that, a test's seeded generator is not).
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}
