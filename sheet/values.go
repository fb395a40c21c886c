package sheet

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/espgw/espgw/ike/proposal"
)

// norm lower-cases s, turns every run of punctuation and blanks into one space and trims
// it, so that "HMAC-SHA-1", "hmac_sha1" and "HMAC SHA 1" compare alike after a compact.
func norm(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToLower(s) {
		if r == 'ё' {
			r = 'е'
		}
		if isWordRune(r) {
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteRune(r)
			space = false
			continue
		}
		space = true
	}
	return b.String()
}

func isWordRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r >= 'а' && r <= 'я'
}

// compact is norm without spaces: "hmac sha 1" → "hmacsha1".
func compact(s string) string { return strings.ReplaceAll(norm(s), " ", "") }

// cipher is an encryption algorithm with its key length.
type cipher struct {
	enc  proposal.Encryption
	bits int
}

// parseCipher reads "3DES", "TripleDES", "3des-cbc", "AES-256", "AES256-CBC", "AES",
// "AES-GCM-256 (ICV 16)", "aes256gcm16". phase2 names the phase in errors; aead allows
// AES-GCM (phase 2, and phase 1 of IKEv2).
func parseCipher(s string, phase2, aead bool) (cipher, error) {
	c := compact(s)
	c = strings.TrimPrefix(c, "esp")
	switch c {
	case "3des", "3descbc", "tripledes", "tripledescbc", "des3", "des3cbc", "desede", "desede3", "3des168", "3des192":
		return cipher{proposal.Enc3DES, 0}, nil
	}
	if !strings.HasPrefix(c, "aes") {
		return cipher{}, fmt.Errorf("unknown %s encryption (want 3DES, AES-128/192/256%s)", phaseName(phase2), gcmHint(aead))
	}
	gcm := strings.Contains(c, "gcm")
	icv := 16
	if i := strings.Index(c, "icv"); i >= 0 { // "(ICV 12)"
		n, err := strconv.Atoi(c[i+3:])
		if err != nil {
			return cipher{}, fmt.Errorf("unknown %s encryption", phaseName(phase2))
		}
		icv, c = n, c[:i]
	}
	rest := strings.NewReplacer("aes", "", "gcm", "", "cbc", "", "bits", "", "bit", "").Replace(c)
	if gcm && strings.HasSuffix(rest, "16") && len(rest) > 3 { // aes256gcm16 → "25616"
		rest = rest[:len(rest)-2]
	}
	bits := 128
	if rest != "" {
		n, err := strconv.Atoi(rest)
		if err != nil || (n != 128 && n != 192 && n != 256) {
			return cipher{}, fmt.Errorf("unknown %s encryption (AES key length 128, 192 or 256)", phaseName(phase2))
		}
		bits = n
	}
	switch {
	case gcm && !aead:
		return cipher{}, fmt.Errorf("AES-GCM is not a phase 1 cipher in IKEv1 (want 3DES or AES-CBC, or IKE version IKEv2)")
	case gcm && icv != 16:
		return cipher{}, fmt.Errorf("unknown %s encryption (espgw does AES-GCM with a 16-byte ICV only)", phaseName(phase2))
	case gcm:
		return cipher{proposal.EncAESGCM16, bits}, nil
	}
	return cipher{proposal.EncAESCBC, bits}, nil
}

func phaseName(phase2 bool) string {
	if phase2 {
		return "phase 2"
	}
	return "phase 1"
}

func gcmHint(aead bool) string {
	if aead {
		return ", AES-GCM-128/256"
	}
	return ""
}

// parseHash reads "SHA-1", "SHA1", "HMAC-SHA1", "SHA", "SHA-256", "SHA2-256", "HMAC-SHA-256",
// "ESP-SHA-HMAC" (Cisco's SHA-1), "MD5".
func parseHash(s string, phase2 bool) (proposal.Hash, error) {
	c := strings.NewReplacer("hmac", "", "esp", "", "96", "", "128", "").Replace(compact(s))
	switch c {
	case "sha", "sha1", "sha11", "sha160":
		return proposal.HashSHA1, nil
	case "sha256", "sha2256", "sha2":
		return proposal.HashSHA256, nil
	case "sha384", "sha2384", "sha384192":
		return proposal.HashSHA384, nil
	case "sha512", "sha2512", "sha512256":
		return proposal.HashSHA512, nil
	case "md5":
		if phase2 {
			return 0, fmt.Errorf("MD5 is not supported in phase 2 by espgw's datapath (want SHA-1 or SHA-2)")
		}
		return proposal.HashMD5, nil
	}
	what := "hash"
	if phase2 {
		what = "integrity algorithm"
	}
	return 0, fmt.Errorf("unknown phase %s %s (want SHA-1, SHA-256, SHA-384, SHA-512)", map[bool]string{false: "1", true: "2"}[phase2], what)
}

// parsePRF reads an IKEv2 PRF: "PRF-HMAC-SHA-256", "HMAC-SHA-256", "prfsha256", "SHA-256".
func parsePRF(s string) (proposal.Hash, error) {
	h, err := parseHash(strings.ReplaceAll(compact(s), "prf", ""), false)
	if err != nil {
		return 0, fmt.Errorf("unknown PRF (want PRF-HMAC-SHA-1, -SHA-256, -SHA-384, -SHA-512)")
	}
	return h, nil
}

// versionPattern matches an IKE version cell after compact: "IKEv2", "v2", "2", "IKE 2",
// "IKEv1 only", "IKEv2 (RFC 7296)", "версия 2".
var versionPattern = regexp.MustCompile(`^(?:ike)?(?:version|версия)?v?([12])(?:only|rfc\d+)?$`)

// versionOf is the IKE version a cell names, 0 if none.
func versionOf(s string) uint8 {
	m := versionPattern.FindStringSubmatch(compact(s))
	if m == nil {
		return 0
	}
	return m[1][0] - '0'
}

// modpBits are the IANA Diffie-Hellman groups espgw has, by the name's size.
var groupNames = map[string]uint16{
	"modp1024": 2, "modp1536": 5, "modp2048": 14, "modp3072": 15, "modp4096": 16, "ecp256": 19, "ecp384": 20,
}

var groupNumber = regexp.MustCompile(`^(?:dh|dhgroup|group|gr|modpgroup|grp|группа|группаdh)?(\d+)$`)

// parseGroup reads "Group 2", "DH2", "DH Group 14", "modp1024", "MODP-2048", "2", "ECP-256",
// "Group 2 (modp1024)", "DH Group 2 (1024 bit)".
func parseGroup(s string) (uint16, error) {
	g, err := groupWord(compact(stripParens(s)))
	if err == nil || !strings.Contains(s, "(") {
		return g, err
	}
	if i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')'); j > i {
		if g, err2 := groupWord(compact(s[i+1 : j])); err2 == nil {
			return g, nil
		}
	}
	return 0, err
}

func groupWord(c string) (uint16, error) {
	c = strings.TrimSuffix(strings.TrimSuffix(c, "bits"), "bit")
	if g, ok := groupNames[c]; ok {
		return g, nil
	}
	if m := groupNumber.FindStringSubmatch(c); m != nil {
		n, _ := strconv.Atoi(m[1])
		if n < math.MaxUint16 && proposal.GroupName(uint16(n)) != fmt.Sprintf("group%d", n) {
			return uint16(n), nil
		}
		return 0, fmt.Errorf("DH group %s is not supported (want 2, 5, 14, 15, 16, 19 or 20)", m[1])
	}
	return 0, fmt.Errorf("unknown DH group (want e.g. Group 2, DH14, modp2048)")
}

// units of lifetimes, by their normalized spelling.
var timeUnits = map[string]time.Duration{
	"": time.Second, "s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"с": time.Second, "сек": time.Second, "секунд": time.Second, "секунды": time.Second, "секунда": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"мин": time.Minute, "минут": time.Minute, "минуты": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"ч": time.Hour, "час": time.Hour, "часа": time.Hour, "часов": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour, "сут": 24 * time.Hour, "сутки": 24 * time.Hour,
	"день": 24 * time.Hour, "дня": 24 * time.Hour, "дней": 24 * time.Hour,
}

var kbUnits = map[string]uint64{
	"kb": 1, "kbyte": 1, "kbytes": 1, "kilobyte": 1, "kilobytes": 1, "kib": 1, "кб": 1, "кбайт": 1, "килобайт": 1,
	"mb": 1 << 10, "mbyte": 1 << 10, "mbytes": 1 << 10, "megabytes": 1 << 10, "мб": 1 << 10, "мбайт": 1 << 10,
	"gb": 1 << 20, "gbyte": 1 << 20, "gbytes": 1 << 20, "gigabytes": 1 << 20, "гб": 1 << 20, "гбайт": 1 << 20,
	"b": 0, "bytes": 0, "байт": 0, // handled as bytes
}

// digitGroups finds thousands separated by a (no-break, thin) space.
var digitGroups = regexp.MustCompile(`(\d)[ \x{a0}\x{202f}](\d{3}\b)`)

var lifePart = regexp.MustCompile(`^(\d+)\s*([a-zа-я]*)$`)

// parseLifetime reads "86400", "24h", "86400 sec", "86400 сек", "8 hours",
// "28800 seconds / 4608000 KB", "1h30m", "4608000 KB". Either part may be missing.
func parseLifetime(s string) (time.Duration, uint64, error) {
	var d time.Duration
	var kb uint64
	s = digitGroups.ReplaceAllString(s, "$1$2") // "86 400" → "86400"
	s = digitGroups.ReplaceAllString(s, "$1$2")
	parts := strings.FieldsFunc(strings.ToLower(stripParens(s)), func(r rune) bool { return r == '/' || r == ';' || r == ',' || r == '\n' || r == '|' })
	if len(parts) == 0 {
		return 0, 0, fmt.Errorf("empty lifetime")
	}
	for _, p := range parts {
		p = strings.TrimSpace(strings.Trim(strings.TrimSpace(p), "()"))
		if p == "" {
			continue
		}
		if g, err := time.ParseDuration(strings.ReplaceAll(p, " ", "")); err == nil && g > 0 {
			d = g
			continue
		}
		m := lifePart.FindStringSubmatch(strings.TrimSuffix(strings.ReplaceAll(p, ".", ""), "."))
		if m == nil {
			return 0, 0, fmt.Errorf("unknown lifetime (want e.g. 86400, 24h, 28800 seconds / 4608000 KB)")
		}
		n, err := strconv.ParseUint(m[1], 10, 63)
		if err != nil || n == 0 {
			return 0, 0, fmt.Errorf("lifetime %q is not a positive number", m[1])
		}
		if u, ok := timeUnits[m[2]]; ok {
			if n > uint64(math.MaxInt64/u) {
				return 0, 0, fmt.Errorf("lifetime %q is too long", p)
			}
			d = time.Duration(n) * u
			continue
		}
		if u, ok := kbUnits[m[2]]; ok {
			if u == 0 {
				kb = (n + 1023) / 1024
			} else if n <= math.MaxUint64/u {
				kb = n * u
			}
			continue
		}
		return 0, 0, fmt.Errorf("unknown lifetime unit %q (want seconds, minutes, hours, days or KB, MB, GB)", m[2])
	}
	return d, kb, nil
}

// yes and no words of partner sheets.
var (
	yesWords = []string{"yes", "y", "on", "enabled", "enable", "true", "required", "да", "вкл", "включено", "используется", "требуется"}
	noWords  = []string{"no", "n", "off", "disabled", "disable", "false", "none", "нет", "выкл", "отключено", "не используется", "не требуется", "n a", "na"}
)

// yesNo finds a yes or no word at the start of s: "Yes (group 2)", "Да, 10 сек", "No".
func yesNo(s string) (yes, ok bool) {
	n := norm(s)
	for _, w := range noWords {
		if n == w || strings.HasPrefix(n, w+" ") {
			return false, true
		}
	}
	for _, w := range yesWords {
		if n == w || strings.HasPrefix(n, w+" ") {
			return true, true
		}
	}
	return false, false
}

// parsePFS reads "Yes (Group 2)", "PFS: yes (group 2)", "Да (Group 2)", "No", "Нет",
// "Group 14", "DH14". 0 means no PFS.
func parsePFS(s string) (uint16, error) {
	t := strings.TrimSpace(s)
	if n := norm(t); strings.HasPrefix(n, "pfs ") {
		t = t[strings.Index(strings.ToLower(t), "pfs")+3:]
		t = strings.TrimLeft(t, " :=-")
	}
	yes, ok := yesNo(t)
	if ok && !yes {
		return 0, nil
	}
	rest := t
	if ok { // drop the yes word, keep "(group 2)"
		n := norm(t)
		for _, w := range yesWords {
			if strings.HasPrefix(n, w) {
				rest = strings.TrimSpace(t[len(firstWord(t)):])
				break
			}
		}
	}
	rest = strings.Trim(strings.TrimSpace(rest), "(),;:")
	if rest == "" {
		return 0, fmt.Errorf("PFS yes without a group (want e.g. yes (group 2))")
	}
	g, err := parseGroup(rest)
	if err != nil {
		return 0, fmt.Errorf("PFS group: %v", err)
	}
	return g, nil
}

// firstWord is s up to its first blank, comma or parenthesis.
func firstWord(s string) string {
	if i := strings.IndexAny(s, " ,(;:"); i >= 0 {
		return s[:i]
	}
	return s
}

// parseDPD reads "Yes, 10 sec", "Да, 10 сек", "30", "30 s", "No". yes without an interval
// returns the default 30 s.
func parseDPD(s string) (time.Duration, error) {
	yes, ok := yesNo(s)
	if ok && !yes {
		return 0, nil
	}
	rest := s
	if ok {
		rest = strings.TrimLeft(strings.TrimSpace(s)[len(firstWord(strings.TrimSpace(s))):], " ,;:(")
		rest = strings.TrimRight(rest, ")")
	}
	if strings.TrimSpace(rest) == "" {
		return 30 * time.Second, nil
	}
	d, kb, err := parseLifetime(rest)
	if err != nil || kb != 0 || d == 0 {
		return 0, fmt.Errorf("unknown DPD setting (want no, yes or yes, 10 s)")
	}
	return d, nil
}
