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
	"github.com/espgw/espgw/ike/keymat"
	"github.com/espgw/espgw/ike/proposal"
)

// Wireshark UAT file names, as in a Wireshark profile directory: save_keys pointed at
// ~/.config/wireshark feeds Wireshark directly.
const (
	ESPSAFile = "esp_sa"
	IKEv1File = "ikev1_decryption_table"
)

// Each file holds the newest maxKeyLines entries and up to keySlack more: new entries are
// appended, and the oldest dropped in one rewrite once the slack is used up, so that writing
// n entries costs O(n) and not a rewrite of the whole table per SA.
const (
	maxKeyLines = 2048
	keySlack    = maxKeyLines / 4
)

// KeyLog implements ike.KeyLogger for save_keys: it keeps Wireshark's ESP SA table and
// IKEv1 and IKEv2 decryption tables current in a directory, so that captures can be decrypted.
//
// Entries are never removed when SAs are deleted, since captures need old keys too; only
// the oldest go once a file is full. Entries already in the files when KeyLog starts are
// kept. A file is rewritten (atomically, readable by its owner only) at its first write and
// when its oldest entries go; in between, each new entry is appended whole in one write, so
// a reader always sees complete lines. Appends are not synced (a crash loses at most the
// newest keys of a debugging aid; a disk flush per SA would slow every negotiation);
// rewrites are, before the rename, so a crash never leaves an empty table in place of a
// full one. Methods are safe for concurrent use.
type KeyLog struct {
	dir string
	log *slog.Logger

	mu                sync.Mutex
	esp, ikev1, ikev2 keyTable
}

var _ ike.KeyLogger = (*KeyLog)(nil)

// keyTable is one key file's entries, oldest first.
type keyTable struct {
	name  string // the file's name in the KeyLog's directory
	lines []string
	have  map[string]bool // the entries of lines
	// written is set once the file holds exactly lines, by our rewrite: appends may follow.
	written bool
}

// NewKeyLog creates dir (0700) if needed, loads the entries already there, and warns
// loudly that keys are being written.
func NewKeyLog(dir string, log *slog.Logger) (*KeyLog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("save_keys: %w", err)
	}
	k := &KeyLog{dir: dir, log: log,
		esp: keyTable{name: ESPSAFile}, ikev1: keyTable{name: IKEv1File}, ikev2: keyTable{name: IKEv2File}}
	for _, t := range []*keyTable{&k.esp, &k.ikev1, &k.ikev2} {
		lines, err := readLines(filepath.Join(dir, t.name))
		if err != nil {
			return nil, err
		}
		t.have = make(map[string]bool, len(lines))
		t.push(lines...)
	}
	log.Warn("save_keys is on: ESP and IKE keys are written to "+dir+"; debug only, anyone reading them can decrypt the traffic",
		"esp_sa", filepath.Join(dir, ESPSAFile), "ikev1", filepath.Join(dir, IKEv1File))
	return k, nil
}

// IKESA records the phase-1 encryption key of the IKE SA with that initiator cookie.
func (k *KeyLog) IKESA(initiatorCookie [8]byte, encKey []byte) {
	k.add(&k.ikev1, IKEv1Line(initiatorCookie, encKey))
}

// ChildSA records both ESP SAs of sa.
func (k *KeyLog) ChildSA(sa *ike.ChildSA) {
	in, out := ESPSALines(sa)
	k.add(&k.esp, in, out)
}

// add records lines in t and its file: appended if that keeps the file within bounds,
// else (or if the append fails) by rewriting the file with the newest maxKeyLines entries.
func (k *KeyLog) add(t *keyTable, lines ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	fresh := t.push(lines...)
	if len(fresh) == 0 {
		return
	}
	name := filepath.Join(k.dir, t.name)
	if t.written && len(t.lines) <= maxKeyLines+keySlack && appendLines(name, fresh) == nil {
		return
	}
	t.trim()
	err := writeAtomic(name, t.lines)
	t.written = err == nil
	if err != nil {
		k.log.Error("save_keys: cannot write key file", "err", err)
	}
}

// push adds the lines t does not have yet and returns them.
func (t *keyTable) push(lines ...string) []string {
	var fresh []string
	for _, l := range lines {
		if !t.have[l] {
			t.have[l] = true
			t.lines = append(t.lines, l)
			fresh = append(fresh, l)
		}
	}
	return fresh
}

// trim drops t's oldest entries beyond maxKeyLines.
func (t *keyTable) trim() {
	n := len(t.lines) - maxKeyLines
	if n <= 0 {
		return
	}
	for _, l := range t.lines[:n] {
		delete(t.have, l)
	}
	t.lines = slices.Delete(t.lines, 0, n)
}

// IKEv1Line is an ikev1_decryption_table entry: the initiator cookie and the phase-1
// encryption key, both hex, unquoted.
func IKEv1Line(initiatorCookie [8]byte, encKey []byte) string {
	return fmt.Sprintf("%x,%x", initiatorCookie[:], encKey)
}

// IKEv2Line is an ikev2_decryption_table entry for the IKE SA with those SPIs: both SPIs,
// SK_ei, SK_er (hex), the cipher as Wireshark names it, SK_ai, SK_ar (hex, empty with
// AES-GCM) and the integrity algorithm; algorithm names in quotes.
func IKEv2Line(spiI, spiR [8]byte, p proposal.IKEv2, k keymat.IKESAKeys) string {
	return fmt.Sprintf(`%x,%x,%x,%x,"%s",%x,%x,"%s"`, spiI[:], spiR[:], k.EI, k.ER,
		wiresharkIKEv2Encryption(p), k.AI, k.AR, wiresharkIKEv2Integrity(p.Integrity))
}

// wiresharkIKEv2Encryption names p's cipher as Wireshark's IKEv2 decryption table does: AES
// with its key size, AES-GCM with its 16-octet ICV.
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

// wiresharkIKEv2Integrity names h as Wireshark's IKEv2 decryption table does; AES-GCM has
// no integrity algorithm (HashNone).
func wiresharkIKEv2Integrity(h proposal.Hash) string {
	if n, ok := wiresharkIntegrityNames[h]; ok {
		return n.ikev2
	}
	return "NONE [RFC4306]"
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

// wiresharkIntegrity names h as Wireshark's ESP preferences do.
func wiresharkIntegrity(h proposal.Hash) string {
	if n, ok := wiresharkIntegrityNames[h]; ok {
		return n.esp
	}
	return "NULL"
}

// wiresharkIntegrityNames are the integrity algorithms as Wireshark's ESP SA table and IKEv2
// decryption table name them.
var wiresharkIntegrityNames = map[proposal.Hash]struct{ esp, ikev2 string }{
	proposal.HashMD5:    {"HMAC-MD5-96 [RFC2403]", "HMAC_MD5_96 [RFC2403]"},
	proposal.HashSHA1:   {"HMAC-SHA-1-96 [RFC2404]", "HMAC_SHA1_96 [RFC2404]"},
	proposal.HashSHA256: {"HMAC-SHA-256-128 [RFC4868]", "HMAC_SHA2_256_128 [RFC4868]"},
	proposal.HashSHA384: {"HMAC-SHA-384-192 [RFC4868]", "HMAC_SHA2_384_192 [RFC4868]"},
	proposal.HashSHA512: {"HMAC-SHA-512-256 [RFC4868]", "HMAC_SHA2_512_256 [RFC4868]"},
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
	return lines, nil
}

// appendLines appends lines to the existing file name in one write.
func appendLines(name string, lines []string) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strings.Join(lines, "\n") + "\n")
	return errors.Join(err, f.Close())
}

// writeAtomic replaces name with lines through a temporary file (which CreateTemp makes
// 0600), synced and then renamed, so that a reader never sees a partial table.
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
	if err := errors.Join(w.Flush(), tmp.Sync()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
