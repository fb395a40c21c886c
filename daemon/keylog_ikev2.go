package daemon

import (
	"path/filepath"

	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/ike/keymat"
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

// ikev2Line is x's ikev2_decryption_table entry (IKEv2Line in keylog.go).
func ikev2Line(x ike.IKEv2Keys) string {
	return IKEv2Line(x.SPIi, x.SPIr, x.Proposal, keymat.IKESAKeys{EI: x.EI, ER: x.ER, AI: x.AI, AR: x.AR})
}
