package daemon

import (
	"fmt"
	"path/filepath"

	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/ike/proposal"
)

// IKEv2File is Wireshark's IKEv2 decryption table (UAT ikev2_decryption_table).
const IKEv2File = "ikev2_decryption_table"

// ikev2Table is the IKEv2 decryption table's entries, read from the file on first use.
type ikev2Table struct {
	loaded bool
	lines  []string
}

// IKEv2SA records an IKEv2 SA's SPIs and SK_e/SK_a keys in ikev2_decryption_table.
func (k *KeyLog) IKEv2SA(x ike.IKEv2Keys) {
	k.mu.Lock()
	if !k.v2.loaded {
		lines, err := readLines(filepath.Join(k.dir, IKEv2File))
		if err != nil {
			k.log.Error("save_keys: cannot read key file", "err", err)
		}
		k.v2.lines, k.v2.loaded = lines, true
	}
	k.mu.Unlock()
	k.add(&k.v2.lines, IKEv2File, ikev2Line(x))
}

// ikev2Line is an ikev2_decryption_table entry: SPIi, SPIr, SK_ei, SK_er (hex), the
// encryption algorithm, SK_ai, SK_ar and the integrity algorithm, named as Wireshark's
// IKEv2 preferences name them. AES-GCM keys include their salt and have no SK_a.
func ikev2Line(x ike.IKEv2Keys) string {
	return fmt.Sprintf(`%x,%x,%x,%x,"%s",%x,%x,"%s"`, x.SPIi[:], x.SPIr[:], x.EI, x.ER,
		wiresharkIKEv2Encryption(x.Proposal), x.AI, x.AR, wiresharkIKEv2Integrity(x.Proposal.Integrity))
}

func wiresharkIKEv2Encryption(p proposal.IKEv2) string {
	switch p.Encryption {
	case proposal.Enc3DES:
		return "3DES [RFC2451]"
	case proposal.EncAESCBC:
		return fmt.Sprintf("AES-CBC-%d [RFC3602]", p.KeyBits)
	case proposal.EncAESGCM16:
		return fmt.Sprintf("AES-GCM-%d with 16 octet ICV [RFC5282]", p.KeyBits)
	}
	return "NULL [RFC2410]"
}

func wiresharkIKEv2Integrity(h proposal.Hash) string {
	switch h {
	case proposal.HashMD5:
		return "HMAC_MD5_96 [RFC2403]"
	case proposal.HashSHA1:
		return "HMAC_SHA1_96 [RFC2404]"
	case proposal.HashSHA256:
		return "HMAC_SHA2_256_128 [RFC4868]"
	case proposal.HashSHA384:
		return "HMAC_SHA2_384_192 [RFC4868]"
	case proposal.HashSHA512:
		return "HMAC_SHA2_512_256 [RFC4868]"
	}
	return "NONE [RFC4306]"
}
