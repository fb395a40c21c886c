package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/ike/proposal"
)

// Wireshark UAT file names, as in a Wireshark profile directory: save_keys pointed at
// ~/.config/wireshark feeds Wireshark directly.
const (
	ESPSAFile = "esp_sa"
	IKEv1File = "ikev1_decryption_table"
)

// maxKeyLines bounds each file; the oldest entries go first.
const maxKeyLines = 2048

// KeyLog implements ike.KeyLogger for save_keys: it keeps Wireshark's ESP SA table and
// IKEv1 decryption table current in a directory, so that captures can be decrypted.
//
// Entries are never removed when SAs are deleted, since captures need old keys too; only
// the oldest go once a file holds maxKeyLines. Entries already in the files when KeyLog
// starts are kept. Each file is replaced atomically and is readable by its owner only.
// Methods are safe for concurrent use.
type KeyLog struct {
	dir string
	log *slog.Logger

	mu  sync.Mutex
	esp []string
	ike []string
	v2  ikev2Table // keylog_ikev2.go
}

var _ ike.KeyLogger = (*KeyLog)(nil)

// NewKeyLog creates dir (0700) if needed, loads the entries already there, and warns
// loudly that keys are being written.
func NewKeyLog(dir string, log *slog.Logger) (*KeyLog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("save_keys: %w", err)
	}
	k := &KeyLog{dir: dir, log: log}
	var err error
	if k.esp, err = readLines(filepath.Join(dir, ESPSAFile)); err != nil {
		return nil, err
	}
	if k.ike, err = readLines(filepath.Join(dir, IKEv1File)); err != nil {
		return nil, err
	}
	log.Warn("save_keys is on: ESP and IKE keys are written to "+dir+"; debug only, anyone reading them can decrypt the traffic",
		"esp_sa", filepath.Join(dir, ESPSAFile), "ikev1", filepath.Join(dir, IKEv1File))
	return k, nil
}

// IKESA records the phase-1 encryption key of the IKE SA with that initiator cookie.
func (k *KeyLog) IKESA(initiatorCookie [8]byte, encKey []byte) {
	k.add(&k.ike, IKEv1File, IKEv1Line(initiatorCookie, encKey))
}

// ChildSA records both ESP SAs of sa.
func (k *KeyLog) ChildSA(sa *ike.ChildSA) {
	in, out := ESPSALines(sa)
	k.add(&k.esp, ESPSAFile, in, out)
}

func (k *KeyLog) add(table *[]string, name string, lines ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	changed := false
	for _, l := range lines {
		if !slices.Contains(*table, l) {
			*table = append(*table, l)
			changed = true
		}
	}
	if !changed {
		return
	}
	if n := len(*table) - maxKeyLines; n > 0 {
		*table = slices.Delete(*table, 0, n)
	}
	if err := writeAtomic(filepath.Join(k.dir, name), *table); err != nil {
		k.log.Error("save_keys: cannot write key file", "err", err)
	}
}

// IKEv1Line is an ikev1_decryption_table entry: the initiator cookie and the phase-1
// encryption key, both hex, unquoted.
func IKEv1Line(initiatorCookie [8]byte, encKey []byte) string {
	return fmt.Sprintf("%x,%x", initiatorCookie[:], encKey)
}

// ESPSALines are the esp_sa entries of the inbound and the outbound SA of sa.
func ESPSALines(sa *ike.ChildSA) (in, out string) {
	in = espSALine(sa.Remote, sa.Local, sa.SPIIn, sa.Proposal, sa.EncKeyIn, sa.IntegKeyIn)
	out = espSALine(sa.Local, sa.Remote, sa.SPIOut, sa.Proposal, sa.EncKeyOut, sa.IntegKeyOut)
	return in, out
}

func espSALine(src, dst netip.Addr, spi uint32, p proposal.ESP, encKey, integKey []byte) string {
	auth, authKey := wiresharkIntegrity(p.Integrity), ""
	if p.Integrity != proposal.HashNone {
		authKey = fmt.Sprintf("0x%x", integKey)
	}
	return fmt.Sprintf(`"IPv4","%v","%v","0x%08x","%s","0x%x","%s","%s"`,
		src, dst, spi, wiresharkEncryption(p.Encryption), encKey, auth, authKey)
}

// wiresharkEncryption names e as Wireshark's ESP preferences do; AES key sizes follow
// from the key length.
func wiresharkEncryption(e proposal.Encryption) string {
	switch e {
	case proposal.Enc3DES:
		return "TripleDES-CBC [RFC2451]"
	case proposal.EncAESCBC:
		return "AES-CBC [RFC3602]"
	case proposal.EncAESGCM16:
		return "AES-GCM with 16 octet ICV [RFC4106]"
	}
	return "NULL"
}

func wiresharkIntegrity(h proposal.Hash) string {
	switch h {
	case proposal.HashMD5:
		return "HMAC-MD5-96 [RFC2403]"
	case proposal.HashSHA1:
		return "HMAC-SHA-1-96 [RFC2404]"
	case proposal.HashSHA256:
		return "HMAC-SHA-256-128 [RFC4868]"
	case proposal.HashSHA384:
		return "HMAC-SHA-384-192 [RFC4868]"
	case proposal.HashSHA512:
		return "HMAC-SHA-512-256 [RFC4868]"
	}
	return "NULL"
}

// readLines returns the non-empty lines of a key file; a missing file has none.
func readLines(name string) ([]string, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("save_keys: %w", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("save_keys: read %s: %w", name, err)
	}
	return lines[max(0, len(lines)-maxKeyLines):], nil
}

// writeAtomic replaces name with lines through a temporary file (which CreateTemp makes
// 0600) and a rename, so that a reader never sees a partial table.
func writeAtomic(name string, lines []string) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	w := bufio.NewWriter(tmp)
	for _, l := range lines {
		w.WriteString(l)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
