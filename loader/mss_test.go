package loader

import (
	"testing"

	"github.com/espgw/espgw/datapath"
)

func TestClampMSS(t *testing.T) {
	tests := []struct {
		name  string
		mtu   int
		natt  bool
		enc   datapath.Encryption
		integ datapath.Integrity
		want  uint16
	}{
		// 1500 − 20 − 8 − IV − (block−1) − 2 − ICV − 40, minus 8 with NAT-T.
		{"3des sha1", 1500, false, datapath.Enc3DESCBC, datapath.IntegHMACSHA1_96, 1500 - 20 - 8 - 8 - 7 - 2 - 12 - 40},
		{"3des sha1 natt", 1500, true, datapath.Enc3DESCBC, datapath.IntegHMACSHA1_96, 1395},
		{"aes-cbc sha1", 1500, false, datapath.EncAESCBC, datapath.IntegHMACSHA1_96, 1387},
		{"aes-cbc sha256 natt", 1500, true, datapath.EncAESCBC, datapath.IntegHMACSHA256_128, 1375},
		{"aes-cbc sha384", 1500, false, datapath.EncAESCBC, datapath.IntegHMACSHA384_192, 1375},
		{"aes-cbc sha512 natt", 1500, true, datapath.EncAESCBC, datapath.IntegHMACSHA512_256, 1359},
		{"aes-gcm16", 1500, false, datapath.EncAESGCM16, datapath.IntegNone, 1403},
		{"aes-gcm16 natt", 1500, true, datapath.EncAESGCM16, datapath.IntegNone, 1395},
		{"aes-gcm16 natt pppoe", 1492, true, datapath.EncAESGCM16, datapath.IntegNone, 1387},
		{"libipsec tun 1400", 1400, true, datapath.EncAESCBC, datapath.IntegHMACSHA1_96, 1279},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ClampMSS(tt.mtu, tt.natt, tt.enc, tt.integ)
			if err != nil || got != tt.want {
				t.Fatalf("ClampMSS = %d, %v; want %d", got, err, tt.want)
			}
			// The largest segment, padded as RFC 4303 section 2.4 requires, must fit.
			iv, block, _ := espGeometry(tt.enc)
			icv, _ := icvLen(tt.enc, tt.integ)
			plain := int(got) + innerIPTCPLen + espTrailerLen
			padded := (plain + block - 1) / block * block
			size := outerIPv4Len + espHeaderLen + iv + padded + icv
			if tt.natt {
				size += nattUDPLen
			}
			if size > tt.mtu {
				t.Errorf("a %d-byte segment becomes a %d-byte ESP packet, over the %d MTU", got, size, tt.mtu)
			}
		})
	}
}

func TestClampMSSErrors(t *testing.T) {
	tests := []struct {
		name  string
		mtu   int
		enc   datapath.Encryption
		integ datapath.Integrity
	}{
		{"null encryption", 1500, datapath.EncNone, datapath.IntegHMACSHA1_96},
		{"gcm with hmac", 1500, datapath.EncAESGCM16, datapath.IntegHMACSHA1_96},
		{"cbc without integrity", 1500, datapath.EncAESCBC, datapath.IntegNone},
		{"mtu too small", 600, datapath.EncAESCBC, datapath.IntegHMACSHA1_96},
		{"mtu too large", 70000, datapath.EncAESCBC, datapath.IntegHMACSHA1_96},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := ClampMSS(tt.mtu, true, tt.enc, tt.integ); err == nil {
				t.Fatalf("ClampMSS = %d, nil; want an error", got)
			}
		})
	}
}
