package interop

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/espgw/espgw/ike/dh"
	"github.com/espgw/espgw/ike/isakmp"
	"github.com/espgw/espgw/ike/keymat"
	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// TestKeymatMatchesCharon runs a main mode and a quick mode between two strongSwan charons
// and recomputes, from the captured messages and the secrets charon logs (g^xy, the
// quick-mode DH secret), everything package ike/keymat derives: SKEYID and its children, Ka,
// the phase-1 and phase-2 IVs and the ESP KEYMAT, decrypting every encrypted message on the
// way. It also checks package proposal against charon's SA payloads: the transforms a
// keyword string expands to, their encoding, and the responder's choice.
func TestKeymatMatchesCharon(t *testing.T) {
	if testing.Short() {
		testutil.NotApplicable(t, "-short: skipping the strongSwan pairs")
	}
	tests := []struct {
		name              string
		leftIKE, rightIKE string // the initiator offers left, the responder accepts right
		leftESP, rightESP string
		psk               string
	}{
		{name: "3des-sha1 PFS modp1024", leftIKE: "3des-sha1-modp1024", leftESP: "3des-sha1-modp1024"},
		{name: "aes256-sha1 gcm no PFS", leftIKE: "aes256-sha1-modp2048", leftESP: "aes256gcm16"},
		{name: "aes192-md5 PFS modp1536", leftIKE: "aes192-md5-modp1536", leftESP: "aes128-md5-modp1536"},
		{name: "aes128-sha256 ecp", leftIKE: "aes128-sha256-ecp256", leftESP: "aes256-sha512-ecp384"},
		{name: "aes256-sha512 modp4096", leftIKE: "aes256-sha512-modp4096", leftESP: "aes192-sha384-modp3072"},
		{
			// charon 5.9 (IKEv1) offers only the first algorithm of each kind of a proposal,
			// so several offers are several comma-separated proposals.
			name:    "several offered",
			leftIKE: "aes128-sha1-modp2048, aes256-sha256-modp1024, 3des-md5-modp1024", rightIKE: "aes256-sha256-modp1024",
			leftESP: "aes128gcm16-modp2048, aes256-sha1-modp2048, aes256gcm16-modp2048", rightESP: "aes256gcm16-modp2048",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.rightIKE == "" {
				tt.rightIKE, tt.rightESP = tt.leftIKE, tt.leftESP
			}
			run := startPair(t, tt.leftIKE, tt.rightIKE, tt.leftESP, tt.rightESP)
			checkRun(t, run, tt.leftIKE, tt.rightIKE, tt.leftESP, tt.rightESP)
		})
	}
}

const interopPSK = "keymat-interop-psk"

var leftAddr = netip.MustParseAddr("192.0.2.1")

// interopRun is what a charon pair left behind: the messages and the initiator's log chunks.
type interopRun struct {
	msgs   []capturedMessage
	chunks map[string][][]byte
}

func startPair(t *testing.T, leftIKE, rightIKE, leftESP, rightESP string) interopRun {
	left := testutil.NewNetNS(t, "kmleft")
	right := testutil.NewNetNS(t, "kmright")
	testutil.Veth(t, left, "l-wan", "192.0.2.1/24", right, "r-wan", "192.0.2.2/24")
	left.AddAddr(t, "lo", "10.10.1.1/32")
	right.AddAddr(t, "lo", "10.20.0.1/24")
	l := strongswan.Start(t, left, strongswan.Config{
		LocalAddr: "192.0.2.1", RemoteAddr: "192.0.2.2", PSK: interopPSK,
		IKEProposals: leftIKE, ESPProposals: leftESP, LocalTS: "10.10.1.1/32", RemoteTS: "10.20.0.0/24",
	})
	r := strongswan.Start(t, right, strongswan.Config{
		LocalAddr: "192.0.2.2", RemoteAddr: "192.0.2.1", PSK: interopPSK,
		IKEProposals: rightIKE, ESPProposals: rightESP, LocalTS: "10.20.0.0/24", RemoteTS: "10.10.1.1/32",
	})
	capture := testutil.StartCapture(t, left, "l-wan", "udp port 500 or udp port 4500")
	if err := l.Initiate("s2s", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	r.WaitInstalled(t, "s2s", 10*time.Second) // after quick mode 3
	pcap := capture.Stop()
	return interopRun{msgs: capturedMessages(t, pcap, leftAddr), chunks: charonChunks(t, l.Log())}
}

// chunk returns the n-th (0-based) dump of name.
func (r interopRun) chunk(t *testing.T, name string, n int) []byte {
	t.Helper()
	if len(r.chunks[name]) <= n {
		t.Fatalf("charon logged %d %q dumps, want > %d", len(r.chunks[name]), name, n)
	}
	return r.chunks[name][n]
}

func checkRun(t *testing.T, r interopRun, leftIKE, rightIKE, leftESP, rightESP string) {
	mm := exchange(t, r.msgs, isakmp.ExchangeIdentityProtection, 6)
	qm := exchange(t, r.msgs, isakmp.ExchangeQuickMode, 3)

	// Main mode 1 and 2: the proposals, in the clear.
	mm1, mm2 := decodePlain(t, mm[0]), decodePlain(t, mm[1])
	offered := transforms(payload[*isakmp.SA](t, mm1))
	checkIKEOffer(t, offered, leftIKE)
	chosenT := transforms(payload[*isakmp.SA](t, mm2))
	if len(chosenT) != 1 {
		t.Fatalf("responder chose %d transforms", len(chosenT))
	}
	ike, _, err := proposal.ParseIKETransform(chosenT[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, p, err := proposal.SelectIKE(mustParseIKE(t, rightIKE), offered); err != nil || p != ike {
		t.Errorf("SelectIKE = %v, %v; strongSwan chose %v", p, err, ike)
	}
	h := ike.Hash

	// Main mode 3 and 4: KE and nonces give SKEYID with the logged g^xy.
	mm3, mm4 := decodePlain(t, mm[2]), decodePlain(t, mm[3])
	gxi, gxr := payload[*isakmp.KeyExchange](t, mm3).Data, payload[*isakmp.KeyExchange](t, mm4).Data
	ni, nr := payload[*isakmp.Nonce](t, mm3).Data, payload[*isakmp.Nonce](t, mm4).Data
	gxy := r.chunk(t, "shared Diffie Hellman secret", 0)
	checkDH(t, ike.Group, gxi, gxr, gxy)
	hdr := mm[0].header
	skeyid := keymat.SKEYIDPSK(h, []byte(interopPSK), ni, nr)
	p1 := keymat.DerivePhase1(h, skeyid, gxy, hdr.InitiatorCookie[:], mm[1].header.ResponderCookie[:])
	equal(t, "SKEYID", skeyid, r.chunk(t, "SKEYID", 0))
	equal(t, "SKEYID_d", p1.D, r.chunk(t, "SKEYID_d", 0))
	equal(t, "SKEYID_a", p1.A, r.chunk(t, "SKEYID_a", 0))
	equal(t, "SKEYID_e", p1.E, r.chunk(t, "SKEYID_e", 0))
	ka := keymat.EncryptionKey(h, p1.E, ike.KeyLen())
	equal(t, "Ka", ka, r.chunk(t, "encryption key Ka", 0))
	iv := keymat.Phase1IV(h, gxi, gxr, ike.BlockSize())
	equal(t, "initial IV", iv, r.chunk(t, "initial IV", 0))

	// Main mode 5 and 6 and the quick mode, decrypted along the IV chain.
	block, err := keymat.NewCBC(ike.Encryption, ka)
	if err != nil {
		t.Fatal(err)
	}
	_, iv = decrypt(t, block, mm[4], iv)
	_, lastP1 := decrypt(t, block, mm[5], iv)
	mid := binary.BigEndian.AppendUint32(nil, qm[0].header.MessageID)
	iv = keymat.Phase2IV(h, lastP1, mid, ike.BlockSize())
	equal(t, "phase-2 IV", iv, r.chunk(t, fmt.Sprintf("next IV for MID %d", qm[0].header.MessageID), 0))
	qm1, iv := decrypt(t, block, qm[0], iv)
	qm2, iv := decrypt(t, block, qm[1], iv)
	decrypt(t, block, qm[2], iv)

	// The quick-mode proposals.
	sa1, sa2 := payload[*isakmp.SA](t, qm1), payload[*isakmp.SA](t, qm2)
	checkESPOffer(t, transforms(sa1), leftESP)
	o, err := proposal.ParseESPTransform(transforms(sa2)[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, got, err := proposal.SelectESP(mustParseESP(t, rightESP), transforms(sa1)); err != nil || got.ESP != o.ESP {
		t.Errorf("SelectESP = %v, %v; strongSwan chose %v", got.ESP, err, o.ESP)
	}

	// KEYMAT (RFC 2409 section 5.5): the initiator-to-responder SA uses the responder's SPI.
	var gxyQM []byte
	if o.Group != 0 {
		gxyQM = r.chunk(t, "DH secret", 0)
	}
	niQM, nrQM := payload[*isakmp.Nonce](t, qm1).Data, payload[*isakmp.Nonce](t, qm2).Data
	n := o.EncKeyLen() + o.IntegKeyLen()
	for _, dir := range []struct {
		role string
		spi  []byte
	}{{"initiator", sa2.Proposals[0].SPI}, {"responder", sa1.Proposals[0].SPI}} {
		k := keymat.QuickModeKeymat(h, p1.D, gxyQM, uint8(isakmp.ProtoESP), dir.spi, niQM, nrQM, n)
		equal(t, "encryption "+dir.role+" key", k[:o.EncKeyLen()], r.chunk(t, "encryption "+dir.role+" key", 0))
		if o.IntegKeyLen() > 0 {
			equal(t, "integrity "+dir.role+" key", k[o.EncKeyLen():], r.chunk(t, "integrity "+dir.role+" key", 0))
		}
	}
}

// checkDH checks package dh agrees with charon on the sizes of public values and of g^xy,
// and accepts charon's public values.
func checkDH(t *testing.T, id uint16, gxi, gxr, gxy []byte) {
	t.Helper()
	g, err := dh.ByID(id)
	if err != nil {
		t.Fatal(err)
	}
	k, err := g.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, peer := range [][]byte{gxi, gxr} {
		z, err := k.SharedSecret(peer)
		if err != nil || len(peer) != g.PublicLen() || len(z) != len(gxy) {
			t.Errorf("group %d: charon's %d-byte public value gives %d bytes, %v; want %d and %d (charon's g^xy)",
				id, len(peer), len(z), err, g.PublicLen(), len(gxy))
		}
	}
}

func equal(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s = %x, charon has %x", what, got, want)
	}
}

func decodePlain(t *testing.T, m capturedMessage) []isakmp.Payload {
	t.Helper()
	d, err := isakmp.Decode(m.raw)
	if err != nil {
		t.Fatal(err)
	}
	return d.Payloads
}

// decrypt decrypts an encrypted message with iv and returns its payloads and the IV of the
// next message: the last ciphertext block.
func decrypt(t *testing.T, b cipher.Block, m capturedMessage, iv []byte) ([]isakmp.Payload, []byte) {
	t.Helper()
	if m.header.Flags&isakmp.FlagEncryption == 0 {
		t.Fatalf("%v message %d is not encrypted", m.header.Exchange, m.header.MessageID)
	}
	body := m.raw[isakmp.HeaderLen:]
	plain, err := keymat.DecryptCBC(b, iv, body)
	if err != nil {
		t.Fatal(err)
	}
	ps, _, _, err := isakmp.DecodePayloads(m.header.NextPayload, plain)
	if err != nil {
		t.Fatalf("%v message %d decrypted to garbage: %v", m.header.Exchange, m.header.MessageID, err)
	}
	return ps, body[len(body)-b.BlockSize():]
}

func mustParseIKE(t *testing.T, s string) []proposal.IKE {
	t.Helper()
	ps, err := proposal.ParseIKE(s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func mustParseESP(t *testing.T, s string) []proposal.ESP {
	t.Helper()
	ps, err := proposal.ParseESP(s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// checkIKEOffer compares charon's phase-1 transforms with what ParseIKE makes of the same
// string, and with our encoding of them (attribute values, in any order).
func checkIKEOffer(t *testing.T, offered []isakmp.Transform, config string) {
	t.Helper()
	var got []proposal.IKE
	for _, tr := range offered {
		p, life, err := proposal.ParseIKETransform(tr)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
		sameAttributes(t, p.String(), p.Transform(tr.Number, life), tr)
	}
	if want := mustParseIKE(t, config); !slices.Equal(got, want) {
		t.Errorf("charon offered %s\nParseIKE(%q) = %s", proposal.FormatIKE(got), config, proposal.FormatIKE(want))
	}
}

func checkESPOffer(t *testing.T, offered []isakmp.Transform, config string) {
	t.Helper()
	var got []proposal.ESP
	for _, tr := range offered {
		o, err := proposal.ParseESPTransform(tr)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, o.ESP)
		sameAttributes(t, o.String(), o.Transform(tr.Number), tr)
	}
	if want := mustParseESP(t, config); !slices.Equal(got, want) {
		t.Errorf("charon offered %s\nParseESP(%q) = %s", proposal.FormatESP(got), config, proposal.FormatESP(want))
	}
}

// sameAttributes compares transform IDs and attribute classes and values, ignoring order
// and whether a small life duration travels as TV or TLV.
func sameAttributes(t *testing.T, name string, ours, theirs isakmp.Transform) {
	t.Helper()
	norm := func(tr isakmp.Transform) []string {
		s := []string{fmt.Sprint("id=", tr.ID)}
		for _, a := range tr.Attributes {
			v, err := a.Uint()
			if err != nil {
				t.Fatal(err)
			}
			s = append(s, fmt.Sprintf("%d=%d", a.Type, v))
		}
		slices.Sort(s)
		return s
	}
	if o, c := norm(ours), norm(theirs); !slices.Equal(o, c) {
		t.Errorf("%s: our transform %v, charon's %v", name, o, c)
	}
}
