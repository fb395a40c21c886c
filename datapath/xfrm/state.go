package xfrm

import (
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/espgw/espgw/datapath"
)

// direction tells stateFor which way an SA carries traffic as seen from this host.
type direction uint8

const (
	dirIn direction = iota + 1
	dirOut
)

func (d direction) String() string {
	if d == dirIn {
		return "inbound"
	}
	return "outbound"
}

// algorithm is a kernel crypto algorithm as XFRM names it.
type algorithm struct {
	name    string
	keyLens []int  // accepted key lengths in bytes (for AEAD: including the salt)
	bits    int    // ICV length (AEAD) or truncation length (HMAC) in bits
	kconfig string // kernel option that provides it, for error messages
}

var encryptions = map[datapath.Encryption]algorithm{
	datapath.Enc3DESCBC:  {"cbc(des3_ede)", []int{24}, 0, "CONFIG_CRYPTO_DES"},
	datapath.EncAESCBC:   {"cbc(aes)", []int{16, 24, 32}, 0, "CONFIG_CRYPTO_AES, CONFIG_CRYPTO_CBC"},
	datapath.EncAESGCM16: {"rfc4106(gcm(aes))", []int{16 + 4, 24 + 4, 32 + 4}, 128, "CONFIG_CRYPTO_GCM"},
}

var integrities = map[datapath.Integrity]algorithm{
	datapath.IntegHMACSHA1_96:    {"hmac(sha1)", []int{20}, 96, "CONFIG_CRYPTO_SHA1"},
	datapath.IntegHMACSHA256_128: {"hmac(sha256)", []int{32}, 128, "CONFIG_CRYPTO_SHA256"},
	datapath.IntegHMACSHA384_192: {"hmac(sha384)", []int{48}, 192, "CONFIG_CRYPTO_SHA512"},
	datapath.IntegHMACSHA512_256: {"hmac(sha512)", []int{64}, 256, "CONFIG_CRYPTO_SHA512"},
}

// kconfigFor names the kernel option behind an XFRM algorithm name.
func kconfigFor(name string) string {
	for _, a := range encryptions {
		if a.name == name {
			return a.kconfig
		}
	}
	for _, a := range integrities {
		if a.name == name {
			return a.kconfig
		}
	}
	return ""
}

// maxLegacyReplayWindow is the largest window the kernel keeps without ESN: it stores the
// legacy replay bitmap in one 32-bit word and silently caps larger values.
const maxLegacyReplayWindow = 32

// stateFor builds the tunnel-mode ESP state the kernel needs for sa. The SPI stays in host
// byte order: netlink swaps it. Keys are copied so callers can wipe the state's keys after use.
func stateFor(sa datapath.SA, dir direction) (*netlink.XfrmState, error) {
	if !sa.Src.IsValid() || !sa.Dst.IsValid() || sa.Src.Is4() != sa.Dst.Is4() {
		return nil, fmt.Errorf("SA spi 0x%08x: tunnel addresses %v -> %v: want two addresses of one family", sa.SPI, sa.Src, sa.Dst)
	}
	if sa.SPI < 0x100 {
		return nil, fmt.Errorf("SA SPI 0x%08x: want at least 0x100 (RFC 4303: 1-255 reserved)", sa.SPI)
	}
	st := &netlink.XfrmState{
		Src:   ip(sa.Src),
		Dst:   ip(sa.Dst),
		Proto: netlink.XFRM_PROTO_ESP,
		Mode:  netlink.XFRM_MODE_TUNNEL,
		Spi:   int(sa.SPI),
		Reqid: int(sa.ReqID),
		Limits: netlink.XfrmStateLimits{
			ByteSoft: sa.Lifetime.SoftBytes,
			ByteHard: sa.Lifetime.HardBytes,
			TimeSoft: seconds(sa.Lifetime.Soft),
			TimeHard: seconds(sa.Lifetime.Hard),
		},
	}
	if dir == dirIn {
		st.ReplayWindow = int(min(sa.ReplayWindow, maxLegacyReplayWindow))
	}
	sel, err := selectorPolicy(stateSelector(sa.Selectors), dir)
	if err != nil {
		return nil, fmt.Errorf("SA spi 0x%08x selector: %w", sa.SPI, err)
	}
	st.Selector = sel

	enc, ok := encryptions[sa.Enc]
	if !ok {
		return nil, fmt.Errorf("SA spi 0x%08x encryption %d: want 3DES-CBC, AES-CBC or AES-GCM-16", sa.SPI, sa.Enc)
	}
	if !slices.Contains(enc.keyLens, len(sa.EncKey)) {
		return nil, fmt.Errorf("SA spi 0x%08x %s key length %d: want one of %v", sa.SPI, enc.name, len(sa.EncKey), enc.keyLens)
	}
	if sa.Enc == datapath.EncAESGCM16 {
		if sa.Integ != datapath.IntegNone {
			return nil, fmt.Errorf("SA spi 0x%08x integrity %d with %s: want none (AEAD)", sa.SPI, sa.Integ, enc.name)
		}
		st.Aead = &netlink.XfrmStateAlgo{Name: enc.name, Key: slices.Clone(sa.EncKey), ICVLen: enc.bits}
	} else {
		integ, ok := integrities[sa.Integ]
		if !ok {
			return nil, fmt.Errorf("SA spi 0x%08x integrity %d with %s: want HMAC-SHA1-96 or HMAC-SHA2", sa.SPI, sa.Integ, enc.name)
		}
		if !slices.Contains(integ.keyLens, len(sa.IntegKey)) {
			return nil, fmt.Errorf("SA spi 0x%08x %s key length %d: want %v", sa.SPI, integ.name, len(sa.IntegKey), integ.keyLens)
		}
		st.Crypt = &netlink.XfrmStateAlgo{Name: enc.name, Key: slices.Clone(sa.EncKey)}
		st.Auth = &netlink.XfrmStateAlgo{Name: integ.name, Key: slices.Clone(sa.IntegKey), TruncateLen: integ.bits}
	}

	if sa.EncapSrcPort != 0 || sa.EncapDstPort != 0 {
		if sa.EncapSrcPort == 0 || sa.EncapDstPort == 0 {
			return nil, fmt.Errorf("SA spi 0x%08x UDP encapsulation ports %d -> %d: want both set or both zero", sa.SPI, sa.EncapSrcPort, sa.EncapDstPort)
		}
		st.Encap = &netlink.XfrmStateEncap{
			Type:    netlink.XFRM_ENCAP_ESPINUDP,
			SrcPort: int(sa.EncapSrcPort),
			DstPort: int(sa.EncapDstPort),
		}
	}
	return st, nil
}

// wipe zeroes the key copies stateFor made.
func wipe(st *netlink.XfrmState) {
	for _, a := range []*netlink.XfrmStateAlgo{st.Aead, st.Crypt, st.Auth} {
		if a != nil {
			clear(a.Key)
		}
	}
}

// stateSelector is the selector of an SA's xfrm state. The kernel picks an outbound state
// only if its selector matches the flow (xfrm_state_find), and drops what an inbound state
// decrypted unless it matches (__xfrm_policy_check). With several combinations it is, per
// side, the smallest prefix that holds all of that side's, keeping the protocol and ports
// the tunnel shares; the policies, one per combination with the SA's reqid, tell the
// combinations apart. A combination the tunnel's policies cover but the peer narrowed away
// (RFC 7296 2.9) then finds no state and is dropped, instead of leaving under this SA; that
// holds unless it lies between the negotiated prefixes of a side.
func stateSelector(sels []datapath.Selector) datapath.Selector {
	switch len(sels) {
	case 0:
		return datapath.Selector{} // selectorPolicy refuses it
	case 1:
		return sels[0]
	}
	s := sels[0]
	for _, o := range sels[1:] {
		s.Local, s.Remote = covering(s.Local, o.Local), covering(s.Remote, o.Remote)
	}
	return s
}

// covering is the smallest prefix that holds both a and b; of two families, every address
// of a's.
func covering(a, b netip.Prefix) netip.Prefix {
	n := min(a.Bits(), b.Bits())
	if x, y := a.Addr().AsSlice(), b.Addr().AsSlice(); len(x) != len(y) {
		n = 0
	} else {
		for i := range x {
			if d := x[i] ^ y[i]; d != 0 {
				n = min(n, i*8+bits.LeadingZeros8(d))
				break
			}
		}
	}
	return netip.PrefixFrom(a.Addr(), n).Masked()
}

// selectorPolicy turns a host-oriented selector into the kernel's packet-oriented one:
// outbound traffic goes Local -> Remote, inbound Remote -> Local.
func selectorPolicy(s datapath.Selector, dir direction) (*netlink.XfrmPolicy, error) {
	if !s.Local.IsValid() || !s.Remote.IsValid() || s.Local.Addr().Is4() != s.Remote.Addr().Is4() {
		return nil, fmt.Errorf("prefixes %v -> %v: want two prefixes of one family", s.Local, s.Remote)
	}
	p := &netlink.XfrmPolicy{
		Src:     ipNet(s.Local),
		Dst:     ipNet(s.Remote),
		Proto:   netlink.Proto(s.Proto),
		SrcPort: int(s.LocalPort),
		DstPort: int(s.RemotePort),
	}
	if dir == dirIn {
		p.Src, p.Dst = p.Dst, p.Src
		p.SrcPort, p.DstPort = p.DstPort, p.SrcPort
	}
	return p, nil
}

func ip(a netip.Addr) net.IP { return net.IP(a.Unmap().AsSlice()) }

func ipNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// seconds rounds a lifetime up to whole seconds so a short non-zero limit never becomes
// "unlimited".
func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Second - 1) / time.Second)
}
