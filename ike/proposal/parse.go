package proposal

import (
	"errors"
	"fmt"
	"strings"
)

// ErrSyntax is wrapped by ParseIKE and ParseESP for every malformed proposal string.
var ErrSyntax = errors.New("proposal: invalid proposal")

// cipher is a parsed cipher keyword.
type cipher struct {
	enc     Encryption
	keyBits int
}

// words is one proposal string split by kind, each in the order written.
type words struct {
	ciphers []cipher
	hashes  []Hash
	prfs    []Hash
	groups  []uint16
}

// ParseIKE parses phase-1 proposals in strongSwan syntax: proposals separated by commas,
// each a dash-separated list of keywords naming at least one cipher, one hash and one
// Diffie-Hellman group, e.g. "aes128-aes256-sha256-modp2048, 3des-sha1-modp1024".
// A proposal naming several algorithms of a kind expands to every combination, ciphers
// varying slowest, in the order written. AES-GCM is refused: IKEv1 phase 1 has no AEAD.
func ParseIKE(s string) ([]IKE, error) {
	var out []IKE
	err := eachProposal(s, func(p string) error {
		w, err := split(p, vocabIKEv1)
		if err != nil {
			return err
		}
		if len(w.ciphers) == 0 || len(w.hashes) == 0 || len(w.groups) == 0 {
			return fmt.Errorf("%w %q: an IKE proposal needs a cipher (%s), a hash (%s) and a group (%s)",
				ErrSyntax, p, vocabulary(kindCipher, vocabIKEv1), vocabulary(kindHash, vocabIKEv1), vocabulary(kindGroup, vocabIKEv1))
		}
		for _, c := range w.ciphers {
			for _, h := range w.hashes {
				for _, g := range w.groups {
					out = append(out, IKE{Encryption: c.enc, KeyBits: c.keyBits, Hash: h, Group: g})
				}
			}
		}
		return nil
	})
	return out, err
}

// ParseESP parses quick-mode ESP proposals in strongSwan syntax, e.g.
// "aes256gcm16-modp2048, aes128-sha1". Each needs a cipher and, unless the cipher is
// AES-GCM, an integrity algorithm; a group asks for PFS. "noesn" is accepted and ignored,
// "esn" refused: IKEv1 cannot negotiate extended sequence numbers.
func ParseESP(s string) ([]ESP, error) {
	var out []ESP
	err := eachProposal(s, func(p string) error {
		w, err := split(p, vocabESP)
		if err != nil {
			return err
		}
		if len(w.ciphers) == 0 {
			return fmt.Errorf("%w %q: an ESP proposal needs a cipher (%s)", ErrSyntax, p, vocabulary(kindCipher, vocabESP))
		}
		aead := w.ciphers[0].enc == EncAESGCM16
		for _, c := range w.ciphers[1:] {
			if (c.enc == EncAESGCM16) != aead {
				return fmt.Errorf("%w %q: mixes AES-GCM with CBC ciphers; write them as separate proposals separated by commas", ErrSyntax, p)
			}
		}
		switch {
		case aead && len(w.hashes) > 0:
			return fmt.Errorf("%w %q: AES-GCM authenticates by itself, want no integrity keyword (%s)", ErrSyntax, p, w.hashes[0])
		case !aead && len(w.hashes) == 0:
			return fmt.Errorf("%w %q: a CBC cipher needs an integrity algorithm (%s)", ErrSyntax, p, vocabulary(kindHash, vocabESP))
		case aead:
			w.hashes = []Hash{HashNone}
		}
		if len(w.groups) == 0 {
			w.groups = []uint16{0} // no PFS
		}
		for _, c := range w.ciphers {
			for _, h := range w.hashes {
				for _, g := range w.groups {
					out = append(out, ESP{Encryption: c.enc, KeyBits: c.keyBits, Integrity: h, Group: g})
				}
			}
		}
		return nil
	})
	return out, err
}

// eachProposal calls parse for every comma-separated proposal of s, lower-cased and trimmed.
func eachProposal(s string, parse func(string) error) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("%w %q: empty, want keywords such as aes256-sha256-modp2048", ErrSyntax, s)
	}
	for p := range strings.SplitSeq(s, ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" {
			return fmt.Errorf("%w list %q: empty proposal between commas", ErrSyntax, s)
		}
		if err := parse(p); err != nil {
			return err
		}
	}
	return nil
}

// split sorts the keywords of one proposal by kind.
func split(p string, v vocab) (words, error) {
	var w words
	for word := range strings.SplitSeq(p, "-") {
		if word == "esn" && v == vocabESP {
			return words{}, fmt.Errorf("%w %q: \"esn\": IKEv1 cannot negotiate extended sequence numbers, want noesn or nothing", ErrSyntax, p)
		}
		k, ok := lookup(word, v)
		if !ok {
			return words{}, fmt.Errorf("%w %q: unknown %v keyword %q, want one of %s", ErrSyntax, p, v, word, vocabulary(0, v))
		}
		switch k.kind {
		case kindCipher:
			w.ciphers = append(w.ciphers, cipher{k.enc, k.keyBits})
		case kindHash:
			w.hashes = append(w.hashes, k.hash)
		case kindGroup:
			w.groups = append(w.groups, k.group)
		case kindPRF:
			w.prfs = append(w.prfs, k.hash)
		}
	}
	return w, nil
}

// String is p in swanctl syntax, e.g. "aes256-sha256-modp2048".
func (p IKE) String() string {
	return cipherName(p.Encryption, p.KeyBits) + "-" + p.Hash.String() + "-" + GroupName(p.Group)
}

// String is p in swanctl syntax: "aes256gcm16-modp2048", "3des-sha1".
func (p ESP) String() string {
	s := cipherName(p.Encryption, p.KeyBits)
	if p.Integrity != HashNone {
		s += "-" + p.Integrity.String()
	}
	if p.Group != 0 {
		s += "-" + GroupName(p.Group)
	}
	return s
}

// FormatIKE joins proposals with ", " for logs; ParseIKE reads it back.
func FormatIKE(ps []IKE) string { return join(ps) }

// FormatESP joins proposals with ", " for logs; ParseESP reads it back.
func FormatESP(ps []ESP) string { return join(ps) }

func join[T fmt.Stringer](ps []T) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
