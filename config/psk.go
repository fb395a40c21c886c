package config

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/espgw/espgw/model"
)

// maxPSKLine bounds one line of a pre-shared key file.
const maxPSKLine = 4096

// LookupPSK reads a racoon-style pre-shared key file and returns the key for peer.
//
// Each line is "<identifier> <key>": the identifier is an address (other identifiers, such as
// FQDNs, are allowed and skipped) and the key is the rest of the line without surrounding
// blanks. A key written as 0x followed by hex digits is binary. Lines whose first non-blank
// character is '#' and blank lines are ignored. A second line for peer is an error rather than
// silently shadowed. Errors name line numbers and identifiers, never keys.
func LookupPSK(r io.Reader, peer netip.Addr) (model.Secret, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxPSKLine)
	var (
		key   model.Secret
		found int // line of the key for peer, 0 = none yet
	)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		id, rest := line, ""
		if i := strings.IndexAny(line, " \t"); i >= 0 {
			id, rest = line[:i], strings.TrimSpace(line[i+1:])
		}
		if rest == "" {
			// Not quoted: a line holding only a key would put the key here.
			return nil, fmt.Errorf("line %d: no key after the identifier (want \"<address> <key>\")", n)
		}
		addr, err := netip.ParseAddr(id)
		if err != nil || addr.Unmap() != peer.Unmap() {
			continue
		}
		if found != 0 {
			return nil, fmt.Errorf("line %d: second key for %v (first on line %d)", n, peer, found)
		}
		if key, err = decodePSK(rest); err != nil {
			return nil, fmt.Errorf("line %d: key for %v: %w", n, peer, err)
		}
		found = n
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("a line is longer than %d bytes", maxPSKLine)
		}
		return nil, err
	}
	if found == 0 {
		return nil, fmt.Errorf("no line for %v (want \"%v <key>\")", peer, peer)
	}
	return key, nil
}

// decodePSK turns the key text of a psk_file line into key bytes (racoon's 0x hex form).
func decodePSK(s string) (model.Secret, error) {
	h, isHex := strings.CutPrefix(s, "0x")
	if !isHex {
		return model.Secret(s), nil
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) == 0 {
		// The hex error would quote the offending key byte.
		return nil, errors.New("starts with 0x but is not an even number of hex digits")
	}
	return model.Secret(b), nil
}
