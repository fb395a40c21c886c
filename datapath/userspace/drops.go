package userspace

import "sync/atomic"

// DropReason tells why the datapath discarded a packet.
type DropReason uint8

const (
	DropMalformed  DropReason = iota // not an IP packet, or ESP too short
	DropUnknownSPI                   // no inbound SA with this SPI
	DropReplay                       // outside or already seen in the anti-replay window
	DropAuth                         // ICV mismatch ("icv")
	DropTrailer                      // bad padding or next header after decryption
	DropSelector                     // inner packet outside the SA's traffic selectors (in, or out of a narrowed SA)
	DropExpired                      // SA past its hard lifetime or out of sequence numbers
	DropQueueFull                    // inbound queue or buffer pool exhausted
	DropTooBig                       // packet larger than the datapath buffers
	DropNoPolicy                     // packet in the TUN matched no policy
	DropNoSA                         // policy matched, SA not installed (acquire sent)
	DropSend                         // sending the ESP packet or writing the TUN failed
	numDropReasons
)

var dropNames = [numDropReasons]string{
	"malformed", "unknown_spi", "replay", "icv", "trailer", "selector", "expired",
	"queue_full", "too_big", "no_policy", "no_sa", "send",
}

func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

type dropCounters [numDropReasons]atomic.Uint64

func (c *dropCounters) inc(r DropReason) { c[r].Add(1) }

func (c *dropCounters) add(r DropReason, n uint64) { c[r].Add(n) }

// DropCounts reports the packets discarded so far by reason, every reason included; the
// xfrm datapath reports the same set.
func (d *Datapath) DropCounts() (map[string]uint64, error) {
	out := make(map[string]uint64, numDropReasons)
	for r := range numDropReasons {
		out[r.String()] = d.drops[r].Load()
	}
	return out, nil
}
