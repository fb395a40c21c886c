package xfrm

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
)

// ESPUnavailableError says why the kernel cannot carry ESP. It unwraps to the kernel's
// errno, so errors.Is(err, unix.EPROTONOSUPPORT) and errors.Is(err, unix.ENOSYS) work.
type ESPUnavailableError struct {
	Algorithm string // for ENOSYS: the XFRM algorithm the kernel lacks, if known
	Err       error
}

func (e *ESPUnavailableError) Error() string {
	var errno unix.Errno
	switch {
	case errors.Is(e.Err, unix.ENOSYS) && e.Algorithm != "":
		return fmt.Sprintf("kernel lacks algorithm %s (%s)", e.Algorithm, kconfigFor(e.Algorithm))
	case errors.Is(e.Err, unix.EPROTONOSUPPORT):
		return "kernel cannot install ESP SAs: EPROTONOSUPPORT (enable CONFIG_INET_ESP / load esp4)"
	case errors.As(e.Err, &errno):
		return fmt.Sprintf("kernel cannot install ESP SAs: %s (%v)", unix.ErrnoName(errno), errno)
	}
	return fmt.Sprintf("kernel cannot install ESP SAs: %v", e.Err)
}

func (e *ESPUnavailableError) Unwrap() error { return e.Err }

// Transform is one ESP algorithm combination to probe.
type Transform struct {
	Enc   datapath.Encryption
	Integ datapath.Integrity // IntegNone with EncAESGCM16
	// KeyBits is the AES key size (128, 192 or 256); zero means 128. 3DES ignores it.
	KeyBits int
}

// DefaultTransform is probed when Probe is given none.
var DefaultTransform = Transform{Enc: datapath.EncAESCBC, Integ: datapath.IntegHMACSHA1_96}

// Probe installs and removes a throwaway tunnel-mode ESP state per transform in ns (the zero
// value or netns.None() mean the current namespace), with a random SPI between TEST-NET-1
// addresses. It returns nil if all install, otherwise an *ESPUnavailableError naming the
// first missing piece: ESP itself or an algorithm.
func Probe(ctx context.Context, ns netns.NsHandle, ts ...Transform) error {
	if len(ts) == 0 {
		ts = []Transform{DefaultTransform}
	}
	h, err := netlink.NewHandleAt(nsOrNone(ns), unix.NETLINK_XFRM)
	if err != nil {
		return fmt.Errorf("probe ESP: open xfrm netlink: %w", err)
	}
	defer h.Close()
	for _, t := range ts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := probeOne(h, t); err != nil {
			return err
		}
	}
	return nil
}

// probeOne installs and removes one throwaway SA for t.
func probeOne(h *netlink.Handle, t Transform) error {
	st, err := stateFor(probeSA(t), dirOut)
	if err != nil {
		return fmt.Errorf("probe ESP: %w", err)
	}
	defer wipe(st)
	err = tryState(h, st)
	if err == nil {
		return nil
	}
	e := &ESPUnavailableError{Err: err}
	if errors.Is(err, unix.ENOSYS) {
		e.Algorithm = missingAlgorithm(h, st)
	}
	return e
}

// tryState installs st and removes it again.
func tryState(h *netlink.Handle, st *netlink.XfrmState) error {
	if err := h.XfrmStateAdd(st); err != nil {
		return err
	}
	if err := h.XfrmStateDel(st); err != nil {
		return fmt.Errorf("remove probe SA spi 0x%08x: %w", st.Spi, err)
	}
	return nil
}

// missingAlgorithm finds which algorithm of st made the kernel answer ENOSYS. The kernel
// resolves algorithms before it looks for the ESP protocol, so a state carrying one
// algorithm alone fails with ENOSYS exactly when that algorithm is missing.
func missingAlgorithm(h *netlink.Handle, st *netlink.XfrmState) string {
	algs := []*netlink.XfrmStateAlgo{st.Aead, st.Crypt, st.Auth}
	singles := []netlink.XfrmState{*st, *st, *st}
	singles[0].Crypt, singles[0].Auth = nil, nil
	singles[1].Aead, singles[1].Auth = nil, nil
	singles[2].Aead, singles[2].Crypt = nil, nil
	var names []string
	for i, alg := range algs {
		if alg == nil {
			continue
		}
		if err := tryState(h, &singles[i]); errors.Is(err, unix.ENOSYS) {
			return alg.Name
		}
		names = append(names, alg.Name)
	}
	return strings.Join(names, " or ")
}

// probeSA is a valid SA for t with random keys and SPI between TEST-NET-1 addresses.
func probeSA(t Transform) datapath.SA {
	keyLen := 24 // 3DES
	if t.Enc != datapath.Enc3DESCBC {
		keyLen = t.KeyBits / 8
		if keyLen == 0 {
			keyLen = 16
		}
	}
	if t.Enc == datapath.EncAESGCM16 {
		keyLen += 4 // salt
	}
	sa := datapath.SA{
		SPI:    randomSPI(),
		Src:    netip.MustParseAddr("192.0.2.1"),
		Dst:    netip.MustParseAddr("192.0.2.2"),
		Enc:    t.Enc,
		EncKey: randomKey(keyLen),
		Integ:  t.Integ,
		Selectors: []datapath.Selector{{
			Local:  netip.MustParsePrefix("192.0.2.1/32"),
			Remote: netip.MustParsePrefix("192.0.2.2/32"),
		}},
	}
	if a, ok := integrities[t.Integ]; ok {
		sa.IntegKey = randomKey(a.keyLens[0])
	}
	return sa
}

func randomSPI() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:]) | 0x8000_0000 // well clear of the reserved 1-255
}

func randomKey(n int) datapath.Key {
	k := make(datapath.Key, n)
	rand.Read(k)
	return k
}
