package proposal

import (
	"fmt"
	"strings"
)

// kind is the transform type a keyword selects.
type kind uint8

const (
	kindCipher kind = iota + 1
	kindHash
	kindGroup
	kindNoESN
	kindPRF // IKEv2 only: the PRF, which IKEv1 derives from the hash
)

// vocab is the set of keywords a proposal string may use.
type vocab uint8

const (
	vocabIKEv1 vocab = iota // IKEv1 phase 1: no AEAD, no PRF keyword
	vocabESP                // ESP under either IKE version
	vocabIKEv2              // IKEv2 SA: AEAD ciphers and PRF keywords too
)

func (v vocab) String() string {
	return [...]string{"IKE", "ESP", "IKEv2"}[v]
}

// allows reports whether keyword k may appear in a proposal of vocabulary v.
func (v vocab) allows(k keyword) bool {
	switch v {
	case vocabIKEv1:
		return !k.espOnly && k.kind != kindPRF
	case vocabESP:
		return k.kind != kindPRF
	}
	return k.kind != kindNoESN
}

// keyword is one word of the strongSwan proposal syntax.
type keyword struct {
	name    string
	kind    kind
	enc     Encryption
	keyBits int
	hash    Hash
	group   uint16
	espOnly bool
}

// keywords lists every accepted word; the first one for a value is its canonical name.
var keywords = []keyword{
	{name: "3des", kind: kindCipher, enc: Enc3DES},
	{name: "aes128", kind: kindCipher, enc: EncAESCBC, keyBits: 128},
	{name: "aes192", kind: kindCipher, enc: EncAESCBC, keyBits: 192},
	{name: "aes256", kind: kindCipher, enc: EncAESCBC, keyBits: 256},
	{name: "aes", kind: kindCipher, enc: EncAESCBC, keyBits: 128},
	{name: "aes128gcm16", kind: kindCipher, enc: EncAESGCM16, keyBits: 128, espOnly: true},
	{name: "aes192gcm16", kind: kindCipher, enc: EncAESGCM16, keyBits: 192, espOnly: true},
	{name: "aes256gcm16", kind: kindCipher, enc: EncAESGCM16, keyBits: 256, espOnly: true},
	{name: "aes128gcm128", kind: kindCipher, enc: EncAESGCM16, keyBits: 128, espOnly: true},
	{name: "aes192gcm128", kind: kindCipher, enc: EncAESGCM16, keyBits: 192, espOnly: true},
	{name: "aes256gcm128", kind: kindCipher, enc: EncAESGCM16, keyBits: 256, espOnly: true},
	{name: "aes128gcm", kind: kindCipher, enc: EncAESGCM16, keyBits: 128, espOnly: true},
	{name: "aes192gcm", kind: kindCipher, enc: EncAESGCM16, keyBits: 192, espOnly: true},
	{name: "aes256gcm", kind: kindCipher, enc: EncAESGCM16, keyBits: 256, espOnly: true},
	{name: "md5", kind: kindHash, hash: HashMD5},
	{name: "sha1", kind: kindHash, hash: HashSHA1},
	{name: "sha", kind: kindHash, hash: HashSHA1},
	{name: "sha256", kind: kindHash, hash: HashSHA256},
	{name: "sha2_256", kind: kindHash, hash: HashSHA256},
	{name: "sha384", kind: kindHash, hash: HashSHA384},
	{name: "sha2_384", kind: kindHash, hash: HashSHA384},
	{name: "sha512", kind: kindHash, hash: HashSHA512},
	{name: "sha2_512", kind: kindHash, hash: HashSHA512},
	{name: "modp1024", kind: kindGroup, group: 2},
	{name: "modp1536", kind: kindGroup, group: 5},
	{name: "modp2048", kind: kindGroup, group: 14},
	{name: "modp3072", kind: kindGroup, group: 15},
	{name: "modp4096", kind: kindGroup, group: 16},
	{name: "ecp256", kind: kindGroup, group: 19},
	{name: "ecp384", kind: kindGroup, group: 20},
	{name: "noesn", kind: kindNoESN, espOnly: true},
	{name: "prfmd5", kind: kindPRF, hash: HashMD5},
	{name: "prfsha1", kind: kindPRF, hash: HashSHA1},
	{name: "prfsha256", kind: kindPRF, hash: HashSHA256},
	{name: "prfsha384", kind: kindPRF, hash: HashSHA384},
	{name: "prfsha512", kind: kindPRF, hash: HashSHA512},
}

// lookup finds the keyword named word in vocabulary v.
func lookup(word string, v vocab) (keyword, bool) {
	for _, k := range keywords {
		if k.name == word && v.allows(k) {
			return k, true
		}
	}
	return keyword{}, false
}

// vocabulary lists the keywords of kind k (every kind if k is 0) for error messages.
func vocabulary(k kind, v vocab) string {
	var names []string
	for _, kw := range keywords {
		if (k == 0 || kw.kind == k) && v.allows(kw) {
			names = append(names, kw.name)
		}
	}
	return strings.Join(names, ", ")
}

// cipherName is the canonical keyword of a cipher: "3des", "aes256", "aes256gcm16".
func cipherName(e Encryption, keyBits int) string {
	for _, k := range keywords {
		if k.kind == kindCipher && k.enc == e && k.keyBits == keyBits {
			return k.name
		}
	}
	return fmt.Sprintf("%v(%d bits)", e, keyBits)
}

// GroupName is the strongSwan keyword of Diffie-Hellman group id ("modp1024" for 2,
// "ecp256" for 19), for status and log text. A group without a keyword, i.e. one this
// gateway does not support, is "group" and its number, e.g. "group21"; 0 (no PFS) is
// "group0".
func GroupName(g uint16) string {
	for _, k := range keywords {
		if k.kind == kindGroup && k.group == g {
			return k.name
		}
	}
	return fmt.Sprintf("group%d", g)
}

// knownGroup reports whether group g has a keyword, i.e. is one this gateway supports.
func knownGroup(g uint16) bool {
	for _, k := range keywords {
		if k.kind == kindGroup && k.group == g {
			return true
		}
	}
	return false
}
