package userspace

import "encoding/binary"

// virtioNetHdrLen is the size of struct virtio_net_hdr (include/uapi/linux/virtio_net.h),
// which starts every read and write of a TUN opened with IFF_VNET_HDR.
const virtioNetHdrLen = 10

// virtioNetHdr tells the kernel how to treat a packet written to the TUN: flags
// VIRTIO_NET_HDR_F_NEEDS_CSUM with csumStart/csumOffset make it CHECKSUM_PARTIAL, and a
// gsoType other than VIRTIO_NET_HDR_GSO_NONE makes it a GSO packet of gsoSize segments
// behind hdrLen bytes of headers.
type virtioNetHdr struct {
	flags, gsoType                         uint8
	hdrLen, gsoSize, csumStart, csumOffset uint16
}

// encode writes h into b in the byte order of the host: the TUN's legacy header, as
// wireguard-go configures it (no TUNSETVNETLE or TUNSETVNETBE).
func (h *virtioNetHdr) encode(b *[virtioNetHdrLen]byte) {
	b[0], b[1] = h.flags, h.gsoType
	binary.NativeEndian.PutUint16(b[2:], h.hdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.gsoSize)
	binary.NativeEndian.PutUint16(b[6:], h.csumStart)
	binary.NativeEndian.PutUint16(b[8:], h.csumOffset)
}
