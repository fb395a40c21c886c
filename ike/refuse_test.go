package ike

import (
	"strings"
	"testing"

	"github.com/espgw/espgw/ike/isakmp"
	"github.com/espgw/espgw/model"
)

// An authenticated QM1 we cannot answer ends one way (refuseQM1): the error is recorded,
// for the tunnel once its proxy IDs matched one, and reported as the quick mode's outcome;
// no SPI stays reserved and no QM2 goes out.
func TestRefusedQM1(t *testing.T) {
	tests := []struct {
		name    string
		payload func(tun *tunnel, sa *ikeSA) []isakmp.Payload
		tunnel  string // in the outcome
		err     string // in the recorded error
	}{
		{
			name: "no SA payload",
			payload: func(*tunnel, *ikeSA) []isakmp.Payload {
				return []isakmp.Payload{&isakmp.Nonce{Data: make([]byte, 16)}}
			},
			err: "lacks an SA payload",
		},
		{
			name: "no nonce",
			payload: func(tun *tunnel, sa *ikeSA) []isakmp.Payload {
				local, remote := tun.proxyIDs()
				return []isakmp.Payload{espOffer(&tun.cfg, 0x1234, sa.encapMode()), proxyID(local), proxyID(remote)}
			},
			tunnel: "t0", err: "tunnel t0: quick mode",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t)
			a, b := s.pair(pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"})
			s.up(a, b)
			rb := observe(b)
			allocated, _, _ := b.k.spiCounts()
			qmSent := len(sentOf(b.bind, isakmp.ExchangeQuickMode))

			a.e.mu.Lock()
			sa := a.e.establishedSA(a.e.conns["peer"])
			tun := a.e.conns["peer"].tunnels["t0"]
			msgID, err := a.e.newMessageID(sa)
			if err != nil {
				t.Fatal(err)
			}
			sa.newQuickMode(tun, msgID, true).sendProtected(tt.payload(tun, sa), nil, false)
			a.e.mu.Unlock()
			for s.deliver() {
			}

			errs := b.e.Status().Errors
			if len(errs) == 0 || !strings.Contains(errs[len(errs)-1].Err, tt.err) {
				t.Errorf("recorded errors %+v, want the last with %q", errs, tt.err)
			}
			if o := (Outcome{Connection: "peer", Tunnel: tt.tunnel, Exchange: ExchangeQuick, Result: ResultOther}); !rb.has(o) {
				t.Errorf("no outcome %+v in %v", o, rb)
			}
			if got, _, _ := b.k.spiCounts(); got != allocated {
				t.Errorf("%d SPIs allocated for the refused QM1, want 0", got-allocated)
			}
			if got := len(sentOf(b.bind, isakmp.ExchangeQuickMode)); got != qmSent {
				t.Errorf("%d QM2s sent, want 0", got-qmSent)
			}
		})
	}
}
