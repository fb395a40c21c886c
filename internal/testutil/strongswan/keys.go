package strongswan

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/espgw/espgw/internal/testutil"
)

// ESPKey is the key material of one ESP SA (one direction) as charon logged it at level 4.
type ESPKey struct {
	IKE        int    // unique id of the IKE_SA that negotiated it (IKESA.UniqueID)
	Inbound    bool   // charon's inbound SA (it decrypts with it) or outbound SA
	SPI        uint32 // host byte order
	Src, Dst   netip.Addr
	EncAlg     string // strongSwan name: 3DES_CBC, AES_CBC, AES_GCM_16, ...
	EncKeySize int    // bits, as logged (for AES-GCM including the 32-bit salt: 288 for AES-256)
	IntegAlg   string // strongSwan name, e.g. HMAC_SHA1_96; "" for AEAD
	EncKey     []byte // AES-GCM: AES key followed by the 4-byte salt (RFC 4106 KEYMAT)
	IntegKey   []byte
}

// IKEKey is the phase-1 encryption key of one ISAKMP SA (RFC 2409 appendix B "Ka").
type IKEKey struct {
	IKE     int // IKESA.UniqueID
	ICookie [8]byte
	RCookie [8]byte
	EncKey  []byte
}

// KeyLog is all key material found in a charon log.
type KeyLog struct {
	ESP []ESPKey
	IKE []IKEKey
}

// wiresharkEnc and wiresharkInteg map strongSwan algorithm names to the esp_sa UAT names.
var (
	wiresharkEnc = map[string]string{
		"3DES_CBC":   testutil.WSEnc3DESCBC,
		"AES_CBC":    testutil.WSEncAESCBC,
		"AES_GCM_16": testutil.WSEncAESGCM16,
		"NULL":       testutil.WSEncNull,
	}
	wiresharkInteg = map[string]string{
		"":                  testutil.WSIntegNull,
		"HMAC_SHA1_96":      testutil.WSIntegSHA1,
		"HMAC_SHA2_256_128": testutil.WSIntegSHA256,
		"HMAC_SHA2_384_192": testutil.WSIntegSHA384,
		"HMAC_SHA2_512_256": testutil.WSIntegSHA512,
		"HMAC_MD5_96":       testutil.WSIntegMD5,
	}
)

// Entry is k as a Wireshark esp_sa entry. Unknown algorithm names are passed through unchanged
// (tshark then rejects the entry and says so).
func (k ESPKey) Entry() testutil.ESPSAEntry {
	enc, ok := wiresharkEnc[k.EncAlg]
	if !ok {
		enc = k.EncAlg
	}
	integ, ok := wiresharkInteg[k.IntegAlg]
	if !ok {
		integ = k.IntegAlg
	}
	proto := "IPv4"
	if k.Src.Is6() {
		proto = "IPv6"
	}
	return testutil.ESPSAEntry{
		Protocol: proto, Src: k.Src.String(), Dst: k.Dst.String(), SPI: k.SPI,
		Encryption: enc, EncKey: k.EncKey, Integrity: integ, IntegKey: k.IntegKey,
	}
}

// Entry is k as a Wireshark ikev1_decryption_table entry.
func (k IKEKey) Entry() testutil.IKEv1Key {
	return testutil.IKEv1Key{ICookie: k.ICookie, Key: k.EncKey}
}

// TShark converts l for testutil.TShark / testutil.ESPRows.
func (l KeyLog) TShark() testutil.Keys {
	var k testutil.Keys
	for _, e := range l.ESP {
		k.ESP = append(k.ESP, e.Entry())
	}
	for _, i := range l.IKE {
		k.IKEv1 = append(k.IKEv1, i.Entry())
	}
	return k
}

// ESPBySPI returns the ESP key with the given SPI.
func (l KeyLog) ESPBySPI(spi uint32) (ESPKey, bool) {
	for _, e := range l.ESP {
		if e.SPI == spi {
			return e, true
		}
	}
	return ESPKey{}, false
}

// Keys parses the key material charon logged so far (needs Config.LogLevel >= 4, the default).
func (c *Charon) Keys() (KeyLog, error) {
	f, err := os.Open(c.LogPath())
	if err != nil {
		return KeyLog{}, err
	}
	defer f.Close()
	return ParseKeyLog(f)
}

var (
	logPrefix  = regexp.MustCompile(`^\S+ \d+\[\w+\] (?:<(?:[^|>]*\|)?(\d+)> )?(.*)$`)
	logHex     = regexp.MustCompile(`^\s*\d+: ((?:[0-9A-F]{2} )+)`)
	logChunk   = regexp.MustCompile(`^(natd_chunk|encryption key Ka|(encryption|integrity) (initiator|responder) key) => (\d+) bytes`)
	logQM      = regexp.MustCompile(`^(generating|parsed) QUICK_MODE request \d+ \[ HASH SA`)
	logAddSA   = regexp.MustCompile(`^adding (inbound|outbound) ESP SA`)
	logSPI     = regexp.MustCompile(`^\s*SPI 0x([0-9a-f]+), src (\S+) dst (\S+)`)
	logEncAlg  = regexp.MustCompile(`^\s*using encryption algorithm (\S+) with key size (\d+)`)
	logIntgAlg = regexp.MustCompile(`^\s*using integrity algorithm (\S+)`)
)

type logLine struct {
	ike int // 0 when the line names no IKE_SA
	msg string
}

// ParseKeyLog extracts ESP and ISAKMP keys from a charon log written with ike and chd at level 4
// and ike_name = yes. A quick-mode "initiator" key protects traffic from the quick-mode
// initiator to the responder, so each SA's keys are chosen by charon's quick-mode role and the
// SA direction.
func ParseKeyLog(r io.Reader) (KeyLog, error) {
	lines, err := readLog(r)
	if err != nil {
		return KeyLog{}, err
	}

	var out KeyLog
	ikeKeys := map[int]*IKEKey{}
	var ikeOrder []int
	qmInitiator := map[int]bool{}
	childKeys := map[int]map[string][]byte{} // "encryption initiator" → key, per IKE_SA
	seen := map[uint32]bool{}
	var pending *ESPKey
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := logChunk.FindStringSubmatch(l.msg); m != nil {
			n, _ := strconv.Atoi(m[4])
			b := hexDump(lines[i+1:], l.ike, n)
			ik := ikeKeys[l.ike]
			if ik == nil && m[2] == "" {
				ik = &IKEKey{IKE: l.ike}
				ikeKeys[l.ike] = ik
				ikeOrder = append(ikeOrder, l.ike)
			}
			switch {
			case m[1] == "natd_chunk":
				// CKY-I | CKY-R | IP | port (RFC 3947); the first dump is the IKE_SA's own.
				if ik.ICookie == [8]byte{} && len(b) >= 16 {
					copy(ik.ICookie[:], b[:8])
					copy(ik.RCookie[:], b[8:16])
				}
			case m[1] == "encryption key Ka":
				ik.EncKey = b
			default:
				if childKeys[l.ike] == nil {
					childKeys[l.ike] = map[string][]byte{}
				}
				childKeys[l.ike][m[2]+" "+m[3]] = b
			}
			continue
		}
		if m := logQM.FindStringSubmatch(l.msg); m != nil {
			qmInitiator[l.ike] = m[1] == "generating"
		}
		if m := logAddSA.FindStringSubmatch(l.msg); m != nil {
			pending = &ESPKey{IKE: l.ike, Inbound: m[1] == "inbound"}
			continue
		}
		m := logSPI.FindStringSubmatch(l.msg)
		if m == nil || pending == nil || pending.IKE != l.ike {
			continue
		}
		k := *pending
		pending = nil
		spi, err := strconv.ParseUint(m[1], 16, 32)
		if err != nil {
			return KeyLog{}, fmt.Errorf("charon log SPI 0x%s: %w", m[1], err)
		}
		k.SPI = uint32(spi)
		if k.Src, err = netip.ParseAddr(m[2]); err != nil {
			return KeyLog{}, fmt.Errorf("charon log SA src %q: %w", m[2], err)
		}
		if k.Dst, err = netip.ParseAddr(m[3]); err != nil {
			return KeyLog{}, fmt.Errorf("charon log SA dst %q: %w", m[3], err)
		}
		for _, a := range lines[i+1 : min(i+7, len(lines))] {
			if a.ike != l.ike {
				continue
			}
			if m := logEncAlg.FindStringSubmatch(a.msg); m != nil {
				k.EncAlg = m[1]
				k.EncKeySize, _ = strconv.Atoi(m[2])
			}
			if m := logIntgAlg.FindStringSubmatch(a.msg); m != nil {
				if m[1] != "UNDEFINED" { // AEAD
					k.IntegAlg = m[1]
				}
			}
		}
		role := "responder"
		if !k.Inbound == qmInitiator[l.ike] {
			role = "initiator"
		}
		k.EncKey = childKeys[l.ike]["encryption "+role]
		k.IntegKey = childKeys[l.ike]["integrity "+role]
		if len(k.EncKey) == 0 || seen[k.SPI] {
			continue
		}
		seen[k.SPI] = true
		out.ESP = append(out.ESP, k)
	}
	for _, id := range ikeOrder {
		if k := ikeKeys[id]; len(k.EncKey) > 0 && k.ICookie != [8]byte{} {
			out.IKE = append(out.IKE, *k)
		}
	}
	return out, nil
}

// readLog splits a charon log into lines with the IKE_SA each names.
func readLog(r io.Reader) ([]logLine, error) {
	var lines []logLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		m := logPrefix.FindStringSubmatch(sc.Text())
		if m == nil {
			lines = append(lines, logLine{msg: sc.Text()})
			continue
		}
		id, _ := strconv.Atoi(m[1])
		lines = append(lines, logLine{ike: id, msg: m[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read charon log: %w", err)
	}
	return lines, nil
}

// Dumps returns, in log order, every chunk charon logged at level 4 under label (such as
// "Sk_ei secret": one per IKE SA it derived keys for).
func Dumps(r io.Reader, label string) ([][]byte, error) {
	lines, err := readLog(r)
	if err != nil {
		return nil, err
	}
	head := regexp.MustCompile(`^` + regexp.QuoteMeta(label) + ` => (\d+) bytes @`)
	var out [][]byte
	for i, l := range lines {
		if m := head.FindStringSubmatch(l.msg); m != nil {
			n, _ := strconv.Atoi(m[1])
			b := hexDump(lines[i+1:], l.ike, n)
			if len(b) != n {
				return nil, fmt.Errorf("charon log: dump %q has %d of %d bytes", label, len(b), n)
			}
			out = append(out, b)
		}
	}
	return out, nil
}

// hexDump collects n bytes from the chunk dump lines of IKE_SA ike at the start of lines.
func hexDump(lines []logLine, ike, n int) []byte {
	var b []byte
	for _, l := range lines {
		if len(b) >= n || l.ike != ike {
			break
		}
		m := logHex.FindStringSubmatch(l.msg)
		if m == nil {
			break
		}
		for _, h := range strings.Fields(m[1]) {
			v, err := hex.DecodeString(h)
			if err != nil {
				break
			}
			b = append(b, v...)
		}
	}
	if len(b) > n {
		b = b[:n]
	}
	return b
}
