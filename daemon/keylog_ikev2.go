package daemon

import (
	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/ike/keymat"
)

// IKEv2File is Wireshark's IKEv2 decryption table (UAT ikev2_decryption_table).
const IKEv2File = "ikev2_decryption_table"

// IKEv2SA records an IKEv2 SA's SPIs and SK_e/SK_a keys in ikev2_decryption_table.
func (k *KeyLog) IKEv2SA(x ike.IKEv2Keys) {
	k.add(&k.ikev2, ikev2Line(x))
}

// ikev2Line is x's ikev2_decryption_table entry (IKEv2Line in keylog.go).
func ikev2Line(x ike.IKEv2Keys) string {
	return IKEv2Line(x.SPIi, x.SPIr, x.Proposal, keymat.IKESAKeys{EI: x.EI, ER: x.ER, AI: x.AI, AR: x.AR})
}
