package strongswan

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
)

// IKESA is one IKE_SA (for IKEv1: the ISAKMP SA) as listed by `swanctl --list-sas`.
type IKESA struct {
	Name                       string // connection name
	UniqueID                   int    // charon's id, also in charon.log as <name|id>
	Version                    int    // 1 for IKEv1
	State                      string // e.g. ESTABLISHED, CONNECTING
	LocalHost, RemoteHost      string
	LocalPort, RemotePort      int // 4500 once NAT-T floated
	LocalID, RemoteID          string
	Initiator                  bool
	InitiatorSPI, ResponderSPI uint64 // IKEv1: initiator and responder cookies
	EncrAlg                    string // strongSwan names, e.g. 3DES_CBC, AES_CBC
	EncrKeySize                int    // bits; 0 when implied by the algorithm
	IntegAlg, PRFAlg, DHGroup  string // e.g. HMAC_SHA1_96, PRF_HMAC_SHA1, MODP_1024
	Children                   []ChildSA
	Attrs                      map[string]string // every scalar swanctl listed, by its key
}

// ChildSA is one CHILD_SA (IKEv1: the IPsec SA pair of one quick mode).
type ChildSA struct {
	Name                 string // child config name
	UniqueID, ReqID      int
	State                string // e.g. INSTALLED
	Mode                 string // TUNNEL
	Protocol             string // ESP
	Encap                bool   // ESP in UDP
	SPIIn, SPIOut        uint32
	EncrAlg              string
	EncrKeySize          int
	IntegAlg, DHGroup    string // IntegAlg "" for AEAD; DHGroup "" without PFS
	BytesIn, PacketsIn   uint64
	BytesOut, PacketsOut uint64
	LocalTS, RemoteTS    []string
	Attrs                map[string]string
}

// Proposal is the negotiated transform set the way swanctl prints it, e.g.
// "AES_GCM_16_256/MODP_2048" or "3DES_CBC/HMAC_SHA1_96/MODP_1024".
func (c ChildSA) Proposal() string {
	return joinProposal(c.EncrAlg, c.EncrKeySize, c.IntegAlg, "", c.DHGroup)
}

// Proposal is the negotiated phase-1 transform set, e.g. "AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048".
func (s IKESA) Proposal() string {
	return joinProposal(s.EncrAlg, s.EncrKeySize, s.IntegAlg, s.PRFAlg, s.DHGroup)
}

func joinProposal(enc string, size int, parts ...string) string {
	if size != 0 {
		enc += "_" + strconv.Itoa(size)
	}
	out := []string{enc}
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "/")
}

// ListSAs returns the IKE_SAs charon currently has, with their CHILD_SAs.
func (c *Charon) ListSAs() ([]IKESA, error) {
	out, err := c.Swanctl("--list-sas", "--pretty")
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, out)
	}
	return ParseListSAs(out)
}

// WaitInstalled waits up to timeout for an ESTABLISHED IKE_SA with an INSTALLED CHILD_SA named
// child and returns both; it fails the test otherwise. Use it when the peer initiates.
func (c *Charon) WaitInstalled(tb testing.TB, child string, timeout time.Duration) (IKESA, ChildSA) {
	tb.Helper()
	var ike IKESA
	var cs ChildSA
	err := testutil.Poll(timeout, func() (bool, error) {
		sas, err := c.ListSAs()
		if err != nil {
			return false, err
		}
		for _, s := range sas {
			for _, ch := range s.Children {
				if s.State == "ESTABLISHED" && ch.Name == child && ch.State == "INSTALLED" {
					ike, cs = s, ch
					return true, nil
				}
			}
		}
		return false, fmt.Errorf("no INSTALLED CHILD_SA %q yet in %d IKE_SAs", child, len(sas))
	})
	if err != nil {
		tb.Fatalf("charon in netns %s: %v", c.NS.Name(), err)
	}
	return ike, cs
}

// InstalledChild returns the INSTALLED CHILD_SA whose inbound SPI is spiIn, with its IKE_SA;
// the error says so when there is none.
func (c *Charon) InstalledChild(spiIn uint32) (IKESA, ChildSA, error) {
	sas, err := c.ListSAs()
	if err != nil {
		return IKESA{}, ChildSA{}, err
	}
	for _, s := range sas {
		for _, ch := range s.Children {
			if ch.State == "INSTALLED" && ch.SPIIn == spiIn {
				return s, ch, nil
			}
		}
	}
	return IKESA{}, ChildSA{}, fmt.Errorf("charon in netns %s: no INSTALLED CHILD_SA with inbound SPI %08x", c.NS.Name(), spiIn)
}

// section is one `name { ... }` block of swanctl --pretty output.
type section struct {
	name     string
	scalars  map[string]string
	lists    map[string][]string
	children []*section
}

// ParseListSAs parses the output of `swanctl --list-sas --pretty`. Lines outside the
// "list-sa event { ... }" blocks (plugin warnings) are ignored.
func ParseListSAs(out string) ([]IKESA, error) {
	root, err := parseSections(out)
	if err != nil {
		return nil, err
	}
	var sas []IKESA
	for _, ev := range root.children {
		if ev.name != "list-sa event" {
			continue
		}
		for _, s := range ev.children {
			sa, err := ikeSAFrom(s)
			if err != nil {
				return nil, err
			}
			sas = append(sas, sa)
		}
	}
	return sas, nil
}

func parseSections(out string) (*section, error) {
	root := &section{}
	stack := []*section{root}
	listKey := "" // non-empty while inside "key = [ ... ]"
	sc := bufio.NewScanner(strings.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		top := stack[len(stack)-1]
		switch {
		case listKey != "":
			if line == "]" {
				listKey = ""
			} else {
				top.lists[listKey] = append(top.lists[listKey], line)
			}
		case strings.HasSuffix(line, " {"):
			s := &section{name: strings.TrimSuffix(line, " {"), scalars: map[string]string{}, lists: map[string][]string{}}
			top.children = append(top.children, s)
			stack = append(stack, s)
		case line == "}":
			if len(stack) == 1 {
				return nil, fmt.Errorf("swanctl output line %d: unbalanced '}'", n)
			}
			stack = stack[:len(stack)-1]
		case len(stack) > 1 && strings.Contains(line, " = "):
			k, v, _ := strings.Cut(line, " = ")
			if v == "[" {
				listKey = k
				top.lists[k] = []string{}
			} else {
				top.scalars[k] = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(stack) != 1 || listKey != "" {
		return nil, fmt.Errorf("swanctl output: %d unclosed '{' (list %q open)", len(stack)-1, listKey)
	}
	return root, nil
}

// fields converts the scalars of one section, remembering the first conversion error.
type fields struct {
	s   *section
	err error
}

func (f *fields) str(k string) string { return f.s.scalars[k] }

func (f *fields) yes(k string) bool { return f.s.scalars[k] == "yes" }

func (f *fields) uint(k string, base, bits int) uint64 {
	v, ok := f.s.scalars[k]
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(v, base, bits)
	if err != nil && f.err == nil {
		f.err = fmt.Errorf("swanctl %s field %s=%q: want a base-%d integer: %w", f.s.name, k, v, base, err)
	}
	return n
}

func (f *fields) int(k string) int { return int(f.uint(k, 10, 32)) }

func ikeSAFrom(s *section) (IKESA, error) {
	f := &fields{s: s}
	sa := IKESA{
		Name:         s.name,
		UniqueID:     f.int("uniqueid"),
		Version:      f.int("version"),
		State:        f.str("state"),
		LocalHost:    f.str("local-host"),
		LocalPort:    f.int("local-port"),
		LocalID:      f.str("local-id"),
		RemoteHost:   f.str("remote-host"),
		RemotePort:   f.int("remote-port"),
		RemoteID:     f.str("remote-id"),
		Initiator:    f.yes("initiator"),
		InitiatorSPI: f.uint("initiator-spi", 16, 64),
		ResponderSPI: f.uint("responder-spi", 16, 64),
		EncrAlg:      f.str("encr-alg"),
		EncrKeySize:  f.int("encr-keysize"),
		IntegAlg:     f.str("integ-alg"),
		PRFAlg:       f.str("prf-alg"),
		DHGroup:      f.str("dh-group"),
		Attrs:        s.scalars,
	}
	for _, cs := range s.children {
		if cs.name != "child-sas" {
			continue
		}
		for _, c := range cs.children {
			cf := &fields{s: c}
			sa.Children = append(sa.Children, ChildSA{
				Name:        cf.str("name"),
				UniqueID:    cf.int("uniqueid"),
				ReqID:       cf.int("reqid"),
				State:       cf.str("state"),
				Mode:        cf.str("mode"),
				Protocol:    cf.str("protocol"),
				Encap:       cf.yes("encap"),
				SPIIn:       uint32(cf.uint("spi-in", 16, 32)),
				SPIOut:      uint32(cf.uint("spi-out", 16, 32)),
				EncrAlg:     cf.str("encr-alg"),
				EncrKeySize: cf.int("encr-keysize"),
				IntegAlg:    cf.str("integ-alg"),
				DHGroup:     cf.str("dh-group"),
				BytesIn:     cf.uint("bytes-in", 10, 64),
				PacketsIn:   cf.uint("packets-in", 10, 64),
				BytesOut:    cf.uint("bytes-out", 10, 64),
				PacketsOut:  cf.uint("packets-out", 10, 64),
				LocalTS:     c.lists["local-ts"],
				RemoteTS:    c.lists["remote-ts"],
				Attrs:       c.scalars,
			})
			if cf.err != nil {
				return IKESA{}, cf.err
			}
		}
	}
	return sa, f.err
}
