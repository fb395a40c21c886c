package proposal

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/espgw/espgw/ike/isakmp"
)

func mustIKE(t *testing.T, s string) []IKE {
	t.Helper()
	ps, err := ParseIKE(s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func mustESP(t *testing.T, s string) []ESP {
	t.Helper()
	ps, err := ParseESP(s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// offerIKE numbers the transforms from 1 as an initiator would.
func offerIKE(ps []IKE) []isakmp.Transform {
	ts := make([]isakmp.Transform, len(ps))
	for i, p := range ps {
		ts[i] = p.Transform(uint8(i+1), 24*time.Hour)
	}
	return ts
}

func TestSelectIKE(t *testing.T) {
	bad := ikeT(tv(1, 1), tv(2, 2), tv(3, 1), tv(4, 2)) // DES
	bad.Number = 9
	tests := []struct {
		name       string
		configured string
		offered    []isakmp.Transform
		want       string // chosen proposal; "" for a mismatch
		wantIndex  int    // of the chosen transform in offered
		wantErr    string
	}{
		{
			name: "single match", configured: "aes256-sha256-modp2048",
			offered: offerIKE(mustIKE(t, "aes256-sha256-modp2048")), want: "aes256-sha256-modp2048", wantIndex: 0,
		},
		{
			// The peer's preference wins over our order.
			name: "peer order", configured: "aes256-sha256-modp2048, 3des-sha1-modp1024",
			offered: offerIKE(mustIKE(t, "3des-md5-modp1024, 3des-sha1-modp1024, aes256-sha256-modp2048")),
			want:    "3des-sha1-modp1024", wantIndex: 1,
		},
		{
			name: "unknown transform skipped", configured: "3des-sha1-modp1024",
			offered: append([]isakmp.Transform{bad}, offerIKE(mustIKE(t, "3des-sha1-modp1024"))...),
			want:    "3des-sha1-modp1024", wantIndex: 1,
		},
		{
			name: "mismatch", configured: "aes256-sha256-modp2048",
			offered: offerIKE(mustIKE(t, "3des-sha1-modp1024, 3des-md5-modp1024")),
			wantErr: "no proposal chosen: we accept aes256-sha256-modp2048, peer offered 3des-sha1-modp1024, 3des-md5-modp1024",
		},
		{
			name: "mismatch with unknown", configured: "aes128-sha1-modp2048, aes256-sha1-modp2048",
			offered: append(offerIKE(mustIKE(t, "aes128-sha1-modp1024")), bad),
			wantErr: "no proposal chosen: we accept aes128-sha1-modp2048, aes256-sha1-modp2048, peer offered aes128-sha1-modp1024, " +
				"unknown(transform 9: encryption algorithm 1 is not supported, want 5 (3DES-CBC), 7 (AES-CBC))",
		},
		{
			name: "nothing offered", configured: "aes128-sha1-modp2048",
			wantErr: "no proposal chosen: we accept aes128-sha1-modp2048, peer offered nothing",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, p, err := SelectIKE(mustIKE(t, tt.configured), tt.offered)
			if tt.wantErr != "" {
				var npc *NoProposalChosenError
				if !errors.As(err, &npc) || err.Error() != tt.wantErr {
					t.Fatalf("SelectIKE error = %v\nwant %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.String() != tt.want || !reflect.DeepEqual(tr, tt.offered[tt.wantIndex]) {
				t.Fatalf("SelectIKE = %+v %v, want offered[%d] %s", tr, p, tt.wantIndex, tt.want)
			}
		})
	}
}

func TestSelectESP(t *testing.T) {
	offer := func(s string, encap uint16) []isakmp.Transform {
		var ts []isakmp.Transform
		for i, p := range mustESP(t, s) {
			ts = append(ts, ESPOffer{p, time.Hour, 0, encap}.Transform(uint8(i+1)))
		}
		return ts
	}
	tests := []struct {
		name, configured string
		offered          []isakmp.Transform
		want             ESPOffer
		wantErr          string
	}{
		{
			name: "gcm with pfs, draft encapsulation", configured: "aes128-sha1, aes256gcm16-modp2048",
			offered: offer("aes256gcm16-modp2048", isakmp.EncapUDPTunnelDraft),
			want:    ESPOffer{ESP{EncAESGCM16, 256, HashNone, 14}, time.Hour, 0, isakmp.EncapUDPTunnelDraft},
		},
		{
			name: "peer order", configured: "3des-sha1, aes128-sha256",
			offered: offer("aes128-sha256, 3des-sha1", isakmp.EncapTunnel),
			want:    ESPOffer{ESP{EncAESCBC, 128, HashSHA256, 0}, time.Hour, 0, isakmp.EncapTunnel},
		},
		{
			name: "PFS group differs", configured: "aes256gcm16-modp2048",
			offered: offer("aes256gcm16-modp1024, aes256gcm16", isakmp.EncapUDPTunnel),
			wantErr: "no proposal chosen: we accept aes256gcm16-modp2048, peer offered aes256gcm16-modp1024, aes256gcm16",
		},
		{
			name: "transport mode", configured: "3des-sha1",
			offered: []isakmp.Transform{espT(3, tv(5, 2), tv(4, 2))},
			wantErr: "no proposal chosen: we accept 3des-sha1, peer offered unknown(transform 1: encapsulation mode 2 is not supported, " +
				"want 1 (Tunnel), 3 (UDP-Encapsulated-Tunnel), 61443 (UDP-Encapsulated-Tunnel, NAT-T draft))",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, o, err := SelectESP(mustESP(t, tt.configured), tt.offered)
			if tt.wantErr != "" {
				var npc *NoProposalChosenError
				if !errors.As(err, &npc) || err.Error() != tt.wantErr {
					t.Fatalf("SelectESP error = %v\nwant %s", err, tt.wantErr)
				}
				return
			}
			if err != nil || o != tt.want {
				t.Fatalf("SelectESP = %+v, %v; want %+v", o, err, tt.want)
			}
			if back, err := ParseESPTransform(tr); err != nil || back != o {
				t.Fatalf("chosen transform parses as %+v, %v", back, err)
			}
		})
	}
}
