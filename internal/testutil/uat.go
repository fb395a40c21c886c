package testutil

import (
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Wireshark names of the ESP transforms espgw and strongSwan negotiate, as written in the
// esp_sa UAT (Edit > Preferences > Protocols > ESP > ESP SAs).
const (
	WSEnc3DESCBC   = "TripleDES-CBC [RFC2451]"
	WSEncAESCBC    = "AES-CBC [RFC3602]"
	WSEncAESGCM16  = "AES-GCM with 16 octet ICV [RFC4106]"
	WSEncNull      = "NULL"
	WSIntegSHA1    = "HMAC-SHA-1-96 [RFC2404]"
	WSIntegSHA256  = "HMAC-SHA-256-128 [RFC4868]"
	WSIntegSHA384  = "HMAC-SHA-384-192 [RFC4868]"
	WSIntegSHA512  = "HMAC-SHA-512-256 [RFC4868]"
	WSIntegMD5     = "HMAC-MD5-96 [RFC2403]"
	WSIntegNull    = "NULL"
	ESPSAFile      = "esp_sa"                 // Wireshark's file name for the ESP SA table
	IKEv1TableFile = "ikev1_decryption_table" // Wireshark's file name for IKEv1 phase-1 keys
	IKEv2TableFile = "ikev2_decryption_table" // Wireshark's file name for IKEv2 SK_e/SK_a keys
)

// ESPSAEntry is one line of Wireshark's esp_sa table: the keys of one ESP SA (one direction).
type ESPSAEntry struct {
	Protocol   string // "IPv4" or "IPv6"
	Src, Dst   string // outer addresses (Wireshark also accepts "*")
	SPI        uint32
	Encryption string // Wireshark name, e.g. WSEnc3DESCBC
	EncKey     []byte // for AES-GCM: AES key followed by the 4-byte salt
	Integrity  string // Wireshark name, e.g. WSIntegSHA1; WSIntegNull for AES-GCM
	IntegKey   []byte
}

// IKEv1Key is one line of Wireshark's ikev1_decryption_table: the phase-1 encryption key of one
// ISAKMP SA, found by its initiator cookie.
type IKEv1Key struct {
	ICookie [8]byte
	Key     []byte // the derived encryption key (Ka in RFC 2409 appendix B)
}

// Keys is the key material handed to tshark.
type Keys struct {
	ESP   []ESPSAEntry
	IKEv1 []IKEv1Key
	// IKEv2 are ikev2_decryption_table lines as espgw writes them (SPIs and keys in hex,
	// algorithms quoted), handed to tshark as they are.
	IKEv2 []string
}

// Line formats e as a line of the esp_sa UAT file (also the value of a `-o uat:esp_sa:` option).
func (e ESPSAEntry) Line() string {
	ik := ""
	if len(e.IntegKey) > 0 {
		ik = "0x" + hex.EncodeToString(e.IntegKey)
	}
	return fmt.Sprintf("%q,%q,%q,\"0x%08x\",%q,\"0x%s\",%q,%q",
		e.Protocol, e.Src, e.Dst, e.SPI, e.Encryption, hex.EncodeToString(e.EncKey), e.Integrity, ik)
}

// Line formats k as a line of the ikev1_decryption_table UAT file (no quotes: tshark's -o
// parser rejects them in this table).
func (k IKEv1Key) Line() string {
	return hex.EncodeToString(k.ICookie[:]) + "," + hex.EncodeToString(k.Key)
}

// Options returns the tshark arguments that enable ESP decryption and ICV checking and load
// every key in k.
func (k Keys) Options() []string {
	opts := []string{
		"-o", "esp.enable_encryption_decode:TRUE",
		"-o", "esp.enable_authentication_check:TRUE",
	}
	for _, e := range k.ESP {
		opts = append(opts, "-o", "uat:esp_sa:"+e.Line())
	}
	for _, i := range k.IKEv1 {
		opts = append(opts, "-o", "uat:ikev1_decryption_table:"+i.Line())
	}
	for _, l := range k.IKEv2 {
		opts = append(opts, "-o", "uat:ikev2_decryption_table:"+l)
	}
	return opts
}

// Merge returns k with the entries of o appended.
func (k Keys) Merge(o Keys) Keys {
	return Keys{
		ESP:   append(append([]ESPSAEntry(nil), k.ESP...), o.ESP...),
		IKEv1: append(append([]IKEv1Key(nil), k.IKEv1...), o.IKEv1...),
		IKEv2: append(append([]string(nil), k.IKEv2...), o.IKEv2...),
	}
}

// ParseESPSALine parses one esp_sa UAT line:
// "IPv4","src","dst","0xSPI","<encryption>","0xKEY","<integrity>","0xKEY". Extra trailing
// fields (newer Wireshark versions) are ignored.
func ParseESPSALine(line string) (ESPSAEntry, error) {
	f, err := uatFields(line)
	if err != nil {
		return ESPSAEntry{}, fmt.Errorf("esp_sa line: %w", err)
	}
	if len(f) < 8 {
		return ESPSAEntry{}, fmt.Errorf("esp_sa line: %d fields, want 8", len(f))
	}
	spi, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(f[3]), "0x"), 16, 32)
	if err != nil {
		return ESPSAEntry{}, fmt.Errorf("esp_sa field spi %q: want 0x and up to 8 hex digits: %w", f[3], err)
	}
	e := ESPSAEntry{Protocol: f[0], Src: f[1], Dst: f[2], SPI: uint32(spi), Encryption: f[4], Integrity: f[6]}
	if e.EncKey, err = uatHex(f[5]); err != nil {
		return ESPSAEntry{}, fmt.Errorf("esp_sa field encryption key: %w", err)
	}
	if e.IntegKey, err = uatHex(f[7]); err != nil {
		return ESPSAEntry{}, fmt.Errorf("esp_sa field authentication key: %w", err)
	}
	return e, nil
}

// ParseIKEv1Line parses one ikev1_decryption_table line: icookie,key (hex, optionally quoted).
func ParseIKEv1Line(line string) (IKEv1Key, error) {
	f, err := uatFields(line)
	if err != nil {
		return IKEv1Key{}, fmt.Errorf("ikev1_decryption_table line: %w", err)
	}
	if len(f) != 2 {
		return IKEv1Key{}, fmt.Errorf("ikev1_decryption_table line: %d fields, want 2 (icookie,key)", len(f))
	}
	var k IKEv1Key
	c, err := uatHex(f[0])
	if err != nil || len(c) != 8 {
		return IKEv1Key{}, fmt.Errorf("ikev1_decryption_table field icookie %q: want 16 hex digits", f[0])
	}
	copy(k.ICookie[:], c)
	if k.Key, err = uatHex(f[1]); err != nil || len(k.Key) == 0 {
		return IKEv1Key{}, fmt.Errorf("ikev1_decryption_table field key: want hex digits: %v", err)
	}
	return k, nil
}

// ReadKeyFiles reads an esp_sa file and an ikev1_decryption_table file (either path may be "").
// Blank lines and lines starting with '#' are skipped.
func ReadKeyFiles(espSAPath, ikev1Path string) (Keys, error) {
	var k Keys
	if err := readUAT(espSAPath, func(l string) error {
		e, err := ParseESPSALine(l)
		k.ESP = append(k.ESP, e)
		return err
	}); err != nil {
		return Keys{}, err
	}
	if err := readUAT(ikev1Path, func(l string) error {
		e, err := ParseIKEv1Line(l)
		k.IKEv1 = append(k.IKEv1, e)
		return err
	}); err != nil {
		return Keys{}, err
	}
	return k, nil
}

// ReadKeyDir reads dir/esp_sa, dir/ikev1_decryption_table and dir/ikev2_decryption_table
// (Wireshark's file names); a missing file counts as empty.
func ReadKeyDir(dir string) (Keys, error) {
	esp, ike := existing(filepath.Join(dir, ESPSAFile)), existing(filepath.Join(dir, IKEv1TableFile))
	k, err := ReadKeyFiles(esp, ike)
	if err != nil {
		return Keys{}, err
	}
	err = readUAT(existing(filepath.Join(dir, IKEv2TableFile)), func(l string) error {
		k.IKEv2 = append(k.IKEv2, l)
		return nil
	})
	return k, err
}

// existing returns path, or "" if there is no such file.
func existing(path string) string {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	return path
}

func readUAT(path string, line func(string) error) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if err := line(l); err != nil {
			return fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
	}
	return nil
}

func uatFields(line string) ([]string, error) {
	r := csv.NewReader(strings.NewReader(line))
	r.FieldsPerRecord = -1
	f, err := r.Read()
	if err != nil {
		return nil, err
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	return f, nil
}

// uatHex decodes "0x0123…" or "0123…"; "" decodes to nil.
func uatHex(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%d hex digits: %w", len(s), err)
	}
	return b, nil
}
