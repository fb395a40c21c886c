// Package replay implements the ESP anti-replay window of RFC 4303 section 3.4.3.
//
// The window is a ring of 64-bit blocks (the bitmap layout of RFC 6479): moving the window
// forward clears whole blocks instead of shifting bits, so both checks and updates are O(1)
// apart from the blocks a jump skips.
//
// RFC 4303 requires the window to move only for packets whose ICV verified, so the filter is
// two-phase: Check before the ICV (cheap rejection of replays), Accept after it.
package replay

const (
	blockBitLog = 6 // 64 bits per block
	blockBits   = 1 << blockBitLog
	bitMask     = blockBits - 1

	// MinWindow is the smallest window; RFC 4303 makes 64 the recommended default.
	MinWindow = 64
	// MaxWindow bounds the bitmap memory per SA (128 KiB).
	MaxWindow = 1 << 20
)

// Filter is an anti-replay window for one inbound SA. Sequence number 0 is never valid
// (RFC 4303 section 3.3.3: the first packet carries 1).
// Filters are unsafe for concurrent use.
type Filter struct {
	last   uint64 // highest accepted sequence number
	window uint64 // packets
	mask   uint64 // len(ring)-1
	ring   []uint64
}

// New returns an empty filter accepting sequence numbers within size packets of the highest
// accepted one. size is raised to MinWindow and lowered to MaxWindow.
func New(size uint32) *Filter {
	w := uint64(max(min(size, MaxWindow), MinWindow))
	// One extra block keeps the oldest in-window bit alive while the newest block is cleared.
	blocks := uint64(1)
	for blocks < (w+blockBits-1)/blockBits+1 {
		blocks <<= 1
	}
	return &Filter{window: w, mask: blocks - 1, ring: make([]uint64, blocks)}
}

// Window reports the window size in packets.
func (f *Filter) Window() uint32 { return uint32(f.window) }

// Last reports the highest accepted sequence number (0 before the first).
func (f *Filter) Last() uint64 { return f.last }

// Check reports whether seq may be new: it is ahead of the window, or inside it and not yet
// accepted. It changes nothing; call Accept once the packet's ICV has been verified.
func (f *Filter) Check(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if seq > f.last {
		return true
	}
	if f.last-seq >= f.window {
		return false
	}
	return f.ring[(seq>>blockBitLog)&f.mask]&(1<<(seq&bitMask)) == 0
}

// Accept records seq as received, moving the window forward if seq is ahead of it.
// It returns false, recording nothing, if Check(seq) would have failed: a duplicate that
// raced between Check and Accept is caught here.
func (f *Filter) Accept(seq uint64) bool {
	if !f.Check(seq) {
		return false
	}
	if seq > f.last {
		cur := f.last >> blockBitLog
		diff := min((seq>>blockBitLog)-cur, uint64(len(f.ring)))
		for i := cur + 1; i <= cur+diff; i++ {
			f.ring[i&f.mask] = 0
		}
		f.last = seq
	}
	f.ring[(seq>>blockBitLog)&f.mask] |= 1 << (seq & bitMask)
	return true
}
