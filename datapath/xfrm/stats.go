package xfrm

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// xfrmStatPath is the kernel's XFRM MIB of the reading thread's network namespace (the
// kernel counts per namespace; Documentation/networking/xfrm_proc.rst).
const xfrmStatPath = "/proc/thread-self/net/xfrm_stat"

// dropReasons maps the kernel's XFRM MIB counters onto the drop reasons of
// datapath/userspace (DropReason.String()), so that both datapaths report the same set.
// Counters not listed here, and ones a newer kernel adds, count as "other".
var dropReasons = map[string]string{
	"XfrmInBufferError":     "queue_full",
	"XfrmInHdrError":        "malformed",
	"XfrmInNoStates":        "unknown_spi", // no SA for the SPI
	"XfrmInStateProtoError": "icv",         // ESP: ICV (or decryption) failed, the key is wrong
	"XfrmInStateModeError":  "malformed",
	"XfrmInStateSeqError":   "replay", // outside or already seen in the replay window
	"XfrmInStateExpired":    "expired",
	"XfrmInTmplMismatch":    "selector", // the decrypted packet matches no inbound policy of its SA
	"XfrmInNoPols":          "selector",
	"XfrmInPolBlock":        "selector",
	"XfrmOutNoStates":       "no_sa", // an outbound policy matched, its SA is not installed
	"XfrmOutStateSeqError":  "expired",
	"XfrmOutStateExpired":   "expired",
	"XfrmOutNoQueueSpace":   "queue_full",
	"XfrmFwdHdrError":       "malformed",
}

// DropCounts reads the kernel's XFRM statistics of the Datapath's network namespace and sums
// them by drop reason. The counters cover the whole namespace, not only espgw's SAs.
func (d *Datapath) DropCounts() (map[string]uint64, error) {
	var data []byte
	err := inNetns(d.ns, func() error {
		var err error
		data, err = os.ReadFile(xfrmStatPath)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read XFRM statistics: %w", err)
	}
	stats, err := parseXfrmStat(data)
	if err != nil {
		return nil, fmt.Errorf("read XFRM statistics: %w", err)
	}
	out := make(map[string]uint64)
	for name, v := range stats {
		r, ok := dropReasons[name]
		if !ok {
			r = "other"
		}
		out[r] += v
	}
	return out, nil
}

// parseXfrmStat parses /proc/net/xfrm_stat: one "Name<blanks>value" line per counter.
func parseXfrmStat(data []byte) (map[string]uint64, error) {
	stats := make(map[string]uint64)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || !strings.HasPrefix(f[0], "Xfrm") {
			return nil, fmt.Errorf("line %d %q: want \"Xfrm<Name> <value>\"", n, line)
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s value %q: want an unsigned integer", n, f[0], f[1])
		}
		if _, dup := stats[f[0]]; dup {
			return nil, fmt.Errorf("line %d: %s appears twice", n, f[0])
		}
		stats[f[0]] = v
	}
	return stats, sc.Err()
}
