package xfrm

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/espgw/espgw/datapath"
)

// seq returns n bytes 1, 2, 3, ... so key placement is visible.
func seq(n int) datapath.Key {
	k := make(datapath.Key, n)
	for i := range k {
		k[i] = byte(i + 1)
	}
	return k
}

func baseSA() datapath.SA {
	return datapath.SA{
		SPI:          0xc0ffee01,
		Src:          netip.MustParseAddr("198.51.100.1"),
		Dst:          netip.MustParseAddr("203.0.113.2"),
		Enc:          datapath.EncAESCBC,
		EncKey:       seq(32),
		Integ:        datapath.IntegHMACSHA256_128,
		IntegKey:     seq(32),
		ReplayWindow: 32,
		Lifetime:     datapath.Lifetime{SoftBytes: 1000, HardBytes: 2000, Soft: 2700 * time.Second, Hard: 3600 * time.Second},
		ReqID:        7,
		Selectors: []datapath.Selector{{
			Local:      netip.MustParsePrefix("10.1.0.0/24"),
			Remote:     netip.MustParsePrefix("10.2.0.0/16"),
			Proto:      17,
			LocalPort:  53,
			RemotePort: 5353,
		}},
	}
}

func TestStateForAlgorithms(t *testing.T) {
	type algo struct {
		name   string
		key    []byte
		trunc  int
		icvLen int
	}
	tests := []struct {
		name         string
		enc          datapath.Encryption
		encKey       datapath.Key
		integ        datapath.Integrity
		integKey     datapath.Key
		crypt, auth  *algo
		aead         *algo
		wantErrorHas string
	}{
		{name: "3des-sha1", enc: datapath.Enc3DESCBC, encKey: seq(24), integ: datapath.IntegHMACSHA1_96, integKey: seq(20),
			crypt: &algo{name: "cbc(des3_ede)", key: seq(24)}, auth: &algo{name: "hmac(sha1)", key: seq(20), trunc: 96}},
		{name: "aes128-sha256", enc: datapath.EncAESCBC, encKey: seq(16), integ: datapath.IntegHMACSHA256_128, integKey: seq(32),
			crypt: &algo{name: "cbc(aes)", key: seq(16)}, auth: &algo{name: "hmac(sha256)", key: seq(32), trunc: 128}},
		{name: "aes192-sha384", enc: datapath.EncAESCBC, encKey: seq(24), integ: datapath.IntegHMACSHA384_192, integKey: seq(48),
			crypt: &algo{name: "cbc(aes)", key: seq(24)}, auth: &algo{name: "hmac(sha384)", key: seq(48), trunc: 192}},
		{name: "aes256-sha512", enc: datapath.EncAESCBC, encKey: seq(32), integ: datapath.IntegHMACSHA512_256, integKey: seq(64),
			crypt: &algo{name: "cbc(aes)", key: seq(32)}, auth: &algo{name: "hmac(sha512)", key: seq(64), trunc: 256}},
		{name: "aes128gcm16", enc: datapath.EncAESGCM16, encKey: seq(20),
			aead: &algo{name: "rfc4106(gcm(aes))", key: seq(20), icvLen: 128}},
		{name: "aes256gcm16", enc: datapath.EncAESGCM16, encKey: seq(36),
			aead: &algo{name: "rfc4106(gcm(aes))", key: seq(36), icvLen: 128}},
		{name: "gcm without salt", enc: datapath.EncAESGCM16, encKey: seq(32), wantErrorHas: "key length 32"},
		{name: "gcm with integrity", enc: datapath.EncAESGCM16, encKey: seq(20), integ: datapath.IntegHMACSHA1_96, integKey: seq(20), wantErrorHas: "want none (AEAD)"},
		{name: "cbc without integrity", enc: datapath.EncAESCBC, encKey: seq(16), wantErrorHas: "integrity 0"},
		{name: "aes short key", enc: datapath.EncAESCBC, encKey: seq(15), integ: datapath.IntegHMACSHA1_96, integKey: seq(20), wantErrorHas: "cbc(aes) key length 15"},
		{name: "sha1 long key", enc: datapath.EncAESCBC, encKey: seq(16), integ: datapath.IntegHMACSHA1_96, integKey: seq(32), wantErrorHas: "hmac(sha1) key length 32"},
		{name: "null encryption", enc: datapath.EncNone, integ: datapath.IntegHMACSHA1_96, integKey: seq(20), wantErrorHas: "encryption 0"},
	}
	check := func(t *testing.T, what string, got *netlink.XfrmStateAlgo, want *algo) {
		t.Helper()
		switch {
		case want == nil && got != nil:
			t.Errorf("%s = %s, want none", what, got.Name)
		case want == nil:
		case got == nil:
			t.Errorf("%s missing, want %s", what, want.name)
		default:
			if got.Name != want.name || !bytes.Equal(got.Key, want.key) || got.TruncateLen != want.trunc || got.ICVLen != want.icvLen {
				t.Errorf("%s = {%s key %x trunc %d icv %d}, want {%s key %x trunc %d icv %d}", what,
					got.Name, []byte(got.Key), got.TruncateLen, got.ICVLen, want.name, want.key, want.trunc, want.icvLen)
			}
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sa := baseSA()
			sa.Enc, sa.EncKey, sa.Integ, sa.IntegKey = tt.enc, tt.encKey, tt.integ, tt.integKey
			st, err := stateFor(sa, dirOut)
			if tt.wantErrorHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrorHas) {
					t.Fatalf("stateFor error = %v, want one containing %q", err, tt.wantErrorHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("stateFor: %v", err)
			}
			check(t, "Crypt", st.Crypt, tt.crypt)
			check(t, "Auth", st.Auth, tt.auth)
			check(t, "Aead", st.Aead, tt.aead)
			if tt.aead != nil && !bytes.Equal(st.Aead.Key[len(st.Aead.Key)-4:], sa.EncKey[len(sa.EncKey)-4:]) {
				t.Errorf("AEAD salt %x is not the last 4 key bytes", st.Aead.Key[len(st.Aead.Key)-4:])
			}
			// The state must own its keys: wiping it must not touch the caller's SA.
			wipe(st)
			if sa.EncKey[0] != 1 {
				t.Errorf("wipe cleared the caller's encryption key")
			}
		})
	}
}

func TestStateForFields(t *testing.T) {
	tests := []struct {
		name               string
		dir                direction
		mutate             func(*datapath.SA)
		wantSrc, wantDst   string // selector prefixes
		wantSport, wantDpt int
		wantReplay         int
		wantEncap          *netlink.XfrmStateEncap
		wantLimits         netlink.XfrmStateLimits
	}{
		{
			name: "outbound raw ESP", dir: dirOut,
			wantSrc: "10.1.0.0/24", wantDst: "10.2.0.0/16", wantSport: 53, wantDpt: 5353,
			wantLimits: netlink.XfrmStateLimits{ByteSoft: 1000, ByteHard: 2000, TimeSoft: 2700, TimeHard: 3600},
		},
		{
			name: "inbound NAT-T", dir: dirIn,
			mutate:  func(sa *datapath.SA) { sa.EncapSrcPort, sa.EncapDstPort = 4500, 4501 },
			wantSrc: "10.2.0.0/16", wantDst: "10.1.0.0/24", wantSport: 5353, wantDpt: 53, wantReplay: 32,
			wantEncap:  &netlink.XfrmStateEncap{Type: netlink.XFRM_ENCAP_ESPINUDP, SrcPort: 4500, DstPort: 4501},
			wantLimits: netlink.XfrmStateLimits{ByteSoft: 1000, ByteHard: 2000, TimeSoft: 2700, TimeHard: 3600},
		},
		{
			name: "inbound wide window capped, sub-second lifetime rounded up", dir: dirIn,
			mutate: func(sa *datapath.SA) {
				sa.ReplayWindow = 1024
				sa.Lifetime = datapath.Lifetime{Soft: 300 * time.Millisecond, Hard: 1500 * time.Millisecond}
			},
			wantSrc: "10.2.0.0/16", wantDst: "10.1.0.0/24", wantSport: 5353, wantDpt: 53, wantReplay: 32,
			wantLimits: netlink.XfrmStateLimits{TimeSoft: 1, TimeHard: 2},
		},
		{
			name: "unmasked selector prefix", dir: dirOut,
			mutate:  func(sa *datapath.SA) { sa.Selectors[0].Local = netip.MustParsePrefix("10.1.0.77/24") },
			wantSrc: "10.1.0.0/24", wantDst: "10.2.0.0/16", wantSport: 53, wantDpt: 5353,
			wantLimits: netlink.XfrmStateLimits{ByteSoft: 1000, ByteHard: 2000, TimeSoft: 2700, TimeHard: 3600},
		},
		{
			// The kernel picks an outbound state only if its selector matches the flow: with
			// two combinations, the state's must match both, the policies tell them apart.
			// It covers no remote subnet but the negotiated one.
			name: "several combinations", dir: dirOut,
			mutate: func(sa *datapath.SA) {
				other := sa.Selectors[0]
				other.Local = netip.MustParsePrefix("10.3.0.0/24")
				sa.Selectors = append(sa.Selectors, other)
			},
			wantSrc: "10.0.0.0/14", wantDst: "10.2.0.0/16", wantSport: 53, wantDpt: 5353,
			wantLimits: netlink.XfrmStateLimits{ByteSoft: 1000, ByteHard: 2000, TimeSoft: 2700, TimeHard: 3600},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sa := baseSA()
			if tt.mutate != nil {
				tt.mutate(&sa)
			}
			st, err := stateFor(sa, tt.dir)
			if err != nil {
				t.Fatalf("stateFor: %v", err)
			}
			if !st.Src.Equal(net.ParseIP("198.51.100.1")) || !st.Dst.Equal(net.ParseIP("203.0.113.2")) {
				t.Errorf("tunnel %v -> %v, want 198.51.100.1 -> 203.0.113.2", st.Src, st.Dst)
			}
			if st.Proto != netlink.XFRM_PROTO_ESP || st.Mode != netlink.XFRM_MODE_TUNNEL {
				t.Errorf("proto %v mode %v, want esp tunnel", st.Proto, st.Mode)
			}
			if st.Spi != 0xc0ffee01 || st.Reqid != 7 {
				t.Errorf("spi 0x%x reqid %d, want 0xc0ffee01 (host order; netlink swaps) and 7", st.Spi, st.Reqid)
			}
			if st.ReplayWindow != tt.wantReplay {
				t.Errorf("replay window %d, want %d", st.ReplayWindow, tt.wantReplay)
			}
			if st.Limits != tt.wantLimits {
				t.Errorf("limits %+v, want %+v", st.Limits, tt.wantLimits)
			}
			switch {
			case tt.wantEncap == nil && st.Encap != nil:
				t.Errorf("encap %v, want none", st.Encap)
			case tt.wantEncap != nil && (st.Encap == nil || st.Encap.Type != tt.wantEncap.Type ||
				st.Encap.SrcPort != tt.wantEncap.SrcPort || st.Encap.DstPort != tt.wantEncap.DstPort):
				t.Errorf("encap %v, want %v", st.Encap, tt.wantEncap)
			}
			sel := st.Selector
			if sel.Src.String() != tt.wantSrc || sel.Dst.String() != tt.wantDst || sel.Proto != 17 ||
				sel.SrcPort != tt.wantSport || sel.DstPort != tt.wantDpt {
				t.Errorf("selector %v:%d -> %v:%d proto %d, want %s:%d -> %s:%d proto 17",
					sel.Src, sel.SrcPort, sel.Dst, sel.DstPort, sel.Proto, tt.wantSrc, tt.wantSport, tt.wantDst, tt.wantDpt)
			}
		})
	}
}

func TestStateForRejects(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*datapath.SA)
		wantHas string
	}{
		{"reserved SPI", func(sa *datapath.SA) { sa.SPI = 0xff }, "SPI 0x000000ff"},
		{"mixed tunnel families", func(sa *datapath.SA) { sa.Dst = netip.MustParseAddr("2001:db8::1") }, "one family"},
		{"missing selector", func(sa *datapath.SA) { sa.Selectors = nil }, "selector"},
		{"one encap port", func(sa *datapath.SA) { sa.EncapDstPort = 4500 }, "UDP encapsulation ports 0 -> 4500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sa := baseSA()
			tt.mutate(&sa)
			if _, err := stateFor(sa, dirIn); err == nil || !strings.Contains(err.Error(), tt.wantHas) {
				t.Fatalf("stateFor error = %v, want one containing %q", err, tt.wantHas)
			}
		})
	}
}

func TestStateForKeepsKeysOutOfErrors(t *testing.T) {
	sa := baseSA()
	sa.EncKey = datapath.Key("SECRETSECRETSECRETSECRET1") // wrong length
	_, err := stateFor(sa, dirOut)
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("stateFor error = %v, want an error without the key", err)
	}
}

// TestCovering: the state selector of several combinations holds each side's prefixes and
// as little else as one prefix can.
func TestCovering(t *testing.T) {
	for _, tt := range []struct{ a, b, want string }{
		{"10.1.0.0/24", "10.1.1.0/24", "10.1.0.0/23"},
		{"10.1.0.0/16", "10.1.2.0/24", "10.1.0.0/16"},
		{"10.1.2.0/24", "10.1.0.0/16", "10.1.0.0/16"},
		{"10.1.0.0/16", "10.3.0.0/16", "10.0.0.0/14"},
		{"10.1.0.0/24", "10.1.0.0/24", "10.1.0.0/24"},
		{"10.0.0.0/8", "192.168.0.0/16", "0.0.0.0/0"},
		{"10.1.0.7/32", "10.1.0.6/32", "10.1.0.6/31"},
		{"10.1.0.0/24", "2001:db8::/32", "0.0.0.0/0"},
	} {
		if got := covering(netip.MustParsePrefix(tt.a), netip.MustParsePrefix(tt.b)); got.String() != tt.want {
			t.Errorf("covering(%s, %s) = %s, want %s", tt.a, tt.b, got, tt.want)
		}
	}
}
