package ike

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/ike/isakmp"
)

// natTVersion is the NAT-T variant both peers support.
type natTVersion uint8

const (
	natTNone    natTVersion = iota
	natTDraft02             // draft-ietf-ipsec-nat-t-ike-02: NAT-D 130, encapsulation mode 61443
	natTRFC3947             // RFC 3947: NAT-D 20, encapsulation mode 3
)

// Vendor IDs (MD5 hashes of the specification names) that espgw sends or recognises.
var (
	vidRFC3947 = mustHex("4a131c81070358455c5728f20e95452f")
	vidDraft02 = mustHex("90cb80913ebb696e086381b5ec427b1f") // "draft-ietf-ipsec-nat-t-ike-02\n"
	vidDraft03 = mustHex("7d9419a65310ca6f2c179d9215529d56")
	vidDPD     = mustHex("afcad71368a1f1c96b8696fc77570100") // RFC 3706
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// ourVendorIDs are the VID payloads of MM1/MM2 and AM1/AM2.
func ourVendorIDs(c *model.Connection) []isakmp.Payload {
	ps := []isakmp.Payload{&isakmp.VendorID{Data: vidDPD}}
	if c.IKE.NATTraversal != model.NATTOff {
		ps = append(ps, &isakmp.VendorID{Data: vidRFC3947}, &isakmp.VendorID{Data: vidDraft02})
	}
	return ps
}

// noteVendorIDs records what the peer's VIDs announce.
func (sa *ikeSA) noteVendorIDs(ps []isakmp.Payload) {
	for _, p := range ps {
		v, ok := p.(*isakmp.VendorID)
		if !ok {
			continue
		}
		switch {
		case bytes.Equal(v.Data, vidRFC3947):
			sa.peerNATT = natTRFC3947
		case bytes.Equal(v.Data, vidDraft02), bytes.Equal(v.Data, vidDraft03):
			if sa.peerNATT == natTNone {
				sa.peerNATT = natTDraft02
			}
		case bytes.Equal(v.Data, vidDPD):
			sa.peerDPD = true
		}
	}
	if sa.conn.cfg.IKE.NATTraversal == model.NATTOff {
		sa.peerNATT = natTNone
	}
}

// natDHash is HASH(CKY-I | CKY-R | IP | Port) with the negotiated hash (RFC 3947 3.2).
func (sa *ikeSA) natDHash(ap netip.AddrPort) []byte {
	h := sa.prop.Hash.New()
	h.Write(sa.icookie[:])
	h.Write(sa.rcookie[:])
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		a := ip.As4()
		h.Write(a[:])
	} else {
		a := ip.As16()
		h.Write(a[:])
	}
	h.Write(binary.BigEndian.AppendUint16(nil, ap.Port()))
	return h.Sum(nil)
}

// natDPayloads are the NAT-D payloads of MM3/MM4 (or AM): first the peer's address as we
// see it, then ours. With nat_traversal: force ours is deliberately wrong so that both sides
// believe we are behind a NAT and encapsulate ESP in UDP.
func (sa *ikeSA) natDPayloads() []isakmp.Payload {
	if sa.peerNATT == natTNone {
		return nil
	}
	draft := sa.peerNATT == natTDraft02
	ours := sa.natDHash(sa.local)
	if sa.conn.cfg.IKE.NATTraversal == model.NATTForce {
		ours[0] ^= 0xff
		ours[len(ours)-1] ^= 0xa5
	}
	return []isakmp.Payload{
		&isakmp.NATD{Hash: sa.natDHash(sa.remote), Draft: draft},
		&isakmp.NATD{Hash: ours, Draft: draft},
	}
}

// checkNATD compares the peer's NAT-D payloads with the addresses the message came
// between. The first payload hashes our address as the peer sent to it; the others hash
// the peer's own addresses.
func (sa *ikeSA) checkNATD(ps []isakmp.Payload, local, remote netip.AddrPort) {
	if sa.peerNATT == natTNone {
		return
	}
	var ds [][]byte
	for _, p := range ps {
		if d, ok := p.(*isakmp.NATD); ok {
			ds = append(ds, d.Hash)
		}
	}
	if len(ds) < 2 {
		sa.peerNATT = natTNone // no NAT-D: the peer does not do NAT-T after all
		return
	}
	sa.natLocal = !bytes.Equal(ds[0], sa.natDHash(local))
	sa.behindNAT = sa.natLocal
	peer := sa.natDHash(remote)
	sa.natRemote = true
	for _, d := range ds[1:] {
		if bytes.Equal(d, peer) {
			sa.natRemote = false
		}
	}
	if sa.conn.cfg.IKE.NATTraversal == model.NATTForce {
		sa.natLocal = true
	}
}

// floatPorts moves an initiator's IKE SA to port 4500 once NAT-T is in use (RFC 3947 4).
func (sa *ikeSA) floatPorts() {
	if !sa.natDetected() || sa.local.Port() == conn.NATTPort {
		return
	}
	sa.local = netip.AddrPortFrom(sa.local.Addr(), conn.NATTPort)
	sa.remote = netip.AddrPortFrom(sa.remote.Addr(), conn.NATTPort)
}

// encapMode is the encapsulation mode attribute value for this IKE SA's child SAs.
func (sa *ikeSA) encapMode() uint16 {
	switch {
	case !sa.natDetected():
		return isakmp.EncapTunnel
	case sa.peerNATT == natTDraft02:
		return isakmp.EncapUDPTunnelDraft
	}
	return isakmp.EncapUDPTunnel
}
