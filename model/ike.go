package model

import "github.com/espgw/espgw/ike/proposal"

// IsV2 reports whether the connection speaks IKEv2 (RFC 7296); otherwise IKEv1.
func (i IKE) IsV2() bool { return i.Version == 2 }

// FormatProposals is the connection's IKE SA proposals in swanctl syntax, those of its
// version: the form config reads and negotiation errors quote as "ours".
func (i IKE) FormatProposals() string {
	if i.IsV2() {
		return proposal.FormatIKEv2(i.V2Proposals)
	}
	return proposal.FormatIKE(i.Proposals)
}
