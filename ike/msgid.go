package ike

// maxMsgIDs bounds the message IDs an IKE SA remembers (4 bytes each in a ring plus a map
// entry). A replay of an ID older than the last maxMsgIDs exchanges is no longer caught;
// reaching that needs as many quick modes and informationals as hours of DPD produce.
const maxMsgIDs = 1024

// msgIDs remembers the message IDs of the phase-2 exchanges (quick mode, informational)
// of one IKE SA, both the peer's and ours. The IV and the HASH of such a message depend only
// on the message ID and phase-1 state, and RFC 2409 HASH(1) is the same in both
// directions, so a message captured earlier (or one of ours reflected back) decrypts and
// verifies again: the message ID is the only thing that tells it is not new. The zero value
// is empty and ready to use.
type msgIDs struct {
	seen map[uint32]struct{}
	ring []uint32 // insertion order, to forget the oldest
	next int
}

// has reports whether id was used in this IKE SA.
func (m *msgIDs) has(id uint32) bool {
	_, ok := m.seen[id]
	return ok
}

// add records id, forgetting the oldest one once maxMsgIDs are remembered.
func (m *msgIDs) add(id uint32) {
	if m.has(id) {
		return
	}
	if m.seen == nil {
		m.seen = make(map[uint32]struct{})
	}
	if len(m.ring) < maxMsgIDs {
		m.ring = append(m.ring, id)
	} else {
		delete(m.seen, m.ring[m.next])
		m.ring[m.next] = id
		m.next = (m.next + 1) % maxMsgIDs
	}
	m.seen[id] = struct{}{}
}
