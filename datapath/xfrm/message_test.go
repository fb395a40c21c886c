package xfrm

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
)

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// putSelector writes a struct xfrm_selector for src -> dst.
func putSelector(b []byte, src, dst netip.Prefix, proto uint8, sport, dport uint16) {
	family := uint16(unix.AF_INET)
	if src.Addr().Is6() {
		family = unix.AF_INET6
	}
	copy(b[selDaddr:], dst.Addr().AsSlice())
	copy(b[selSaddr:], src.Addr().AsSlice())
	binary.BigEndian.PutUint16(b[selDport:], dport)
	binary.BigEndian.PutUint16(b[selSport:], sport)
	binary.NativeEndian.PutUint16(b[selFamily:], family)
	b[selPrefixlenD], b[selPrefixlenS], b[selProto] = byte(dst.Bits()), byte(src.Bits()), proto
}

// buildAcquire makes an XFRM_MSG_ACQUIRE body with one template of the given reqid.
func buildAcquire(src, dst netip.Prefix, reqid uint32) []byte {
	b := make([]byte, sizeofAcquire+attrHdrLen+sizeofTmpl)
	putSelector(b[acqPolicy:], src, dst, 0, 0, 0)
	attr := b[sizeofAcquire:]
	binary.NativeEndian.PutUint16(attr, attrHdrLen+sizeofTmpl)
	binary.NativeEndian.PutUint16(attr[2:], attrTmpl)
	binary.NativeEndian.PutUint32(attr[attrHdrLen+tmplReqID:], reqid)
	return b
}

// buildExpire makes an XFRM_MSG_EXPIRE body for an ESP state.
func buildExpire(dst netip.Addr, spi, reqid uint32, hard bool) []byte {
	b := make([]byte, sizeofExpire)
	family := uint16(unix.AF_INET)
	if dst.Is6() {
		family = unix.AF_INET6
	}
	copy(b[saDaddr:], dst.AsSlice())
	binary.BigEndian.PutUint32(b[saSPI:], spi)
	b[saProto] = unix.IPPROTO_ESP
	binary.NativeEndian.PutUint32(b[saReqID:], reqid)
	binary.NativeEndian.PutUint16(b[saFamily:], family)
	if hard {
		b[expHard] = 1
	}
	return b
}

func TestParseAcquire(t *testing.T) {
	v6 := buildAcquire(netip.MustParsePrefix("2001:db8:1::/48"), netip.MustParsePrefix("2001:db8:2::/64"), 5)
	badLen := buildAcquire(netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.2.0.0/24"), 5)
	badLen[acqPolicy+selPrefixlenD] = 33
	badFamily := buildAcquire(netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.2.0.0/24"), 5)
	binary.NativeEndian.PutUint16(badFamily[acqPolicy+selFamily:], 7)
	badAttr := buildAcquire(netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.2.0.0/24"), 5)
	binary.NativeEndian.PutUint16(badAttr[sizeofAcquire:], 500)
	shortTmpl := buildAcquire(netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.2.0.0/24"), 5)
	binary.NativeEndian.PutUint16(shortTmpl[sizeofAcquire:], attrHdrLen+8)

	tests := []struct {
		name    string
		b       []byte
		want    datapath.Event
		wantErr string
	}{
		{
			name: "kernel message", b: readTestdata(t, "acquire-udp.bin"),
			want: datapath.Event{Kind: datapath.EventAcquire, ReqID: 77, Selector: datapath.Selector{
				Local: netip.MustParsePrefix("10.1.0.0/24"), Remote: netip.MustParsePrefix("10.2.0.0/24"), Proto: 17},
				PacketSrc: netip.MustParseAddr("10.1.0.1"), PacketDst: netip.MustParseAddr("10.2.0.5")},
		},
		{
			name: "IPv6", b: v6,
			want: datapath.Event{Kind: datapath.EventAcquire, ReqID: 5, Selector: datapath.Selector{
				Local: netip.MustParsePrefix("2001:db8:1::/48"), Remote: netip.MustParsePrefix("2001:db8:2::/64")}},
		},
		{name: "short", b: make([]byte, sizeofAcquire-1), wantErr: "acquire length 279: want at least 280"},
		{name: "no template", b: v6[:sizeofAcquire], wantErr: errNoTemplate.Error()},
		{name: "prefix too long", b: badLen, wantErr: "prefixlen_d 33"},
		{name: "unknown family", b: badFamily, wantErr: "address family 7"},
		{name: "attribute overruns", b: badAttr, wantErr: "attribute type 5 length 500"},
		{name: "template too short", b: shortTmpl, wantErr: "XFRMA_TMPL length 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAcquire(tt.b)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseAcquire error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseAcquire: %v", err)
			}
			if got != tt.want {
				t.Errorf("parseAcquire = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseExpire(t *testing.T) {
	v4 := netip.MustParseAddr("203.0.113.9")
	v6 := netip.MustParseAddr("2001:db8::9")
	notESP := buildExpire(v4, 0x1000, 1, true)
	notESP[saProto] = unix.IPPROTO_AH
	badFamily := buildExpire(v4, 0x1000, 1, true)
	binary.NativeEndian.PutUint16(badFamily[saFamily:], 0)

	tests := []struct {
		name    string
		b       []byte
		want    datapath.Event
		wantErr error
		errHas  string
	}{
		{name: "soft", b: buildExpire(v4, 0xc0ffee01, 3, false),
			want: datapath.Event{Kind: datapath.EventSoftExpire, ReqID: 3, SPI: 0xc0ffee01, Dst: v4}},
		{name: "hard IPv6", b: buildExpire(v6, 0x200, 4, true),
			want: datapath.Event{Kind: datapath.EventHardExpire, ReqID: 4, SPI: 0x200, Dst: v6}},
		{name: "kernel larval state", b: readTestdata(t, "expire-larval.bin"), wantErr: errLarval},
		{name: "built larval state", b: buildExpire(v4, 0, 3, true), wantErr: errLarval},
		{name: "short", b: make([]byte, 100), errHas: "expire length 100: want at least 232"},
		{name: "AH", b: notESP, errHas: "expire protocol 51"},
		{name: "no family", b: badFamily, errHas: "address family 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseExpire(tt.b)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("parseExpire error = %v, want %v", err, tt.wantErr)
				}
			case tt.errHas != "":
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("parseExpire error = %v, want one containing %q", err, tt.errHas)
				}
			case err != nil:
				t.Fatalf("parseExpire: %v", err)
			case got != tt.want:
				t.Errorf("parseExpire = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseAcquire(f *testing.F) {
	f.Add(readTestdata(f, "acquire-udp.bin"))
	f.Add(buildAcquire(netip.MustParsePrefix("2001:db8:1::/48"), netip.MustParsePrefix("2001:db8:2::/64"), 5))
	f.Add(make([]byte, sizeofAcquire))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := parseAcquire(b)
		if err != nil {
			return
		}
		if ev.Kind != datapath.EventAcquire || !ev.Selector.Local.IsValid() || !ev.Selector.Remote.IsValid() ||
			ev.Selector.Local.Addr().Is4() != ev.Selector.Remote.Addr().Is4() {
			t.Fatalf("parseAcquire accepted %x as %+v", b, ev)
		}
	})
}

func FuzzParseExpire(f *testing.F) {
	f.Add(readTestdata(f, "expire-larval.bin"))
	f.Add(buildExpire(netip.MustParseAddr("203.0.113.9"), 0xc0ffee01, 3, false))
	f.Add(buildExpire(netip.MustParseAddr("2001:db8::9"), 0x200, 4, true))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := parseExpire(b)
		if err != nil {
			return
		}
		if ev.SPI == 0 || !ev.Dst.IsValid() || (ev.Kind != datapath.EventSoftExpire && ev.Kind != datapath.EventHardExpire) {
			t.Fatalf("parseExpire accepted %x as %+v", b, ev)
		}
	})
}
