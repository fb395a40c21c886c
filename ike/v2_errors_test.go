package ike

import (
	"errors"
	"strings"
	"testing"

	"github.com/espgw/espgw/ike/ikev2"
)

// TestV2PeerError: the peer's error notifications become errors in the words IKEv1 uses,
// with the sentinel status and doctor classify by, and what we offered.
func TestV2PeerError(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes256gcm16-modp2048", pskA: "k"}, "aes256-sha256-modp2048", "aes256-sha256-modp2048")
	s.up(a, b)
	a.e.mu.Lock()
	defer a.e.mu.Unlock()
	sa := v2SAOf(t, a)
	ts, _ := a.e.lookupTunnels("peer", "")
	tun := ts[0]
	for _, tt := range []struct {
		notify   ikev2.NotifyType
		exchange string
		t        *tunnel
		is       error
		says     string
	}{
		{ikev2.NotifyNoProposalChosen, "IKE_SA_INIT", nil, ErrNoProposalChosen,
			"no proposal chosen: the peer accepted none of our IKE proposals for the IKE_SA_INIT (NO_PROPOSAL_CHOSEN); ours in swanctl syntax: aes256-sha256-prfsha256-modp2048"},
		{ikev2.NotifyNoProposalChosen, "CHILD_SA of t0", tun, ErrNoProposalChosen,
			"no proposal chosen: the peer accepted none of our ESP proposals for the CHILD_SA of t0 (NO_PROPOSAL_CHOSEN); ours in swanctl syntax: aes256gcm16-modp2048"},
		{ikev2.NotifyAuthenticationFailed, "IKE_AUTH", nil, ErrPSKMismatch,
			"pre-shared key mismatch: the peer answered IKE_AUTH with AUTHENTICATION_FAILED: it could not verify our AUTH"},
		{ikev2.NotifyTSUnacceptable, "CHILD_SA of t0", tun, ErrIDMismatch,
			"identity mismatch: the peer answered CHILD_SA of t0 with TS_UNACCEPTABLE: it has no policy for our traffic selectors 10.10.0.1/32 <-> 10.20.0.0/24 (tunnel t0)"},
		{ikev2.NotifyInvalidSyntax, "CREATE_CHILD_SA of t0", tun, ErrPeerNotify,
			"peer sent error notification INVALID_SYNTAX: the peer found our CREATE_CHILD_SA of t0 request malformed or lacking a payload it requires"},
		{ikev2.NotifyInternalAddressFailure, "IKE_AUTH", nil, ErrPeerNotify,
			"peer sent error notification INTERNAL_ADDRESS_FAILURE in IKE_AUTH"},
	} {
		err := a.e.v2PeerError(sa, &ikev2.Notify{NotifyType: tt.notify}, tt.exchange, tt.t)
		if !errors.Is(err, tt.is) || !strings.HasPrefix(err.Error(), tt.says) {
			t.Errorf("%s in %s: %v; want %q, wrapping %q", tt.notify, tt.exchange, err, tt.says, tt.is)
		}
	}
}
