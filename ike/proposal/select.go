package proposal

import (
	"fmt"
	"slices"
	"strings"

	"github.com/espgw/espgw/ike/isakmp"
)

// NoProposalChosenError reports that no offered transform matched the configuration.
// Both sides are in swanctl syntax so the message can be compared with the peer's config.
type NoProposalChosenError struct {
	Ours   string // what we accept, e.g. "aes256-sha256-modp2048"
	Theirs string // what the peer offered, in its order; unparseable transforms as unknown(...)
}

func (e *NoProposalChosenError) Error() string {
	return "no proposal chosen: we accept " + orNothing(e.Ours) + ", peer offered " + orNothing(e.Theirs)
}

func orNothing(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// SelectIKE picks, as a responder, the first offered phase-1 transform (in the peer's
// order of preference) that equals one of the configured proposals. On mismatch the
// error is a *NoProposalChosenError.
func SelectIKE(configured []IKE, offered []isakmp.Transform) (isakmp.Transform, IKE, error) {
	theirs := make([]string, 0, len(offered))
	for _, t := range offered {
		p, _, err := parseIKETransform(t)
		if err != nil {
			theirs = append(theirs, unknown(t, err))
			continue
		}
		if slices.Contains(configured, p) {
			return t, p, nil
		}
		theirs = append(theirs, p.String())
	}
	return isakmp.Transform{}, IKE{}, &NoProposalChosenError{Ours: FormatIKE(configured), Theirs: strings.Join(theirs, ", ")}
}

// SelectESP picks, as a responder, the first offered ESP transform (in the peer's order
// of preference) whose algorithms and PFS group equal one of the configured proposals.
// Lifetimes and encapsulation mode are returned for the caller to check. On mismatch
// the error is a *NoProposalChosenError.
func SelectESP(configured []ESP, offered []isakmp.Transform) (isakmp.Transform, ESPOffer, error) {
	theirs := make([]string, 0, len(offered))
	for _, t := range offered {
		o, err := parseESPTransform(t)
		if err != nil {
			theirs = append(theirs, unknown(t, err))
			continue
		}
		if slices.Contains(configured, o.ESP) {
			return t, o, nil
		}
		theirs = append(theirs, o.ESP.String())
	}
	return isakmp.Transform{}, ESPOffer{}, &NoProposalChosenError{Ours: FormatESP(configured), Theirs: strings.Join(theirs, ", ")}
}

func unknown(t isakmp.Transform, err error) string {
	return fmt.Sprintf("unknown(transform %d: %v)", t.Number, err)
}
