package proposal

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/ike/isakmp"
)

// tv is a basic (TV) attribute, tlv a variable one.
func tv(t, v uint16) isakmp.Attribute          { return isakmp.BasicAttribute(t, v) }
func tlv(t uint16, v ...byte) isakmp.Attribute { return isakmp.VarAttribute(t, v) }

func ikeT(attrs ...isakmp.Attribute) isakmp.Transform {
	return isakmp.Transform{Number: 1, ID: isakmp.TransformKeyIKE, Attributes: attrs}
}

func espT(id uint8, attrs ...isakmp.Attribute) isakmp.Transform {
	return isakmp.Transform{Number: 1, ID: id, Attributes: attrs}
}

// wireRoundTrip passes attributes through the isakmp codec, as they travel.
func wireRoundTrip(t *testing.T, tr isakmp.Transform) isakmp.Transform {
	t.Helper()
	attrs, err := isakmp.ParseAttributes(isakmp.AppendAttributes(nil, tr.Attributes))
	if err != nil {
		t.Fatalf("transform %d: %v", tr.Number, err)
	}
	tr.Attributes = attrs
	return tr
}

func TestIKETransformEncoding(t *testing.T) {
	tests := []struct {
		p    IKE
		life time.Duration
		want []isakmp.Attribute
	}{
		{IKE{EncAESCBC, 256, HashSHA256, 14}, 24 * time.Hour, []isakmp.Attribute{
			tv(1, 7), tv(14, 256), tv(2, 4), tv(3, 1), tv(4, 14), tv(11, 1), tlv(12, 0, 1, 0x51, 0x80)}},
		{IKE{Enc3DES, 0, HashSHA1, 2}, 8 * time.Hour, []isakmp.Attribute{
			tv(1, 5), tv(2, 2), tv(3, 1), tv(4, 2), tv(11, 1), tv(12, 28800)}},
		{IKE{EncAESCBC, 128, HashSHA512, 20}, 0, []isakmp.Attribute{
			tv(1, 7), tv(14, 128), tv(2, 6), tv(3, 1), tv(4, 20)}},
	}
	for _, tt := range tests {
		got := tt.p.Transform(3, tt.life)
		want := isakmp.Transform{Number: 3, ID: isakmp.TransformKeyIKE, Attributes: tt.want}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%v.Transform(3, %v) =\n%+v\nwant\n%+v", tt.p, tt.life, got, want)
		}
	}
}

func TestESPTransformEncoding(t *testing.T) {
	tests := []struct {
		o      ESPOffer
		wantID uint8
		want   []isakmp.Attribute
	}{
		{ESPOffer{ESP{Enc3DES, 0, HashSHA1, 2}, 8 * time.Hour, 0, isakmp.EncapTunnel}, 3, []isakmp.Attribute{
			tv(1, 1), tv(2, 28800), tv(3, 2), tv(4, 1), tv(5, 2)}},
		{ESPOffer{ESP{EncAESGCM16, 256, HashNone, 14}, time.Hour, 4608000, isakmp.EncapUDPTunnel}, 20, []isakmp.Attribute{
			tv(1, 1), tv(2, 3600), tv(1, 2), tlv(2, 0, 0x46, 0x50, 0), tv(3, 14), tv(4, 3), tv(6, 256)}},
		{ESPOffer{ESP: ESP{EncAESCBC, 128, HashSHA512, 0}}, 12, []isakmp.Attribute{tv(5, 7), tv(6, 128)}},
	}
	for _, tt := range tests {
		got := tt.o.Transform(2)
		want := isakmp.Transform{Number: 2, ID: tt.wantID, Attributes: tt.want}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%+v.Transform(2) =\n%+v\nwant\n%+v", tt.o, got, want)
		}
	}
}

func TestIKETransformRoundTrip(t *testing.T) {
	for _, p := range allIKE(t) {
		for _, life := range []time.Duration{0, time.Hour, 24 * time.Hour, 200 * 24 * time.Hour} {
			tr := wireRoundTrip(t, p.Transform(1, life))
			got, gotLife, err := ParseIKETransform(tr)
			if err != nil || got != p || gotLife != life {
				t.Fatalf("ParseIKETransform(%v, %v) = %v, %v, %v", p, life, got, gotLife, err)
			}
		}
	}
}

func TestESPTransformRoundTrip(t *testing.T) {
	for _, p := range allESP(t) {
		for _, o := range []ESPOffer{
			{ESP: p},
			{p, 8 * time.Hour, 0, isakmp.EncapTunnel},
			{p, time.Hour, 4608000, isakmp.EncapUDPTunnel},
			{p, 0, 100, isakmp.EncapUDPTunnelDraft},
		} {
			tr := wireRoundTrip(t, o.Transform(1))
			got, err := ParseESPTransform(tr)
			if err != nil || got != o {
				t.Fatalf("ParseESPTransform(%+v) = %+v, %v", o, got, err)
			}
		}
	}
}

// TestParseIKETransformOrder accepts attributes in any order and the life pair as TLV.
func TestParseIKETransformOrder(t *testing.T) {
	tr := ikeT(tv(11, 1), tlv(12, 0, 0, 0x70, 0x80), tv(4, 5), tv(3, 1), tv(2, 1), tv(14, 192), tv(1, 7), tv(11, 2), tv(12, 1000))
	p, life, err := ParseIKETransform(tr)
	if err != nil || p != (IKE{EncAESCBC, 192, HashMD5, 5}) || life != 8*time.Hour {
		t.Fatalf("ParseIKETransform = %v, %v, %v", p, life, err)
	}
	// 3DES may carry its fixed key length.
	p, _, err = ParseIKETransform(ikeT(tv(1, 5), tv(14, 192), tv(2, 2), tv(3, 1), tv(4, 2)))
	if err != nil || p != (IKE{Enc3DES, 0, HashSHA1, 2}) {
		t.Fatalf("3DES with key length 192: %v, %v", p, err)
	}
}

func TestParseIKETransformErrors(t *testing.T) {
	base := func(extra ...isakmp.Attribute) []isakmp.Attribute {
		return append([]isakmp.Attribute{tv(1, 7), tv(14, 128), tv(2, 2), tv(3, 1), tv(4, 14)}, extra...)
	}
	tests := []struct {
		name string
		tr   isakmp.Transform
		want string
	}{
		{"transform ID", isakmp.Transform{Number: 4, ID: 2, Attributes: base()}, "IKE transform 4: transform ID 2, want 1 (KEY_IKE)"},
		{"DES", ikeT(tv(1, 1), tv(2, 2), tv(3, 1), tv(4, 2)), "encryption algorithm 1 is not supported, want 5 (3DES-CBC), 7 (AES-CBC)"},
		{"tiger", ikeT(tv(1, 5), tv(2, 3), tv(3, 1), tv(4, 2)), "hash algorithm 3 is not supported, want 1 (MD5), 2 (SHA), 4 (SHA2-256), 5 (SHA2-384), 6 (SHA2-512)"},
		{"RSA signatures", ikeT(tv(1, 5), tv(2, 2), tv(3, 3), tv(4, 2)), "authentication method 3 is not supported, want 1 (pre-shared key)"},
		{"XAUTH PSK", ikeT(tv(1, 5), tv(2, 2), tv(3, 65001), tv(4, 2)), "authentication method 65001 is not supported"},
		{"group 1", ikeT(tv(1, 5), tv(2, 2), tv(3, 1), tv(4, 1)), "group description 1 is not supported, want 2 (modp1024), 5 (modp1536), 14 (modp2048), 15 (modp3072), 16 (modp4096), 19 (ecp256), 20 (ecp384)"},
		{"group 0x10002", ikeT(tv(1, 5), tv(2, 2), tv(3, 1), tlv(4, 1, 0, 2)), "group description 65538 is not supported"},
		{"PRF", ikeT(base(tv(13, 1))...), "PRF attribute (13) with value 1 is not supported"},
		{"group type", ikeT(base(tv(5, 1))...), "attribute class 5 is not supported"},
		{"private class", ikeT(base(tv(16384, 1))...), "attribute class 16384 is not supported"},
		{"repeated", ikeT(base(tv(2, 4))...), "attribute 2 repeated"},
		{"no encryption", ikeT(tv(2, 2), tv(3, 1), tv(4, 2)), "no encryption algorithm attribute (1)"},
		{"no hash", ikeT(tv(1, 5), tv(3, 1), tv(4, 2)), "no hash algorithm attribute (2)"},
		{"no auth", ikeT(tv(1, 5), tv(2, 2), tv(4, 2)), "no authentication method attribute (3)"},
		{"no group", ikeT(tv(1, 5), tv(2, 2), tv(3, 1)), "no group description attribute (4)"},
		{"AES without key length", ikeT(tv(1, 7), tv(2, 2), tv(3, 1), tv(4, 2)), "aes-cbc without key length, want 128, 192 or 256"},
		{"AES-64", ikeT(tv(1, 7), tv(14, 64), tv(2, 2), tv(3, 1), tv(4, 2)), "aes-cbc key length 64, want 128, 192 or 256"},
		{"3DES-128", ikeT(tv(1, 5), tv(14, 128), tv(2, 2), tv(3, 1), tv(4, 2)), "key length 128 for 3DES, want 192 or none"},
		{"life type 3", ikeT(base(tv(11, 3), tv(12, 10))...), "life type 3 is not supported, want 1 (seconds), 2 (kilobytes)"},
		{"duration first", ikeT(base(tv(12, 10))...), "life duration 10 without a preceding life type"},
		{"type twice", ikeT(base(tv(11, 1), tv(11, 2))...), "life type 2 follows life type 1 without a life duration"},
		{"seconds twice", ikeT(base(tv(11, 1), tv(12, 5), tv(11, 1), tv(12, 6))...), "life type 1 repeated"},
		{"dangling type", ikeT(base(tv(11, 1))...), "life type 1 without a life duration"},
		{"zero duration", ikeT(base(tv(11, 1), tv(12, 0))...), "life duration 0, want > 0"},
		{"huge duration", ikeT(base(tv(11, 1), tlv(12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))...), "life duration 18446744073709551615 seconds, want <= 9223372036"},
		{"9-byte value", ikeT(base(tlv(12, 1, 2, 3, 4, 5, 6, 7, 8, 9))...), "attribute 12 value length"},
		{"empty value", ikeT(base(tlv(11))...), "attribute 11 value length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, life, err := ParseIKETransform(tt.tr)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "proposal: IKE transform") {
				t.Fatalf("ParseIKETransform = %v, %v, %v; want error containing %q", p, life, err, tt.want)
			}
		})
	}
}

func TestParseESPTransformErrors(t *testing.T) {
	tests := []struct {
		name string
		tr   isakmp.Transform
		want string
	}{
		{"ESP_DES", espT(2, tv(5, 2)), "transform ID 2 is not supported, want 3 (ESP_3DES), 12 (ESP_AES), 20 (ESP_AES-GCM-16)"},
		{"ESP_NULL", espT(11, tv(5, 2)), "transform ID 11 is not supported"},
		{"GCM-8", espT(18, tv(6, 128)), "transform ID 18 is not supported"},
		{"DES-MAC", espT(3, tv(5, 3)), "authentication algorithm 3 is not supported, want 1 (HMAC-MD5), 2 (HMAC-SHA), 5 (HMAC-SHA2-256), 6 (HMAC-SHA2-384), 7 (HMAC-SHA2-512)"},
		{"GCM with auth", espT(20, tv(6, 128), tv(5, 2)), "authentication algorithm 2 with aes-gcm16, want none"},
		{"CBC without auth", espT(12, tv(6, 128)), "no authentication algorithm attribute (5) with aes-cbc"},
		{"GCM without key length", espT(20), "aes-gcm16 without key length"},
		{"transport", espT(3, tv(5, 2), tv(4, 2)), "encapsulation mode 2 is not supported, want 1 (Tunnel), 3 (UDP-Encapsulated-Tunnel), 61443 (UDP-Encapsulated-Tunnel, NAT-T draft)"},
		{"UDP transport", espT(3, tv(5, 2), tv(4, 4)), "encapsulation mode 4 is not supported"},
		{"draft UDP transport", espT(3, tv(5, 2), tv(4, 61444)), "encapsulation mode 61444 is not supported"},
		{"group 17", espT(3, tv(5, 2), tv(3, 17)), "group description 17 is not supported"},
		{"key rounds", espT(3, tv(5, 2), tv(7, 16)), "attribute class 7 is not supported"},
		{"repeated auth", espT(3, tv(5, 2), tv(5, 1)), "attribute 5 repeated"},
		{"kilobytes twice", espT(3, tv(5, 2), tv(1, 2), tv(2, 5), tv(1, 2), tv(2, 6)), "life type 2 repeated"},
		{"dangling type", espT(3, tv(5, 2), tv(1, 2)), "life type 2 without a life duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseESPTransform(tt.tr)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "proposal: ESP transform 1: ") {
				t.Fatalf("ParseESPTransform = %+v, %v; want error containing %q", o, err, tt.want)
			}
		})
	}
}

// TestParseESPTransformEncap accepts the RFC 3947 and the draft UDP encapsulation values.
func TestParseESPTransformEncap(t *testing.T) {
	for _, mode := range []uint16{0, isakmp.EncapTunnel, isakmp.EncapUDPTunnel, isakmp.EncapUDPTunnelDraft} {
		attrs := []isakmp.Attribute{tv(5, 2)}
		if mode != 0 {
			attrs = append(attrs, tv(4, mode))
		}
		o, err := ParseESPTransform(espT(3, attrs...))
		if err != nil || o.Encap != mode || o.ESP != (ESP{Enc3DES, 0, HashSHA1, 0}) {
			t.Errorf("mode %d: %+v, %v", mode, o, err)
		}
	}
}
