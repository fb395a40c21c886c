package proposal

import "testing"

func TestHashNewMatchesSize(t *testing.T) {
	for h := HashMD5; h <= HashSHA512; h++ {
		if got := h.New().Size(); got != h.Size() {
			t.Errorf("%v: New().Size() = %d, Size() = %d", h, got, h.Size())
		}
	}
	if HashNone.Size() != 0 {
		t.Errorf("HashNone.Size() = %d", HashNone.Size())
	}
}

func TestIKEMetadata(t *testing.T) {
	tests := []struct {
		p                 IKE
		keyLen, blockSize int
	}{
		{IKE{Enc3DES, 0, HashSHA1, 2}, 24, 8},
		{IKE{EncAESCBC, 128, HashSHA1, 14}, 16, 16},
		{IKE{EncAESCBC, 192, HashSHA256, 14}, 24, 16},
		{IKE{EncAESCBC, 256, HashSHA512, 20}, 32, 16},
	}
	for _, tt := range tests {
		if tt.p.KeyLen() != tt.keyLen || tt.p.BlockSize() != tt.blockSize {
			t.Errorf("%v: KeyLen %d BlockSize %d, want %d %d", tt.p, tt.p.KeyLen(), tt.p.BlockSize(), tt.keyLen, tt.blockSize)
		}
	}
}

func TestESPMetadata(t *testing.T) {
	tests := []struct {
		p                                 ESP
		encKey, integKey, icv, iv, blocks int
	}{
		{ESP{Enc3DES, 0, HashSHA1, 0}, 24, 20, 12, 8, 8},          // RFC 2451, 2404
		{ESP{Enc3DES, 0, HashMD5, 0}, 24, 16, 12, 8, 8},           // RFC 2403
		{ESP{EncAESCBC, 128, HashSHA256, 0}, 16, 32, 16, 16, 16},  // RFC 3602, 4868
		{ESP{EncAESCBC, 192, HashSHA384, 14}, 24, 48, 24, 16, 16}, // RFC 4868
		{ESP{EncAESCBC, 256, HashSHA512, 14}, 32, 64, 32, 16, 16}, // RFC 4868
		{ESP{EncAESGCM16, 128, HashNone, 0}, 20, 0, 16, 8, 4},     // RFC 4106
		{ESP{EncAESGCM16, 256, HashNone, 19}, 36, 0, 16, 8, 4},
	}
	for _, tt := range tests {
		p := tt.p
		got := [5]int{p.EncKeyLen(), p.IntegKeyLen(), p.ICVLen(), p.IVLen(), p.BlockSize()}
		want := [5]int{tt.encKey, tt.integKey, tt.icv, tt.iv, tt.blocks}
		if got != want {
			t.Errorf("%v: EncKeyLen, IntegKeyLen, ICVLen, IVLen, BlockSize = %v, want %v", p, got, want)
		}
	}
}

func TestGroupName(t *testing.T) {
	tests := []struct {
		id   uint16
		want string
	}{
		{2, "modp1024"}, {5, "modp1536"}, {14, "modp2048"}, {15, "modp3072"}, {16, "modp4096"},
		{19, "ecp256"}, {20, "ecp384"}, {21, "group21"}, {0, "group0"},
	}
	for _, tt := range tests {
		if got := GroupName(tt.id); got != tt.want {
			t.Errorf("GroupName(%d) = %q, want %q", tt.id, got, tt.want)
		}
		if tt.want[:5] != "group" {
			// Every keyword parses back to its group.
			p, err := ParseIKE("aes128-sha1-" + tt.want)
			if err != nil || len(p) != 1 || p[0].Group != tt.id {
				t.Errorf("ParseIKE(%q) = %v, %v; want group %d", "aes128-sha1-"+tt.want, p, err, tt.id)
			}
		}
	}
}
