package interop

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/espgw/espgw/ike/isakmp"
	"github.com/espgw/espgw/internal/testutil"
)

// Charon at log level 4 dumps key material as "<name> => N bytes @ 0x..." followed by hex
// lines from the same thread; other threads' lines may come in between.
var (
	charonThread = regexp.MustCompile(`^\S+ (\d+)\[\w+\] `)
	charonChunk  = regexp.MustCompile(`^\S+ (\d+)\[\w+\] <[^>]*> (.+) => (\d+) bytes @`)
	charonHex    = regexp.MustCompile(`^\S+ \d+\[\w+\] <[^>]*>\s+\d+: ((?:[0-9A-F]{2} )+)`)
)

// charonChunks returns every chunk dump of a charon log by name, in log order.
func charonChunks(tb testing.TB, log string) map[string][][]byte {
	tb.Helper()
	lines := strings.Split(log, "\n")
	out := make(map[string][][]byte)
	for i, l := range lines {
		m := charonChunk.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[3])
		var b []byte
		for _, next := range lines[i+1:] {
			if len(b) >= n {
				break
			}
			if t := charonThread.FindStringSubmatch(next); t == nil || t[1] != m[1] {
				continue
			}
			h := charonHex.FindStringSubmatch(next)
			if h == nil {
				break
			}
			v, err := hex.DecodeString(strings.ReplaceAll(h[1], " ", ""))
			if err != nil {
				tb.Fatalf("charon log line %q: %v", next, err)
			}
			b = append(b, v...)
		}
		if len(b) < n {
			tb.Fatalf("charon log chunk %q: %d of %d bytes", m[2], len(b), n)
		}
		out[m[2]] = append(out[m[2]], b[:n])
	}
	return out
}

// capturedMessage is one ISAKMP message on the wire.
type capturedMessage struct {
	fromInitiator bool
	header        isakmp.Header
	raw           []byte
}

// capturedMessages returns the distinct ISAKMP messages in pcap, in order, with the non-ESP
// marker of port 4500 removed.
func capturedMessages(tb testing.TB, pcap string, initiator netip.Addr) []capturedMessage {
	tb.Helper()
	var out []capturedMessage
	rows := testutil.TShark(tb, pcap, testutil.Keys{}, "isakmp", "ip.src", "udp.dstport", "udp.payload")
	for _, r := range rows {
		b, err := hex.DecodeString(strings.ReplaceAll(r.First("udp.payload"), ":", ""))
		if err != nil {
			tb.Fatalf("udp.payload %q: %v", r.First("udp.payload"), err)
		}
		if r.First("udp.dstport") == "4500" {
			if len(b) < 4 || !bytes.Equal(b[:4], make([]byte, 4)) {
				continue // ESP
			}
			b = b[4:]
		}
		h, err := isakmp.ParseHeader(b)
		if err != nil {
			tb.Fatalf("captured ISAKMP message: %v", err)
		}
		dup := false
		for _, m := range out {
			dup = dup || bytes.Equal(m.raw, b) // a retransmission
		}
		if !dup {
			out = append(out, capturedMessage{r.First("ip.src") == initiator.String(), h, b})
		}
	}
	return out
}

// exchange returns the messages of exchange type e, checking they alternate starting with
// the initiator.
func exchange(tb testing.TB, msgs []capturedMessage, e isakmp.ExchangeType, want int) []capturedMessage {
	tb.Helper()
	var out []capturedMessage
	for _, m := range msgs {
		if m.header.Exchange == e {
			out = append(out, m)
		}
	}
	if len(out) < want {
		tb.Fatalf("%d %v messages captured, want %d", len(out), e, want)
	}
	for i, m := range out[:want] {
		if m.fromInitiator != (i%2 == 0) {
			tb.Fatalf("%v message %d from the wrong side", e, i+1)
		}
	}
	return out[:want]
}

// payload returns the first payload of type P in ps.
func payload[P isakmp.Payload](tb testing.TB, ps []isakmp.Payload) P {
	tb.Helper()
	for _, p := range ps {
		if v, ok := p.(P); ok {
			return v
		}
	}
	var zero P
	tb.Fatalf("no %T payload among %d", zero, len(ps))
	return zero
}

// transforms flattens the transforms of every proposal of an SA payload.
func transforms(sa *isakmp.SA) []isakmp.Transform {
	var ts []isakmp.Transform
	for _, p := range sa.Proposals {
		ts = append(ts, p.Transforms...)
	}
	return ts
}
