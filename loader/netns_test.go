package loader

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// vethPair connects a and b with a veth pair, addresses aAddr/bAddr (CIDR), and returns the
// interface names. Transmit checksum offload is off on both ends so every TCP segment crosses
// with a full checksum that the receiver verifies.
func vethPair(tb testing.TB, a, b *testutil.NetNS, aAddr, bAddr string) (string, string) {
	tb.Helper()
	testutil.RequireTool(tb, "ethtool", "ethtool")
	testutil.Veth(tb, a, "va", aAddr, b, "vb", bAddr)
	a.Exec(tb, "ethtool", "-K", "va", "tx", "off")
	b.Exec(tb, "ethtool", "-K", "vb", "tx", "off")
	return "va", "vb"
}

// tcpCounter reads one Tcp counter of /proc/net/snmp as seen from inside ns.
func tcpCounter(tb testing.TB, ns *testutil.NetNS, field string) uint64 {
	tb.Helper()
	var v uint64
	ns.In(tb, func() error {
		f, err := os.Open("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		defer f.Close()
		var names []string
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) == 0 || fields[0] != "Tcp:" {
				continue
			}
			if names == nil {
				names = fields
				continue
			}
			for i, name := range names {
				if name == field && i < len(fields) {
					v, err = strconv.ParseUint(fields[i], 10, 64)
					return err
				}
			}
		}
		tb.Fatalf("no Tcp %s in /proc/net/snmp of %s", field, ns)
		return nil
	})
	return v
}
