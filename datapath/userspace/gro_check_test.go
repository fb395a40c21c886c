package userspace

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// Checks of the coalescer's output against the packets it was given, shared by the rule
// tables and the fuzz target.

// members returns the batch indices of item i's packets.
func (c *coalescer) members(i int) []int {
	m := []int{c.items[i].first}
	for j := c.next[m[0]]; j >= 0; j = c.next[j] {
		m = append(m, j)
	}
	return m
}

func decodeVirtio(b []byte) virtioNetHdr {
	return virtioNetHdr{flags: b[0], gsoType: b[1], hdrLen: binary.NativeEndian.Uint16(b[2:]),
		gsoSize: binary.NativeEndian.Uint16(b[4:]), csumStart: binary.NativeEndian.Uint16(b[6:]),
		csumOffset: binary.NativeEndian.Uint16(b[8:])}
}

// coalesceAndCheck runs the coalescer on copies of origs, checks every write against the
// originals and returns the batch indices of each write.
func coalesceAndCheck(t testing.TB, origs [][]byte) [][]int {
	t.Helper()
	pkts := make([][]byte, len(origs))
	for i, p := range origs {
		pkts[i] = slices.Clone(p)
	}
	var c coalescer
	c.coalesce(pkts)
	var got [][]int
	for i := range c.items {
		m := c.members(i)
		got = append(got, m)
		checkWrite(t, c.appendWrite(nil, i), origs, m)
	}
	var all []int
	for _, m := range got {
		all = append(all, m...)
	}
	slices.Sort(all)
	if !slices.Equal(all, span(0, len(origs))) {
		t.Errorf("writes hold packets %v, want each of the %d packets once", all, len(origs))
	}
	return got
}

// checkWrite checks one TUN write (virtio header and packet pieces) of the original packets
// members: a packet without checksum offload goes unchanged; otherwise completing the
// checksum as the kernel would must give a valid transport checksum, and a single packet
// must then equal its original but for that field.
func checkWrite(t testing.TB, pieces [][]byte, origs [][]byte, members []int) {
	t.Helper()
	if len(pieces[0]) != virtioNetHdrLen {
		t.Fatalf("virtio header of %d bytes, want %d", len(pieces[0]), virtioNetHdrLen)
	}
	vh := decodeVirtio(pieces[0])
	pkt := bytes.Join(pieces[1:], nil)
	head := origs[members[0]]
	if vh.flags == 0 {
		if len(members) != 1 || vh != (virtioNetHdr{}) || !bytes.Equal(pkt, head) {
			t.Errorf("packets %v written without checksum offload: header %+v, changed %v", members, vh, !bytes.Equal(pkt, head))
		}
		return
	}
	start, off := int(vh.csumStart), int(vh.csumOffset)
	if vh.flags != unix.VIRTIO_NET_HDR_F_NEEDS_CSUM || start+off+2 > int(vh.hdrLen) || int(vh.hdrLen) > len(pkt) {
		t.Fatalf("packets %v: virtio header %+v for a %d-byte packet", members, vh, len(pkt))
	}
	binary.BigEndian.PutUint16(pkt[start+off:], onesChecksum(pkt[start:]))
	if c := onesChecksum(append(pseudoHeader(pkt), pkt[start:]...)); c != 0 {
		t.Errorf("packets %v: transport checksum does not verify once completed (residue %#04x)", members, c)
	}
	if len(members) == 1 {
		want := slices.Clone(head)
		copy(want[start+off:start+off+2], pkt[start+off:])
		if vh.gsoType != unix.VIRTIO_NET_HDR_GSO_NONE || !bytes.Equal(pkt, want) {
			t.Errorf("packet %d: gso type %d, changed beyond its checksum %v", members[0], vh.gsoType, !bytes.Equal(pkt, want))
		}
		return
	}
	checkMerged(t, vh, pkt, origs, members)
}

// checkMerged checks a super-packet against the segments merged into it: headers, virtio
// fields, payloads in order, and the merge rules seen from the output.
func checkMerged(t testing.TB, vh virtioNetHdr, pkt []byte, origs [][]byte, members []int) {
	t.Helper()
	head, last := origs[members[0]], origs[members[len(members)-1]]
	v6 := head[0]>>4 == 6
	ipLen := 20
	wantType := uint8(unix.VIRTIO_NET_HDR_GSO_TCPV4)
	if v6 {
		ipLen, wantType = 40, unix.VIRTIO_NET_HDR_GSO_TCPV6
	}
	hdrLen := ipLen + int(head[ipLen+12]>>4)*4
	if head[ipLen+13]&tcpCWR != 0 {
		wantType |= unix.VIRTIO_NET_HDR_GSO_ECN
	}
	gso := len(head) - hdrLen
	wantVH := virtioNetHdr{flags: unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: wantType, hdrLen: uint16(hdrLen),
		gsoSize: uint16(gso), csumStart: uint16(ipLen), csumOffset: 16}
	if vh != wantVH {
		t.Errorf("packets %v: virtio header %+v, want %+v", members, vh, wantVH)
	}
	// The headers are the head's but for lengths, checksums and the last segment's PSH.
	want := slices.Clone(head[:hdrLen])
	if v6 {
		binary.BigEndian.PutUint16(want[4:], uint16(len(pkt)-40))
	} else {
		binary.BigEndian.PutUint16(want[2:], uint16(len(pkt)))
		binary.BigEndian.PutUint16(want[10:], 0)
		binary.BigEndian.PutUint16(want[10:], onesChecksum(want[:20]))
	}
	want[ipLen+13] |= last[ipLen+13] & tcpPSH
	copy(want[ipLen+16:ipLen+18], pkt[ipLen+16:])
	if !bytes.Equal(pkt[:hdrLen], want) {
		t.Errorf("packets %v: super-packet headers\n% x\nwant\n% x", members, pkt[:hdrLen], want)
	}
	if !v6 && head[0] != 0x45 {
		t.Errorf("packets %v merged behind an IPv4 header with options", members)
	}
	// Like Linux, the second segment decides whether IPv4 IDs count up or stay fixed.
	fixedID := !v6 && binary.BigEndian.Uint16(origs[members[1]][4:]) == binary.BigEndian.Uint16(head[4:])
	at := hdrLen
	for k, m := range members {
		o := origs[m]
		if len(o) < hdrLen || !bytes.Equal(pkt[at:min(at+len(o)-hdrLen, len(pkt))], o[hdrLen:]) {
			t.Fatalf("packets %v: payload of packet %d not found at offset %d", members, m, at)
		}
		n := len(o) - hdrLen
		if n == 0 || n > gso || n < gso && k != len(members)-1 {
			t.Errorf("packets %v: packet %d has %d payload bytes, segment size %d", members, m, n, gso)
		}
		if got, want := binary.BigEndian.Uint32(o[ipLen+4:]), binary.BigEndian.Uint32(head[ipLen+4:])+uint32(at-hdrLen); got != want {
			t.Errorf("packets %v: packet %d has sequence number %d, want %d", members, m, got, want)
		}
		checkSameSegment(t, head, o, ipLen, k, k == len(members)-1, fixedID)
		at += n
	}
	if at != len(pkt) {
		t.Errorf("packets %v: super-packet of %d bytes, segments end at %d", members, len(pkt), at)
	}
}

// checkSameSegment checks that o, the k-th segment merged behind head, could be merged by
// Linux GRO's rules.
func checkSameSegment(t testing.TB, head, o []byte, ipLen, k int, last, fixedID bool) {
	t.Helper()
	ignore := func(b []byte, ranges ...int) []byte {
		b = slices.Clone(b)
		for i := 0; i < len(ranges); i += 2 {
			clear(b[ranges[i]:ranges[i+1]])
		}
		return b
	}
	fl := o[ipLen+13]
	bad := uint8(tcpSYN | tcpFIN | tcpRST | tcpURG)
	if k > 0 {
		bad |= tcpCWR
	}
	if !last {
		bad |= tcpPSH
	}
	if fl&bad != 0 {
		t.Errorf("segment %d with flags %#02x merged", k, fl)
	}
	ipIgnored := []int{4, 6} // IPv6 payload length
	if ipLen == 20 {
		ipIgnored = []int{2, 6, 10, 12} // total length, ID, checksum
		step, want := binary.BigEndian.Uint16(o[4:])-binary.BigEndian.Uint16(head[4:]), uint16(k)
		if fixedID {
			want = 0
		}
		if onesChecksum(o[:20]) != 0 || step != want || fixedID && head[6]&0x40 == 0 {
			t.Errorf("segment %d: IPv4 header checksum %#04x, ID step %d", k, onesChecksum(o[:20]), step)
		}
	}
	if !bytes.Equal(ignore(o[:ipLen], ipIgnored...), ignore(head[:ipLen], ipIgnored...)) {
		t.Errorf("segment %d: IP header differs beyond lengths, IDs and checksums", k)
	}
	hdrEnd := ipLen + int(head[ipLen+12]>>4)*4
	// sequence number, flags, checksum, urgent pointer (meaningless without URG)
	tcpIgnored := []int{4, 8, 13, 14, 16, 20}
	if !bytes.Equal(ignore(o[ipLen:hdrEnd], tcpIgnored...), ignore(head[ipLen:hdrEnd], tcpIgnored...)) ||
		(fl^head[ipLen+13])&^(tcpPSH|tcpCWR) != 0 {
		t.Errorf("segment %d: TCP header differs beyond sequence number, PSH/CWR, checksum and urgent pointer", k)
	}
}
