package proposal

import (
	"encoding/hex"
	"testing"
	"time"

	"github.com/espgw/espgw/ike/isakmp"
)

// capturedIKEAttrs are the attributes of the phase-1 transform in frame 1 of
// shared/testdata/pcap/ipsec-ikev1-isakmp-main-mode.pcap: aes128-sha1-modp1024, PSK, 86400 s.
const capturedIKEAttrs = "80010007800e0080800200028004000280030001800b0001000c000400015180"

func TestCapturedIKETransform(t *testing.T) {
	b, _ := hex.DecodeString(capturedIKEAttrs)
	attrs, err := isakmp.ParseAttributes(b)
	if err != nil {
		t.Fatal(err)
	}
	p, life, err := ParseIKETransform(isakmp.Transform{Number: 1, ID: isakmp.TransformKeyIKE, Attributes: attrs})
	if err != nil || p.String() != "aes128-sha1-modp1024" || life != 24*time.Hour {
		t.Fatalf("captured transform = %v, %v, %v", p, life, err)
	}
}

// FuzzParseIKETransform decodes attribute bytes as a peer would send them. Whatever
// parses must survive our own encoding unchanged and print as a parseable proposal.
func FuzzParseIKETransform(f *testing.F) {
	b, _ := hex.DecodeString(capturedIKEAttrs)
	f.Add(uint8(isakmp.TransformKeyIKE), b)
	for _, s := range []string{"3des-md5-modp1024", "aes256-sha512-ecp384", "aes192-sha384-modp4096"} {
		ps, _ := ParseIKE(s)
		f.Add(uint8(isakmp.TransformKeyIKE), isakmp.AppendAttributes(nil, ps[0].Transform(1, 28800*time.Second).Attributes))
	}
	f.Add(uint8(2), []byte{0x80, 0x0d, 0, 1})
	f.Fuzz(func(t *testing.T, id uint8, b []byte) {
		attrs, err := isakmp.ParseAttributes(b)
		if err != nil {
			return
		}
		p, life, err := ParseIKETransform(isakmp.Transform{Number: 1, ID: id, Attributes: attrs})
		if err != nil {
			return
		}
		again, againLife, err := ParseIKETransform(p.Transform(1, life))
		if err != nil || again != p || againLife != life {
			t.Fatalf("%v/%v re-encoded parses as %v/%v, %v", p, life, again, againLife, err)
		}
		if ps, err := ParseIKE(p.String()); err != nil || len(ps) != 1 || ps[0] != p {
			t.Fatalf("ParseIKE(%q) = %v, %v", p, ps, err)
		}
	})
}

// FuzzParseESPTransform is FuzzParseIKETransform for quick-mode ESP transforms.
func FuzzParseESPTransform(f *testing.F) {
	for _, o := range []ESPOffer{
		{ESP{Enc3DES, 0, HashSHA1, 2}, 28800 * time.Second, 0, isakmp.EncapTunnel},
		{ESP{EncAESGCM16, 256, HashNone, 14}, time.Hour, 4608000, isakmp.EncapUDPTunnel},
		{ESP{EncAESCBC, 128, HashSHA256, 0}, 0, 0, isakmp.EncapUDPTunnelDraft},
	} {
		tr := o.Transform(1)
		f.Add(tr.ID, isakmp.AppendAttributes(nil, tr.Attributes))
	}
	f.Fuzz(func(t *testing.T, id uint8, b []byte) {
		attrs, err := isakmp.ParseAttributes(b)
		if err != nil {
			return
		}
		o, err := ParseESPTransform(isakmp.Transform{Number: 1, ID: id, Attributes: attrs})
		if err != nil {
			return
		}
		if again, err := ParseESPTransform(o.Transform(1)); err != nil || again != o {
			t.Fatalf("%+v re-encoded parses as %+v, %v", o, again, err)
		}
		if ps, err := ParseESP(o.ESP.String()); err != nil || len(ps) != 1 || ps[0] != o.ESP {
			t.Fatalf("ParseESP(%q) = %v, %v", o.ESP, ps, err)
		}
	})
}
