package proposal

import (
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/internal/pcapfile"
)

func TestParseIKEv2(t *testing.T) {
	tests := []struct {
		in   string
		want string // the parsed proposals in swanctl syntax
	}{
		{"aes256-sha256-modp2048", "aes256-sha256-prfsha256-modp2048"},
		{"aes128gcm16-prfsha256-ecp256", "aes128gcm16-prfsha256-ecp256"},
		{"AES256GCM16-PRFSHA384-MODP2048", "aes256gcm16-prfsha384-modp2048"},
		{"3des-sha1-modp1024", "3des-sha1-prfsha1-modp1024"},
		{"aes256-sha256-prfsha512-modp2048", "aes256-sha256-prfsha512-modp2048"},
		{"aes128-aes256-sha1-sha256-modp2048-ecp256", "aes128-sha1-prfsha1-modp2048, aes128-sha1-prfsha1-ecp256, " +
			"aes128-sha256-prfsha256-modp2048, aes128-sha256-prfsha256-ecp256, aes256-sha1-prfsha1-modp2048, " +
			"aes256-sha1-prfsha1-ecp256, aes256-sha256-prfsha256-modp2048, aes256-sha256-prfsha256-ecp256"},
		{"aes256gcm16-prfsha256-modp2048, aes256-sha256-modp2048", "aes256gcm16-prfsha256-modp2048, aes256-sha256-prfsha256-modp2048"},
	}
	for _, tt := range tests {
		ps, err := ParseIKEv2(tt.in)
		if err != nil {
			t.Errorf("ParseIKEv2(%q): %v", tt.in, err)
			continue
		}
		if got := join(ps); got != tt.want {
			t.Errorf("ParseIKEv2(%q) = %s, want %s", tt.in, got, tt.want)
		}
		if again, err := ParseIKEv2(join(ps)); err != nil || !reflect.DeepEqual(again, ps) {
			t.Errorf("ParseIKEv2(String) = %v, %v; want %v", again, err, ps)
		}
	}
	for _, tt := range []struct{ in, want string }{
		{"aes128gcm16-ecp256", "AES-GCM needs a PRF"},
		{"aes128gcm16-sha256-prfsha256-ecp256", "want no integrity keyword"},
		{"aes256-modp2048", "needs an integrity algorithm"},
		{"aes256-sha256", "needs a cipher"},
		{"aes256-aes128gcm16-sha256-modp2048", "mixes AES-GCM"},
		{"aes256-sha256-modp2048-noesn", `unknown IKEv2 keyword "noesn"`},
		{"aes256-sha256-modp2048-prfsha3", `unknown IKEv2 keyword "prfsha3"`},
	} {
		_, err := ParseIKEv2(tt.in)
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseIKEv2(%q) error %v, want ErrSyntax saying %q", tt.in, err, tt.want)
		}
	}
	// IKEv1 keeps its vocabulary: no PRF keywords, no AES-GCM.
	for _, in := range []string{"aes256-sha256-prfsha256-modp2048", "aes128gcm16-prfsha256-ecp256"} {
		if _, err := ParseIKE(in); err == nil {
			t.Errorf("ParseIKE(%q) accepted an IKEv2-only keyword", in)
		}
	}
}

// TestIKEv2ProposalMatchesStrongSwan: the SA payload espgw builds for aes256-sha256-modp2048
// is byte for byte the one strongSwan sent for the same proposal.
func TestIKEv2ProposalMatchesStrongSwan(t *testing.T) {
	msgs, err := pcapfile.ReadIKE(filepath.Join("..", "ikev2", "testdata", "strongswan-ikev2-aes256-sha256-modp2048.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ikev2.Decode(msgs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	theirs := ikev2.Find[*ikev2.SA](m.Payloads)
	ps, _ := ParseIKEv2("aes256-sha256-modp2048")
	ours := &ikev2.SA{Proposals: []ikev2.Proposal{ps[0].Proposal(1, nil)}}
	if !reflect.DeepEqual(ours, theirs) {
		t.Errorf("SA payload\n ours %+v\n charon %+v", ours, theirs)
	}
	chosen, p, err := SelectIKEv2(ps, theirs.Proposals)
	if err != nil || p != ps[0] || !reflect.DeepEqual(chosen, theirs.Proposals[0]) {
		t.Errorf("SelectIKEv2(charon's offer) = %+v, %v, %v", chosen, p, err)
	}
}

// offer is a strongSwan-style proposal: several transforms of each type in one proposal.
func offer(n uint8, proto ikev2.ProtocolID, spi []byte, ts ...ikev2.Transform) ikev2.Proposal {
	return ikev2.Proposal{Number: n, Protocol: proto, SPI: spi, Transforms: ts}
}

func TestSelectIKEv2(t *testing.T) {
	aes := func(bits uint16) ikev2.Transform {
		return ikev2.Transform{Type: ikev2.TransformENCR, ID: ikev2.EncrAESCBC,
			Attributes: []ikev2.Attribute{{Type: ikev2.AttributeKeyLength, TV: true, Value: bits}}}
	}
	gcm128 := ikev2.Transform{Type: ikev2.TransformENCR, ID: ikev2.EncrAESGCM16,
		Attributes: []ikev2.Attribute{{Type: ikev2.AttributeKeyLength, TV: true, Value: 128}}}
	integ := ikev2.Transform{Type: ikev2.TransformINTEG, ID: ikev2.IntegSHA256128}
	prf := ikev2.Transform{Type: ikev2.TransformPRF, ID: ikev2.PRFHMACSHA256}
	dh := func(g uint16) ikev2.Transform { return ikev2.Transform{Type: ikev2.TransformDH, ID: g} }
	peer := []ikev2.Proposal{
		offer(1, ikev2.ProtocolIKE, nil, aes(128), aes(256), integ, prf, dh(19), dh(14)),
		offer(2, ikev2.ProtocolIKE, nil, gcm128, prf, dh(19)),
	}
	ours, _ := ParseIKEv2("aes128gcm16-prfsha256-ecp256, aes256-sha256-modp2048")
	chosen, p, err := SelectIKEv2(ours, peer)
	want := offer(1, ikev2.ProtocolIKE, nil, aes(256), integ, prf, dh(14))
	if err != nil || p != ours[1] || !reflect.DeepEqual(chosen, want) {
		t.Errorf("SelectIKEv2 = %+v, %v, %v; want the peer's first proposal narrowed to aes256-sha256-modp2048", chosen, p, err)
	}
	_, _, err = SelectIKEv2(ours[:1], peer[:1])
	var npc *NoProposalChosenError
	if !errors.As(err, &npc) || npc.Theirs != "aes128-aes256-sha256-prfsha256-ecp256-modp2048" ||
		npc.Ours != "aes128gcm16-prfsha256-ecp256" {
		t.Errorf("mismatch error %v, want both sides in swanctl syntax", err)
	}

	// ESP: IKE_AUTH ignores the PFS group; CREATE_CHILD_SA needs it.
	esp, _ := ParseESP("aes128gcm16-modp2048")
	spi := []byte{1, 2, 3, 4}
	offered := []ikev2.Proposal{offer(1, ikev2.ProtocolESP, spi, gcm128, ikev2.Transform{Type: ikev2.TransformESN, ID: ikev2.ESNNone})}
	if _, e, err := SelectESPv2(esp, offered, false); err != nil || e.Group != 0 {
		t.Errorf("SelectESPv2 in IKE_AUTH = %v, %v; want aes128gcm16 without PFS", e, err)
	}
	if _, _, err := SelectESPv2(esp, offered, true); !errors.As(err, &npc) || npc.Theirs != "esp:aes128gcm16" {
		t.Errorf("SelectESPv2 in CREATE_CHILD_SA without the group: %v, want no proposal chosen", err)
	}
	withDH := esp[0].IKEv2Proposal(1, spi, true)
	if _, e, err := SelectESPv2(esp, []ikev2.Proposal{withDH}, true); err != nil || e != esp[0] {
		t.Errorf("SelectESPv2(our own proposal) = %v, %v", e, err)
	}
}

// FuzzParseIKEv2 parses configuration text: whatever parses prints as text that parses to the
// same proposals, and selecting from our own wire proposals finds each of them.
func FuzzParseIKEv2(f *testing.F) {
	for _, s := range []string{"aes256-sha256-modp2048", "aes128gcm16-prfsha256-ecp256", "3des-sha1-modp1024, aes-sha512-prfsha384-ecp384", "aes256gcm16"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseIKEv2(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v does not wrap ErrSyntax", err)
			}
			return
		}
		again, err := ParseIKEv2(join(ps))
		if err != nil || !reflect.DeepEqual(again, ps) {
			t.Fatalf("%q: String %q parses as %v, %v", s, join(ps), again, err)
		}
		for i, p := range ps {
			if _, got, err := SelectIKEv2(ps, []ikev2.Proposal{p.Proposal(uint8(i+1), nil)}); err != nil || got != ps[slices.Index(ps, p)] {
				t.Fatalf("%v: SelectIKEv2 of its own proposal = %v, %v", p, got, err)
			}
		}
	})
}
