package esp

import (
	"time"

	"github.com/espgw/espgw/datapath"
)

// Expiry is how far an SA is through its lifetime.
type Expiry uint8

const (
	Alive Expiry = iota
	Soft         // rekey now
	Hard         // remove the SA
)

// Expiry reports the SA's lifetime state at now, by bytes, by time, and (outbound) by
// sequence numbers: an SA that cannot send any more is Hard.
func (s *SA) Expiry(now time.Time) Expiry {
	l, b, age := s.lifetime, s.bytes.Load(), now.Sub(s.installed)
	switch {
	case l.HardBytes != 0 && b >= l.HardBytes, l.Hard != 0 && age >= l.Hard, s.seq.Load() >= 1<<32-1:
		return Hard
	case l.SoftBytes != 0 && b >= l.SoftBytes, l.Soft != 0 && age >= l.Soft, s.seq.Load() >= 1<<32-1<<20:
		return Soft
	}
	return Alive
}

// Counters reports the traffic of the SA: bytes are payload (inner packet) bytes.
func (s *SA) Counters() datapath.Counters {
	return datapath.Counters{
		Bytes:        s.bytes.Load(),
		Packets:      s.packets.Load(),
		ReplayDrops:  s.replayDrops.Load(),
		AuthFailures: s.authFailure.Load(),
		Installed:    s.installed,
	}
}
