package proposal

import (
	"fmt"
	"slices"
	"strings"

	"github.com/espgw/espgw/ike/ikev2"
)

// IKEv2 is one IKEv2 SA algorithm set: a cipher, an integrity algorithm (HashNone with
// AES-GCM, which authenticates by itself), a PRF and a Diffie-Hellman group.
type IKEv2 struct {
	Encryption Encryption
	KeyBits    int // 0 for 3DES
	Integrity  Hash
	PRF        Hash
	Group      uint16
}

// ParseIKEv2 parses IKEv2 SA proposals in strongSwan syntax, e.g.
// "aes256-sha256-modp2048, aes128gcm16-prfsha256-ecp256". Each needs a cipher, a group and,
// unless the cipher is AES-GCM, an integrity algorithm. Without a prf keyword a CBC proposal
// uses the PRF of each integrity algorithm's hash, as strongSwan does; AES-GCM has no
// integrity algorithm to take it from, so it needs one (prfsha256, ...). Several algorithms
// of a kind expand to every combination in the order written.
func ParseIKEv2(s string) ([]IKEv2, error) {
	var out []IKEv2
	err := eachProposal(s, func(p string) error {
		w, err := split(p, vocabIKEv2)
		if err != nil {
			return err
		}
		if len(w.ciphers) == 0 || len(w.groups) == 0 {
			return fmt.Errorf("%w %q: an IKEv2 proposal needs a cipher (%s) and a group (%s)",
				ErrSyntax, p, vocabulary(kindCipher, vocabIKEv2), vocabulary(kindGroup, vocabIKEv2))
		}
		aead := w.ciphers[0].enc == EncAESGCM16
		if slices.ContainsFunc(w.ciphers, func(c cipher) bool { return (c.enc == EncAESGCM16) != aead }) {
			return fmt.Errorf("%w %q: mixes AES-GCM with CBC ciphers; write them as separate proposals separated by commas", ErrSyntax, p)
		}
		switch {
		case aead && len(w.hashes) > 0:
			return fmt.Errorf("%w %q: AES-GCM authenticates by itself, want no integrity keyword (%s) but a prf keyword", ErrSyntax, p, w.hashes[0])
		case aead && len(w.prfs) == 0:
			return fmt.Errorf("%w %q: AES-GCM needs a PRF (%s)", ErrSyntax, p, vocabulary(kindPRF, vocabIKEv2))
		case !aead && len(w.hashes) == 0:
			return fmt.Errorf("%w %q: a CBC cipher needs an integrity algorithm (%s)", ErrSyntax, p, vocabulary(kindHash, vocabIKEv2))
		case aead:
			w.hashes = []Hash{HashNone}
		}
		for _, c := range w.ciphers {
			for _, h := range w.hashes {
				prfs := w.prfs
				if len(prfs) == 0 {
					prfs = []Hash{h}
				}
				for _, prf := range prfs {
					for _, g := range w.groups {
						out = append(out, IKEv2{Encryption: c.enc, KeyBits: c.keyBits, Integrity: h, PRF: prf, Group: g})
					}
				}
			}
		}
		return nil
	})
	return out, err
}

// String is p in swanctl syntax, e.g. "aes256-sha256-prfsha256-modp2048".
func (p IKEv2) String() string {
	s := cipherName(p.Encryption, p.KeyBits)
	if p.Integrity != HashNone {
		s += "-" + p.Integrity.String()
	}
	return s + "-prf" + p.PRF.String() + "-" + GroupName(p.Group)
}

// KeyLen is the length of SK_ei and SK_er: the cipher key, plus the 4-byte salt for AES-GCM
// (RFC 5282 section 7.1).
func (p IKEv2) KeyLen() int {
	if p.Encryption == EncAESGCM16 {
		return p.KeyBits/8 + gcmSaltLen
	}
	return p.Encryption.keyLen(p.KeyBits)
}

// IKEv2 transform registries (IANA "IKEv2 Parameters", RFC 7296 section 3.3.2).
var (
	v2Encryptions = mapping[Encryption]{
		{ikev2.Encr3DES, Enc3DES, "ENCR_3DES"},
		{ikev2.EncrAESCBC, EncAESCBC, "ENCR_AES_CBC"},
		{ikev2.EncrAESGCM16, EncAESGCM16, "ENCR_AES_GCM_16"},
	}
	v2Integrity = mapping[Hash]{
		{ikev2.IntegMD5_96, HashMD5, "AUTH_HMAC_MD5_96"},
		{ikev2.IntegSHA1_96, HashSHA1, "AUTH_HMAC_SHA1_96"},
		{ikev2.IntegSHA256128, HashSHA256, "AUTH_HMAC_SHA2_256_128"},
		{ikev2.IntegSHA384192, HashSHA384, "AUTH_HMAC_SHA2_384_192"},
		{ikev2.IntegSHA512256, HashSHA512, "AUTH_HMAC_SHA2_512_256"},
	}
	v2PRFs = mapping[Hash]{
		{ikev2.PRFHMACMD5, HashMD5, "PRF_HMAC_MD5"},
		{ikev2.PRFHMACSHA1, HashSHA1, "PRF_HMAC_SHA1"},
		{ikev2.PRFHMACSHA256, HashSHA256, "PRF_HMAC_SHA2_256"},
		{ikev2.PRFHMACSHA384, HashSHA384, "PRF_HMAC_SHA2_384"},
		{ikev2.PRFHMACSHA512, HashSHA512, "PRF_HMAC_SHA2_512"},
	}
)

func encrTransform(e Encryption, keyBits int) ikev2.Transform {
	t := ikev2.Transform{Type: ikev2.TransformENCR, ID: v2Encryptions.toWire(e)}
	if e != Enc3DES {
		t.Attributes = []ikev2.Attribute{{Type: ikev2.AttributeKeyLength, TV: true, Value: uint16(keyBits)}}
	}
	return t
}

// transforms lists p's transforms in the order RFC 7296 section 3.3.2's example uses.
func (p IKEv2) transforms() []ikev2.Transform {
	ts := []ikev2.Transform{encrTransform(p.Encryption, p.KeyBits)}
	if p.Integrity != HashNone {
		ts = append(ts, ikev2.Transform{Type: ikev2.TransformINTEG, ID: v2Integrity.toWire(p.Integrity)})
	}
	return append(ts, ikev2.Transform{Type: ikev2.TransformPRF, ID: v2PRFs.toWire(p.PRF)},
		ikev2.Transform{Type: ikev2.TransformDH, ID: p.Group})
}

// Proposal is p as proposal number n of an IKE SA (spi: empty in IKE_SA_INIT, the new
// initiator SPI when rekeying).
func (p IKEv2) Proposal(n uint8, spi []byte) ikev2.Proposal {
	return ikev2.Proposal{Number: n, Protocol: ikev2.ProtocolIKE, SPI: spi, Transforms: p.transforms()}
}

// v2Transforms lists an ESP proposal's transforms under IKEv2; withDH adds the PFS group (not
// in IKE_AUTH, whose child SA uses the IKE SA's keys).
func (p ESP) v2Transforms(withDH bool) []ikev2.Transform {
	ts := []ikev2.Transform{encrTransform(p.Encryption, p.KeyBits)}
	if p.Integrity != HashNone {
		ts = append(ts, ikev2.Transform{Type: ikev2.TransformINTEG, ID: v2Integrity.toWire(p.Integrity)})
	}
	if withDH && p.Group != 0 {
		ts = append(ts, ikev2.Transform{Type: ikev2.TransformDH, ID: p.Group})
	}
	return append(ts, ikev2.Transform{Type: ikev2.TransformESN, ID: ikev2.ESNNone})
}

// IKEv2Proposal is p as proposal number n of a child SA with inbound SPI spi. withDH is false
// in IKE_AUTH: its child SA has no KE payload, so the PFS group is left out (section 1.2).
func (p ESP) IKEv2Proposal(n uint8, spi []byte, withDH bool) ikev2.Proposal {
	return ikev2.Proposal{Number: n, Protocol: ikev2.ProtocolESP, SPI: spi, Transforms: p.v2Transforms(withDH)}
}

// SelectIKEv2 picks, as a responder, the first configured proposal that the first possible
// offered proposal (in the peer's order) contains, and returns the proposal to answer with:
// the offered number and SPI with exactly the chosen transforms (section 2.7). On mismatch
// the error is a *NoProposalChosenError.
func SelectIKEv2(configured []IKEv2, offered []ikev2.Proposal) (ikev2.Proposal, IKEv2, error) {
	theirs := make([]string, 0, len(offered))
	for _, o := range offered {
		if o.Protocol == ikev2.ProtocolIKE {
			for _, c := range configured {
				if ts := c.transforms(); containsAll(o.Transforms, ts) {
					return ikev2.Proposal{Number: o.Number, Protocol: o.Protocol, SPI: o.SPI, Transforms: ts}, c, nil
				}
			}
		}
		theirs = append(theirs, describeV2(o))
	}
	return ikev2.Proposal{}, IKEv2{}, &NoProposalChosenError{Ours: join(configured), Theirs: strings.Join(theirs, ", ")}
}

// SelectESPv2 picks a child SA's proposal like SelectIKEv2. withDH is false in IKE_AUTH,
// where the PFS groups of both sides are ignored.
func SelectESPv2(configured []ESP, offered []ikev2.Proposal, withDH bool) (ikev2.Proposal, ESP, error) {
	theirs := make([]string, 0, len(offered))
	for _, o := range offered {
		if o.Protocol == ikev2.ProtocolESP {
			for _, c := range configured {
				if ts := c.v2Transforms(withDH); containsAll(o.Transforms, ts) {
					if !withDH {
						c.Group = 0
					}
					return ikev2.Proposal{Number: o.Number, Protocol: o.Protocol, SPI: o.SPI, Transforms: ts}, c, nil
				}
			}
		}
		theirs = append(theirs, describeV2(o))
	}
	return ikev2.Proposal{}, ESP{}, &NoProposalChosenError{Ours: FormatESP(configured), Theirs: strings.Join(theirs, ", ")}
}

// containsAll reports whether offered holds every transform of want (type, ID, key length).
func containsAll(offered, want []ikev2.Transform) bool {
	for _, w := range want {
		if !slices.ContainsFunc(offered, func(o ikev2.Transform) bool {
			return o.Type == w.Type && o.ID == w.ID && o.KeyLength() == w.KeyLength()
		}) {
			return false
		}
	}
	return true
}

// describeV2 writes an offered proposal in swanctl syntax: its algorithms of each type joined
// by dashes, unknown ones as TYPE:ID, e.g. "aes256-aes128-sha256-prfsha256-modp2048-ecp256".
func describeV2(p ikev2.Proposal) string {
	var words []string
	for _, typ := range []ikev2.TransformType{ikev2.TransformENCR, ikev2.TransformINTEG, ikev2.TransformPRF, ikev2.TransformDH} {
		for _, t := range p.Transforms {
			if t.Type == typ {
				words = append(words, transformName(t))
			}
		}
	}
	s := strings.Join(words, "-")
	if p.Protocol != ikev2.ProtocolIKE {
		s = strings.ToLower(p.Protocol.String()) + ":" + s
	}
	return s
}

func transformName(t ikev2.Transform) string {
	switch t.Type {
	case ikev2.TransformENCR:
		if e, err := v2Encryptions.fromWire("", uint64(t.ID)); err == nil {
			return cipherName(e, t.KeyLength())
		}
	case ikev2.TransformINTEG:
		if h, err := v2Integrity.fromWire("", uint64(t.ID)); err == nil {
			return h.String()
		}
	case ikev2.TransformPRF:
		if h, err := v2PRFs.fromWire("", uint64(t.ID)); err == nil {
			return "prf" + h.String()
		}
	case ikev2.TransformDH:
		return GroupName(t.ID)
	}
	return fmt.Sprintf("%v:%d", t.Type, t.ID)
}

// FormatIKEv2 formats IKEv2 proposals in swanctl syntax, comma-separated.
func FormatIKEv2(ps []IKEv2) string { return join(ps) }
