package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/datapathtest"
	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/ike/proposal"
)

// TestSAPairNATT checks the translation of a UDP-encapsulated AES-GCM child SA that the
// peer initiated.
func TestSAPairNATT(t *testing.T) {
	sa := testChildSA(t, "aes256gcm16-modp2048")
	sa.ReqID, sa.EncapLocalPort, sa.EncapRemotePort = 7, 4500, 31000
	sa.LocalTS = []ike.TrafficSelector{{Prefix: netip.MustParsePrefix("10.10.1.0/24"), Proto: 6, Port: 443}}
	sa.RemoteTS = []ike.TrafficSelector{{Prefix: netip.MustParsePrefix("10.20.0.0/24"), Proto: 6}}
	sa.Lifetime, sa.LifeKilobytes = time.Hour, 1000
	got, err := saPair(sa, 128)
	if err != nil {
		t.Fatal(err)
	}
	sel := []datapath.Selector{{Local: sa.LocalTS[0].Prefix, Remote: sa.RemoteTS[0].Prefix, Proto: 6, LocalPort: 443}}
	life := datapath.Lifetime{Hard: time.Hour, Soft: time.Hour / 20 * 19, HardBytes: 1024000, SoftBytes: 1024000 / 20 * 19}
	want := datapath.SAPair{
		In: datapath.SA{SPI: sa.SPIIn, Src: sa.Remote, Dst: sa.Local, EncapSrcPort: 31000, EncapDstPort: 4500,
			Enc: datapath.EncAESGCM16, EncKey: sa.EncKeyIn, ReplayWindow: 128, Lifetime: life, ReqID: 7, Selectors: sel},
		Out: datapath.SA{SPI: sa.SPIOut, Src: sa.Local, Dst: sa.Remote, EncapSrcPort: 4500, EncapDstPort: 31000,
			Enc: datapath.EncAESGCM16, EncKey: sa.EncKeyOut, Lifetime: life, ReqID: 7, Selectors: sel},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("saPair =\n%+v\nwant\n%+v", got, want)
	}
}

func TestTransform(t *testing.T) {
	tests := []struct {
		p     proposal.ESP
		enc   datapath.Encryption
		integ datapath.Integrity
		err   string
	}{
		{proposal.ESP{Encryption: proposal.Enc3DES, Integrity: proposal.HashSHA1}, datapath.Enc3DESCBC, datapath.IntegHMACSHA1_96, ""},
		{proposal.ESP{Encryption: proposal.EncAESCBC, KeyBits: 128, Integrity: proposal.HashSHA256}, datapath.EncAESCBC, datapath.IntegHMACSHA256_128, ""},
		{proposal.ESP{Encryption: proposal.EncAESCBC, KeyBits: 256, Integrity: proposal.HashSHA384}, datapath.EncAESCBC, datapath.IntegHMACSHA384_192, ""},
		{proposal.ESP{Encryption: proposal.EncAESCBC, KeyBits: 256, Integrity: proposal.HashSHA512}, datapath.EncAESCBC, datapath.IntegHMACSHA512_256, ""},
		{proposal.ESP{Encryption: proposal.EncAESGCM16, KeyBits: 128}, datapath.EncAESGCM16, datapath.IntegNone, ""},
		{proposal.ESP{Encryption: proposal.EncAESCBC, KeyBits: 128, Integrity: proposal.HashMD5}, 0, 0, "ESP integrity md5: no datapath transform"},
		{proposal.ESP{Encryption: proposal.EncAESCBC, KeyBits: 128}, 0, 0, "want integrity only without AES-GCM"},
	}
	for _, tt := range tests {
		t.Run(tt.p.String(), func(t *testing.T) {
			enc, integ, err := transform(tt.p)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("transform = %v, want error %q", err, tt.err)
				}
				return
			}
			if err != nil || enc != tt.enc || integ != tt.integ {
				t.Errorf("transform = %v %v %v, want %v %v", enc, integ, err, tt.enc, tt.integ)
			}
		})
	}
}

func TestChooseDatapath(t *testing.T) {
	cfg, err := config.Load("../config/testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	noESP := errors.New("kernel cannot install ESP SAs: EPROTONOSUPPORT")
	var probed []Transform
	probe := func(err error) func(context.Context, []Transform) error {
		return func(_ context.Context, ts []Transform) error { probed = ts; return err }
	}
	tests := []struct {
		datapath string
		probe    func(context.Context, []Transform) error
		want     string
		err      string
	}{
		{"auto", probe(nil), KindXFRM, ""},
		{"auto", probe(noESP), KindUserspace, ""},
		{"auto", nil, KindUserspace, ""},
		{"xfrm", probe(noESP), "", "datapath: xfrm: kernel cannot install ESP SAs: EPROTONOSUPPORT (datapath: auto or userspace would use the userspace backend)"},
		{"xfrm", probe(nil), KindXFRM, ""},
		{"userspace", probe(nil), KindUserspace, ""},
	}
	for _, tt := range tests {
		cfg.Datapath = tt.datapath
		d := &daemon{log: slog.New(slog.DiscardHandler), opts: Options{ProbeKernelESP: tt.probe}}
		got, err := d.chooseDatapath(context.Background(), cfg)
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && err.Error() != tt.err) {
			t.Errorf("datapath %s: got %q, %v; want %q, %q", tt.datapath, got, err, tt.want, tt.err)
		}
	}
	if want := []Transform{{Enc: datapath.Enc3DESCBC, Integ: datapath.IntegHMACSHA1_96}}; !reflect.DeepEqual(probed, want) {
		t.Errorf("probed %+v, want the seed's transform %+v", probed, want)
	}
}

// TestKernelReleaseSPI: ReleaseSPI deletes a reserved inbound SPI from the datapath (dst =
// our address) and leaves the SPI of an installed child SA alone.
func TestKernelReleaseSPI(t *testing.T) {
	ctx := context.Background()
	dp := datapathtest.New(0x1000)
	k := newKernel(dp)
	cfg, err := config.Parse(strings.NewReader(peerYAML("192.0.2.1", "192.0.2.2", "10.10.1.0/24", "10.20.0.0/24", "k")))
	if err != nil {
		t.Fatal(err)
	}
	k.configure(cfg)
	sa := testChildSA(t, "3des-sha1")

	reserved, err := k.AllocSPI(ctx, sa.Local, sa.Remote)
	if err != nil {
		t.Fatal(err)
	}
	if sa.SPIIn, err = k.AllocSPI(ctx, sa.Local, sa.Remote); err != nil {
		t.Fatal(err)
	}
	if err := k.InstallChildSA(ctx, sa); err != nil {
		t.Fatal(err)
	}
	for _, spi := range []uint32{reserved, reserved, sa.SPIIn} {
		if err := k.ReleaseSPI(ctx, sa.Local, sa.Remote, spi); err != nil {
			t.Errorf("ReleaseSPI(%08x): %v", spi, err)
		}
	}
	if got := dp.ReservedSPIs(); len(got) != 0 {
		t.Errorf("datapath still reserves %x after ReleaseSPI", got)
	}
	sas, _, _ := dp.Snapshot()
	if _, ok := sas[datapathtest.SAKey{Dst: sa.Local, SPI: sa.SPIIn}]; !ok {
		t.Errorf("ReleaseSPI of installed SPI %08x deleted its inbound SA", sa.SPIIn)
	}
	if _, ok := k.childSA(sa.SPIIn); !ok {
		t.Errorf("ReleaseSPI of installed SPI %08x forgot the child SA", sa.SPIIn)
	}
}
