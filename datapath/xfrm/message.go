package xfrm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
)

// Layout of the kernel structures in <linux/xfrm.h> that the listener decodes.
// Sizes and offsets were checked against the uapi header with offsetof.
const (
	sizeofAcquire = 280 // struct xfrm_user_acquire
	sizeofExpire  = 232 // struct xfrm_user_expire
	sizeofTmpl    = 64  // struct xfrm_user_tmpl

	// struct xfrm_user_acquire: id(24) saddr(16) sel(56) policy(168) aalgos ealgos calgos seq.
	acqSel    = 40 // the selector of the flow that triggered it: the packet's addresses
	acqPolicy = 96 // policy.sel is the first member of struct xfrm_userpolicy_info

	// struct xfrm_selector
	selDaddr      = 0
	selSaddr      = 16
	selDport      = 32 // big endian
	selSport      = 36 // big endian
	selFamily     = 40
	selPrefixlenD = 42
	selPrefixlenS = 43
	selProto      = 44

	// struct xfrm_user_expire: state (struct xfrm_usersa_info) then hard.
	saDaddr  = 56 // id.daddr
	saSPI    = 72 // id.spi, big endian
	saProto  = 76 // id.proto
	saReqID  = 208
	saFamily = 212
	expHard  = 224

	tmplReqID = 44 // struct xfrm_user_tmpl.reqid

	attrHdrLen = 4 // struct nlattr
	attrTmpl   = 5 // XFRMA_TMPL
)

var (
	// errLarval marks an expire of a state with SPI 0: the placeholder the kernel creates
	// for an acquire. It is not an SA of ours and is never reported.
	errLarval = errors.New("larval state with SPI 0")
	// errNoTemplate: an acquire without XFRMA_TMPL carries no reqid.
	errNoTemplate = errors.New("acquire has no XFRMA_TMPL attribute")
)

// parseAcquire decodes the body of an XFRM_MSG_ACQUIRE (struct xfrm_user_acquire and its
// attributes). The event carries the selector of the policy that matched, oriented as an
// outbound policy (Local = source), the reqid of its first template and, if its selector
// decodes, the addresses of the packet.
func parseAcquire(b []byte) (datapath.Event, error) {
	if len(b) < sizeofAcquire {
		return datapath.Event{}, fmt.Errorf("acquire length %d: want at least %d", len(b), sizeofAcquire)
	}
	sel, err := parseSelector(b[acqPolicy:])
	if err != nil {
		return datapath.Event{}, fmt.Errorf("acquire policy selector: %w", err)
	}
	tmpl, err := findAttr(b[sizeofAcquire:], attrTmpl)
	if err != nil {
		return datapath.Event{}, fmt.Errorf("acquire attributes: %w", err)
	}
	if tmpl == nil {
		return datapath.Event{}, errNoTemplate
	}
	if len(tmpl) < sizeofTmpl {
		return datapath.Event{}, fmt.Errorf("acquire XFRMA_TMPL length %d: want at least %d", len(tmpl), sizeofTmpl)
	}
	ev := datapath.Event{
		Kind:     datapath.EventAcquire,
		ReqID:    binary.NativeEndian.Uint32(tmpl[tmplReqID:]),
		Selector: sel,
	}
	if pkt, err := parseSelector(b[acqSel:]); err == nil {
		ev.PacketSrc, ev.PacketDst = pkt.Local.Addr(), pkt.Remote.Addr()
	}
	return ev, nil
}

// parseExpire decodes the body of an XFRM_MSG_EXPIRE (struct xfrm_user_expire).
// It returns errLarval for the kernel's SPI-0 acquire placeholders.
func parseExpire(b []byte) (datapath.Event, error) {
	if len(b) < sizeofExpire {
		return datapath.Event{}, fmt.Errorf("expire length %d: want at least %d", len(b), sizeofExpire)
	}
	if p := b[saProto]; p != unix.IPPROTO_ESP {
		return datapath.Event{}, fmt.Errorf("expire protocol %d: want ESP (%d)", p, unix.IPPROTO_ESP)
	}
	spi := binary.BigEndian.Uint32(b[saSPI:])
	if spi == 0 {
		return datapath.Event{}, errLarval
	}
	dst, err := parseAddr(b[saDaddr:], binary.NativeEndian.Uint16(b[saFamily:]))
	if err != nil {
		return datapath.Event{}, fmt.Errorf("expire destination: %w", err)
	}
	kind := datapath.EventSoftExpire
	if b[expHard] != 0 {
		kind = datapath.EventHardExpire
	}
	return datapath.Event{
		Kind:  kind,
		ReqID: binary.NativeEndian.Uint32(b[saReqID:]),
		SPI:   spi,
		Dst:   dst,
	}, nil
}

// parseSelector decodes a struct xfrm_selector (at least 56 bytes are present).
func parseSelector(b []byte) (datapath.Selector, error) {
	family := binary.NativeEndian.Uint16(b[selFamily:])
	dst, err := parseAddr(b[selDaddr:], family)
	if err != nil {
		return datapath.Selector{}, fmt.Errorf("daddr: %w", err)
	}
	src, err := parseAddr(b[selSaddr:], family)
	if err != nil {
		return datapath.Selector{}, fmt.Errorf("saddr: %w", err)
	}
	remote, err := dst.Prefix(int(b[selPrefixlenD]))
	if err != nil {
		return datapath.Selector{}, fmt.Errorf("prefixlen_d %d: %w", b[selPrefixlenD], err)
	}
	local, err := src.Prefix(int(b[selPrefixlenS]))
	if err != nil {
		return datapath.Selector{}, fmt.Errorf("prefixlen_s %d: %w", b[selPrefixlenS], err)
	}
	return datapath.Selector{
		Local:      local,
		Remote:     remote,
		Proto:      b[selProto],
		LocalPort:  binary.BigEndian.Uint16(b[selSport:]),
		RemotePort: binary.BigEndian.Uint16(b[selDport:]),
	}, nil
}

// parseAddr decodes an xfrm_address_t (16 bytes) of the given address family.
func parseAddr(b []byte, family uint16) (netip.Addr, error) {
	switch family {
	case unix.AF_INET:
		return netip.AddrFrom4([4]byte(b[:4])), nil
	case unix.AF_INET6:
		return netip.AddrFrom16([16]byte(b[:16])), nil
	}
	return netip.Addr{}, fmt.Errorf("address family %d: want AF_INET (%d) or AF_INET6 (%d)",
		family, unix.AF_INET, unix.AF_INET6)
}

// findAttr returns the payload of the first netlink attribute of type typ in b,
// or nil if there is none.
func findAttr(b []byte, typ uint16) ([]byte, error) {
	for len(b) >= attrHdrLen {
		n := int(binary.NativeEndian.Uint16(b))
		t := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if n < attrHdrLen || n > len(b) {
			return nil, fmt.Errorf("attribute type %d length %d: want %d..%d", t, n, attrHdrLen, len(b))
		}
		if t == typ {
			return b[attrHdrLen:n], nil
		}
		n = (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if n > len(b) {
			break
		}
		b = b[n:]
	}
	return nil, nil
}
