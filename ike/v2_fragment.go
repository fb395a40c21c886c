package ike

import (
	"fmt"
	"io"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/ike/ikev2"
)

// IKE fragmentation (RFC 7383). Both sides announce IKEV2_FRAGMENTATION_SUPPORTED in
// IKE_SA_INIT; then a protected message that would not fit an IP datagram of the
// connection's fragment_size goes out as SKF payloads, each with its own IV, padding and
// ICV, and all fragments are sent (and resent) together. Received fragments are verified
// one by one before they are kept, so only the peer can make us hold data: at most
// maxV2Fragments fragments and maxV2Reassembly bytes per message, one message per
// direction (requests and responses each have one in flight, RFC 7296 2.3).

const (
	maxV2Fragments  = 64
	maxV2Reassembly = 64 << 10 // plaintext bytes
	udpHeaderLen    = 8
	nonESPMarkerLen = 4 // before IKE on port 4500 (RFC 3948 2.2)
)

// Path MTU (RFC 7383 2.5.2): a path may silently drop datagrams above some size (no ICMP,
// or a firewall that eats IP fragments). An unanswered request is sealed again in smaller
// fragments for its later retransmissions, two sends per size, stepping from fragment_size
// down to 1280 and, over IPv4, 576 bytes: what every IPv6 and IPv4 path must carry. Each
// retransmission of a request we answered says our response was lost: it goes one step
// smaller. The IKE SA keeps the size it reached for its later messages.

const (
	minIPv6Datagram = 1280
	minIPv4Datagram = 576
)

// v2Response is the last response we sent, kept to seal it again.
type v2Response struct {
	header   ikev2.Header
	payloads []ikev2.Payload
}

// fragmentLadder is the datagram sizes tried in turn, largest first.
func (sa *v2SA) fragmentLadder() []int {
	sizes := []int{sa.conn.cfg.IKE.FragmentSize}
	floors := []int{minIPv6Datagram}
	if sa.remote.Addr().Unmap().Is4() {
		floors = append(floors, minIPv4Datagram)
	}
	for _, f := range floors {
		if f < sizes[len(sizes)-1] {
			sizes = append(sizes, f)
		}
	}
	return sizes
}

// shrinkFragments moves the SA down to step of its ladder; it reports whether the size
// changed.
func (sa *v2SA) shrinkFragments(step int) bool {
	step = min(step, len(sa.fragmentLadder())-1)
	if !sa.fragments || step <= sa.fragStep {
		return false
	}
	sa.fragStep = step
	sa.e.log.Info("IKE messages lost: fragments get smaller (RFC 7383 2.5.2)", sa.logArgs("datagram_size", sa.fragmentLadder()[step])...)
	return true
}

// refragmentRequest seals the request in flight again before its try-th send if its
// ladder step, two sends per size, is smaller than the SA's.
func (sa *v2SA) refragmentRequest(try int) {
	r := sa.pending
	if r == nil || !sa.shrinkFragments((try-1)/2) {
		return
	}
	if msgs, err := sa.seal(sa.header(r.exchange, sa.reqID, false), r.payloads); err == nil {
		sa.req.lastOut = msgs
	}
}

// refragmentResponse seals our response to the peer's request msgID again one step smaller.
func (sa *v2SA) refragmentResponse(msgID uint32) {
	last := &sa.lastResp
	if last.header.Exchange == 0 || last.header.MessageID != msgID || !sa.shrinkFragments(sa.fragStep+1) {
		return
	}
	if msgs, err := sa.seal(last.header, last.payloads); err == nil {
		sa.resp.lastOut = msgs
	}
}

// v2Defrag collects the fragments of one of the peer's messages.
type v2Defrag struct {
	msgID uint32
	first ikev2.PayloadType // fragment 1's next payload: the first inner payload
	parts [][]byte          // plaintext by fragment number - 1
	have  int
	size  int
}

// fragmentOffer is our IKEV2_FRAGMENTATION_SUPPORTED for IKE_SA_INIT, if fragment_size is set.
func (sa *v2SA) fragmentOffer() []ikev2.Payload {
	if sa.conn.cfg.IKE.FragmentSize == 0 {
		return nil
	}
	return []ikev2.Payload{&ikev2.Notify{NotifyType: ikev2.NotifyFragmentationSupported}}
}

// takeFragmentOffer notes whether the peer's IKE_SA_INIT message ps supports fragmentation
// and we offer it too.
func (sa *v2SA) takeFragmentOffer(ps []ikev2.Payload) {
	sa.fragments = sa.conn.cfg.IKE.FragmentSize > 0 && len(ikev2.Notifies(ps, ikev2.NotifyFragmentationSupported)) > 0
}

// maxMessage is the longest IKE message that fits an IP datagram of the SA's fragment
// size.
func (sa *v2SA) maxMessage() int {
	n := sa.fragmentLadder()[sa.fragStep] - udpHeaderLen - ipHeaderLen(sa.remote.Addr().Unmap().Is4())
	if sa.local.Port() == conn.NATTPort {
		n -= nonESPMarkerLen
	}
	return n
}

func ipHeaderLen(v4 bool) int {
	if v4 {
		return 20
	}
	return 40
}

// seal encodes the protected message of header h carrying ps: one datagram, or its
// fragments when it is too long and the peer takes fragments (an empty one goes whole).
func (sa *v2SA) seal(h ikev2.Header, ps []ikev2.Payload) ([][]byte, error) {
	msg, err := sa.sk.seal(sa.e.opts.Rand, h, ps)
	if err != nil || !sa.fragments || len(msg) <= sa.maxMessage() || len(ps) == 0 {
		return [][]byte{msg}, err
	}
	return sa.sk.sealFragments(sa.e.opts.Rand, h, ps, sa.maxMessage())
}

// sealFragments encodes ps as SKF fragments of at most max bytes each (RFC 7383 2.5).
func (c *v2Cipher) sealFragments(rand io.Reader, h ikev2.Header, ps []ikev2.Payload, max int) ([][]byte, error) {
	inner := ikev2.AppendPayloads(nil, ps)
	room := c.fragmentRoom(max)
	if room < 1 {
		return nil, fmt.Errorf("fragment_size leaves no room for data in a fragment (%d-byte messages)", max)
	}
	total := (len(inner) + room - 1) / room
	if total > maxV2Fragments {
		return nil, fmt.Errorf("message of %d bytes needs %d fragments, more than %d", len(inner), total, maxV2Fragments)
	}
	msgs := make([][]byte, 0, total)
	for i := range total {
		first := ikev2.PayloadNone
		if i == 0 {
			first = ps[0].Type()
		}
		fixed := []byte{byte((i + 1) >> 8), byte(i + 1), byte(total >> 8), byte(total)}
		msg, err := c.sealSK(rand, h, ikev2.PayloadEncryptedFragment, first, fixed, inner[i*room:min(len(inner), (i+1)*room)])
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

// fragmentRoom is how many bytes of inner payloads fit a fragment of max bytes: what the
// IKE header, the SKF header, IV, ICV, pad length and block padding leave.
func (c *v2Cipher) fragmentRoom(max int) int {
	ivLen, icvN := c.ivICV()
	room := max - ikev2.HeaderLen - 8 - ivLen - icvN
	if c.out.block != nil {
		room -= room % c.out.block.BlockSize()
	}
	return room - 1
}

// reassemble verifies and keeps one fragment of the message in; with the last one it
// returns the message's inner payloads, before that errIgnore.
func (sa *v2SA) reassemble(in *v2Inbound, f *ikev2.EncryptedFragment) ([]ikev2.Payload, error) {
	if !sa.fragments {
		return nil, fmt.Errorf("%s message is fragmented, but fragmentation was not negotiated in IKE_SA_INIT", in.m.Header.Exchange)
	}
	if f.Total > maxV2Fragments {
		return nil, fmt.Errorf("message in %d fragments, want at most %d", f.Total, maxV2Fragments)
	}
	plain, err := sa.sk.decrypt(in.raw, f.Encrypted)
	if err != nil {
		return nil, err
	}
	slot := &sa.defrag[0]
	if in.m.Header.IsResponse() {
		slot = &sa.defrag[1]
	}
	d := *slot
	switch {
	case d == nil || d.msgID != in.m.Header.MessageID || int(f.Total) > len(d.parts):
		// A new message, or the sender fragmented it again smaller (RFC 7383 2.6).
		d = &v2Defrag{msgID: in.m.Header.MessageID, parts: make([][]byte, f.Total)}
		*slot = d
	case int(f.Total) < len(d.parts), d.parts[f.Number-1] != nil:
		return nil, errIgnore // a fragment of an older fragmentation, or a duplicate
	}
	if d.size+len(plain) > maxV2Reassembly {
		*slot = nil
		return nil, fmt.Errorf("fragmented message exceeds %d bytes", maxV2Reassembly)
	}
	d.parts[f.Number-1], d.size, d.have = plain, d.size+len(plain), d.have+1
	if f.Number == 1 {
		d.first = f.Inner
	}
	if d.have < len(d.parts) {
		return nil, errIgnore
	}
	*slot = nil
	whole := make([]byte, 0, d.size)
	for _, p := range d.parts {
		whole = append(whole, p...)
	}
	ps, err := ikev2.DecodePayloads(d.first, whole)
	if err != nil {
		return nil, fmt.Errorf("reassembled SK inner payloads: %w", err)
	}
	return ps, nil
}
