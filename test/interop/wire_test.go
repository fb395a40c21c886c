package interop

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// requireOnlyIKEAndESP fails the test if the capture shows any protocol besides IKE and
// ESP (a protected flow in clear shows up as icmp or tcp), or lacks either of them.
func requireOnlyIKEAndESP(t *testing.T, pcap string, udpEncap bool) {
	t.Helper()
	allowed := []string{"eth", "ethertype", "ip", "udp", "isakmp", "esp"}
	if udpEncap {
		allowed = append(allowed, "udpencap")
	}
	got := testutil.Protocols(t, pcap)
	for _, p := range got {
		if !slices.Contains(allowed, p) {
			t.Errorf("protocol %q on the transit link (all: %v), want only %v", p, got, allowed)
		}
	}
	if !slices.Contains(got, "isakmp") || !slices.Contains(got, "esp") {
		t.Errorf("protocols on the transit link %v, want isakmp and esp", got)
	}
}

// flow is one direction of tunnelled traffic as the ESP checks expect it.
type flow struct {
	outerSrc, outerDst string // tunnel endpoints
	spi                string // 8 hex digits, as espgw status prints it
	min                int    // at least this many ESP packets
}

// requireESPDecrypts decrypts every ESP packet in pcap with keys and fails the test unless
// each has a good ICV, decrypts to traffic between the protected addresses, uses the
// expected encapsulation and belongs to one of flows, each flow seen at least flow.min times.
func requireESPDecrypts(t *testing.T, pcap string, keys testutil.Keys, udpEncap bool, flows ...flow) {
	t.Helper()
	rows := testutil.ESPRows(t, pcap, keys)
	seen := make([]int, len(flows))
	inner := []netip.Addr{netip.MustParseAddr(serviceAddr), netip.MustParseAddr(hostAddr)}
	for _, r := range rows {
		i := slices.IndexFunc(flows, func(f flow) bool {
			return r.OuterSrc.String() == f.outerSrc && r.OuterDst.String() == f.outerDst && fmt.Sprintf("%08x", r.SPI) == f.spi
		})
		if i < 0 {
			t.Errorf("ESP frame %d: %v -> %v SPI %08x belongs to none of the expected flows %+v", r.Frame, r.OuterSrc, r.OuterDst, r.SPI, flows)
			continue
		}
		seen[i]++
		switch {
		case !r.ICVGood:
			t.Errorf("ESP frame %d (%v -> %v SPI %08x seq %d): ICV not good with the exported keys", r.Frame, r.OuterSrc, r.OuterDst, r.SPI, r.Seq)
		case !r.Decrypted:
			t.Errorf("ESP frame %d (SPI %08x seq %d): tshark found no inner IP packet", r.Frame, r.SPI, r.Seq)
		case !slices.Contains(inner, r.InnerSrc) || !slices.Contains(inner, r.InnerDst):
			t.Errorf("ESP frame %d (SPI %08x): inner %v -> %v, want between %v", r.Frame, r.SPI, r.InnerSrc, r.InnerDst, inner)
		}
		if r.UDPEncap != udpEncap {
			t.Errorf("ESP frame %d (SPI %08x): ESP in UDP %v, want %v", r.Frame, r.SPI, r.UDPEncap, udpEncap)
		}
	}
	for i, f := range flows {
		if seen[i] < f.min {
			t.Errorf("ESP %s -> %s SPI %s: %d packets decrypted, want at least %d", f.outerSrc, f.outerDst, f.spi, seen[i], f.min)
		}
	}
}

// requireOracleRejectsWrongKey makes sure tshark notices a wrong key, so that the ICV checks
// above can fail: with one key bit flipped no packet of pcap may have a good ICV.
func requireOracleRejectsWrongKey(t *testing.T, pcap string, keys testutil.Keys) {
	t.Helper()
	var bad testutil.Keys
	for _, e := range keys.ESP {
		e.EncKey, e.IntegKey = bytes.Clone(e.EncKey), bytes.Clone(e.IntegKey)
		if len(e.IntegKey) > 0 {
			e.IntegKey[0] ^= 1
		} else if len(e.EncKey) > 0 {
			e.EncKey[0] ^= 1
		}
		bad.ESP = append(bad.ESP, e)
	}
	for _, r := range testutil.ESPRows(t, pcap, bad) {
		if r.ICVGood {
			t.Errorf("ESP frame %d: ICV good with a corrupted key: the tshark oracle checks nothing", r.Frame)
		}
	}
}

// requireSameESPKeys fails the test unless a and b hold identical esp_sa entries (addresses,
// algorithms, keys) for every SPI in spis. Keys are never printed.
func requireSameESPKeys(t *testing.T, aName string, a testutil.Keys, bName string, b testutil.Keys, spis ...string) {
	t.Helper()
	for _, spi := range spis {
		ea, okA := espEntry(a, spi)
		eb, okB := espEntry(b, spi)
		if !okA || !okB {
			t.Errorf("ESP SA %s: in %s keys %v, in %s keys %v; want both", spi, aName, okA, bName, okB)
			continue
		}
		if ea.Protocol != eb.Protocol || ea.Src != eb.Src || ea.Dst != eb.Dst ||
			ea.Encryption != eb.Encryption || ea.Integrity != eb.Integrity {
			t.Errorf("ESP SA %s: %s has %s %s->%s %q/%q, %s has %s %s->%s %q/%q", spi,
				aName, ea.Protocol, ea.Src, ea.Dst, ea.Encryption, ea.Integrity,
				bName, eb.Protocol, eb.Src, eb.Dst, eb.Encryption, eb.Integrity)
		}
		if len(ea.EncKey) == 0 || !bytes.Equal(ea.EncKey, eb.EncKey) {
			t.Errorf("ESP SA %s: encryption keys differ (%s %d bytes, %s %d bytes; contents not shown)", spi, aName, len(ea.EncKey), bName, len(eb.EncKey))
		}
		if !bytes.Equal(ea.IntegKey, eb.IntegKey) {
			t.Errorf("ESP SA %s: integrity keys differ (%s %d bytes, %s %d bytes; contents not shown)", spi, aName, len(ea.IntegKey), bName, len(eb.IntegKey))
		}
	}
}

func espEntry(k testutil.Keys, spi string) (testutil.ESPSAEntry, bool) {
	v, err := strconv.ParseUint(spi, 16, 32)
	if err != nil {
		return testutil.ESPSAEntry{}, false
	}
	for _, e := range k.ESP {
		if e.SPI == uint32(v) {
			return e, true
		}
	}
	return testutil.ESPSAEntry{}, false
}

// requireSameIKEKey fails the test unless espgw's ikev1_decryption_table holds charon's
// phase-1 encryption key for the ISAKMP SA with initiator cookie icookie.
func requireSameIKEKey(t *testing.T, gw testutil.Keys, swan strongswan.KeyLog, icookie uint64) {
	t.Helper()
	var want []byte
	for _, k := range swan.IKE {
		if cookieValue(k.ICookie) == icookie {
			want = k.EncKey
		}
	}
	if want == nil {
		t.Errorf("charon logged no phase-1 key for initiator cookie %016x", icookie)
		return
	}
	for _, k := range gw.IKEv1 {
		if cookieValue(k.ICookie) == icookie {
			if !bytes.Equal(k.Key, want) {
				t.Errorf("ISAKMP SA %016x: espgw's and charon's phase-1 encryption keys differ (%d and %d bytes; contents not shown)", icookie, len(k.Key), len(want))
			}
			return
		}
	}
	t.Errorf("espgw's %s has no entry for initiator cookie %016x", testutil.IKEv1TableFile, icookie)
}

func cookieValue(b [8]byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}
