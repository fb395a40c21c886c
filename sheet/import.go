package sheet

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/espgw/espgw/config/emit"
)

// Result is the connection read from a sheet and what could not be read.
type Result struct {
	Conn     emit.Connection
	Problems []Problem // cells that could not be read
	Ignored  []Problem // rows with values that are no setting of espgw
	Defaults []string  // settings the sheet does not give, filled with espgw's defaults
}

// layout says which column holds what.
type layout struct {
	header              int // row of the column headings, -1 if none
	label, ours, theirs int
	notes               int // -1 if none
}

// findLayout finds the header row ("Parameter | MegaTelecom | Client | Notes") and the role
// of each column. Without one, it assumes label, partner, ours, notes in columns A-D.
func findLayout(g *Grid) layout {
	for r := range g.Rows {
		if mergedAcross(g.Rows[r]) {
			continue // a title spanning the table
		}
		l := layout{header: r, label: -1, ours: -1, theirs: -1, notes: -1}
		filled := 0
		for c := range g.Rows[r] {
			n := norm(g.Cell(r, c))
			if n == "" {
				continue
			}
			filled++
			switch {
			case l.label < 0 && has(n, labelHeads...):
				l.label = c
			case l.notes < 0 && has(n, noteHeads...):
				l.notes = c
			case l.ours < 0 && has(n, ourHeads...):
				l.ours = c
			case l.theirs < 0:
				l.theirs = c
			}
		}
		if l.label >= 0 && filled >= 3 && (l.ours >= 0 || l.theirs >= 0) {
			if l.ours < 0 || l.theirs < 0 { // one value column named, the other is the first unnamed
				for c := l.label + 1; c < len(g.Rows[r]); c++ {
					if c != l.notes && c != l.ours && c != l.theirs && g.Cell(r, c) != "" {
						if l.ours < 0 {
							l.ours = c
						} else {
							l.theirs = c
						}
						break
					}
				}
			}
			if l.ours >= 0 && l.theirs >= 0 {
				return l
			}
		}
	}
	return layout{header: -1, label: 0, theirs: 1, ours: 2, notes: 3}
}

// mergedAcross reports whether every non-empty cell of row holds the same text, as a
// merged title or section heading does after ReadXLSX copied its value.
func mergedAcross(row []string) bool {
	first := ""
	for _, c := range row {
		c = strings.TrimSpace(c)
		switch {
		case c == "":
		case first == "":
			first = c
		case c != first:
			return false
		}
	}
	return true
}

// Options of Import.
type Options struct {
	Name string // connection name; "" = from the partner's column heading
}

// Import reads a filled parameter sheet.
func Import(g *Grid, opt Options) *Result {
	l := findLayout(g)
	im := &importer{g: g, l: l, res: &Result{}}
	im.read()
	return im.build(opt)
}

// value is a parameter as written on both sides.
type value struct {
	row      int
	ours     string
	theirs   string
	has      bool
	hasOurs  bool
	hasTheir bool
}

type importer struct {
	g      *Grid
	l      layout
	res    *Result
	fields map[section]map[field]value
	ourNet []netip.Prefix
	theirs []netip.Prefix
	table  []tableRow
}

type tableRow struct {
	row                   int
	name                  string
	local, remote         []netip.Prefix // several only in IKEv2 (build checks)
	proto                 uint8
	localPort, remotePort uint16
}

func (im *importer) problem(r, c int, reason string, args ...any) {
	im.res.Problems = append(im.res.Problems, Problem{Addr: im.g.Addr(r, c), Value: im.g.Cell(r, c), Reason: fmt.Sprintf(reason, args...)})
}

// read walks the rows below the header, tracking the section.
func (im *importer) read() {
	g, l := im.g, im.l
	im.fields = map[section]map[field]value{}
	sec := secGeneral
	var tableCols map[string]int
	for r := l.header + 1; r < len(g.Rows); r++ {
		label, ours, theirs := g.Cell(r, l.label), g.Cell(r, l.ours), g.Cell(r, l.theirs)
		if label == "" && ours == "" && theirs == "" {
			tableCols = nil // a blank row ends a table
			continue
		}
		// A section heading: only the label (merged across the row, its text in every cell).
		if (ours == "" || ours == label) && (theirs == "" || theirs == label) {
			if s, ok := sectionOf(label); ok {
				sec, tableCols = s, nil
				continue
			}
		}
		if tableCols != nil {
			im.tableRow(r, tableCols)
			continue
		}
		f := fieldOf(sec, label)
		if sec == secDomains && f != fDomain && isTableHeader(label) {
			tableCols = im.tableHeader(r)
			continue
		}
		if f == fNone || (sec == secDomains && f != fDomain) {
			if ours != "" || theirs != "" {
				im.res.Ignored = append(im.res.Ignored, Problem{Addr: g.Addr(r, l.label), Value: label, Reason: "not a setting espgw uses (row ignored)"})
			}
			continue
		}
		if f == fDomain {
			im.domains(r)
			continue
		}
		if f == fPeerIP || f == fIdentity || f == fVersion || f == fMode || f == fAuth || f == fProtocol {
			// Phase-less settings live in whatever section the sheet puts them.
		} else if sec == secGeneral || sec == secDomains {
			sec = secPhase1 // algorithms before any phase heading are phase 1's
		}
		key := sec
		if f == fPeerIP || f == fIdentity || f == fVersion || f == fMode || f == fAuth {
			key = secGeneral
		}
		if im.fields[key] == nil {
			im.fields[key] = map[field]value{}
		}
		if _, dup := im.fields[key][f]; dup {
			im.res.Ignored = append(im.res.Ignored, Problem{Addr: g.Addr(r, l.label), Value: label, Reason: fmt.Sprintf("a second %s row (the first one is used)", fieldNames[f])})
			continue
		}
		im.fields[key][f] = value{row: r, ours: ours, theirs: theirs, has: true, hasOurs: ours != "", hasTheir: theirs != ""}
	}
}

func isTableHeader(label string) bool {
	n := norm(label)
	return has(n, "tunnel", "туннел", "name", "имя", "название", "№") || n == "n" || n == "no"
}

// tableHeader maps the headings of a tunnels table to columns: the label column holds the
// tunnel name, ours/theirs the subnets; protocol and port columns are found by their text.
func (im *importer) tableHeader(r int) map[string]int {
	cols := map[string]int{}
	for c := range im.g.Rows[r] {
		n := norm(im.g.Cell(r, c))
		switch {
		case has(n, "protocol", "протокол"):
			cols["proto"] = c
		case has(n, "port", "порт") && c == im.l.ours || has(n, "port", "порт") && has(n, ourHeads...):
			cols["ourPort"] = c
		case has(n, "port", "порт"):
			cols["theirPort"] = c
		}
	}
	return cols
}

func (im *importer) tableRow(r int, cols map[string]int) {
	g, l := im.g, im.l
	t := tableRow{row: r, name: g.Cell(r, l.label)}
	var ok1, ok2 bool
	t.local, ok1 = im.rowSubnets(r, l.ours)
	t.remote, ok2 = im.rowSubnets(r, l.theirs)
	if !ok1 || !ok2 {
		return
	}
	if c, ok := cols["proto"]; ok && g.Cell(r, c) != "" {
		p, err := parseProtocol(g.Cell(r, c))
		if err != nil {
			im.problem(r, c, "%v", err)
			return
		}
		t.proto = p
	}
	for key, port := range map[string]*uint16{"ourPort": &t.localPort, "theirPort": &t.remotePort} {
		if c, ok := cols[key]; ok && g.Cell(r, c) != "" && norm(g.Cell(r, c)) != "any" {
			var n uint16
			if _, err := fmt.Sscanf(g.Cell(r, c), "%d", &n); err != nil || n == 0 {
				im.problem(r, c, "unknown port (want a number from 1 to 65535 or any)")
				return
			}
			*port = n
		}
	}
	im.table = append(im.table, t)
}

// rowSubnets reads the subnets of one side of a tunnel row in cell (r, c): one, or several
// for one IKEv2 child SA.
func (im *importer) rowSubnets(r, c int) ([]netip.Prefix, bool) {
	ps, ok := im.prefixes(r, c)
	if !ok && im.g.Cell(r, c) == "" {
		im.problem(r, c, "no subnet in this tunnel row")
	}
	return ps, ok
}

// domains reads an encryption domain row: the subnets in our column are ours, those in the
// partner's column theirs.
func (im *importer) domains(r int) {
	if ps, ok := im.prefixes(r, im.l.ours); ok {
		im.ourNet = append(im.ourNet, ps...)
	}
	if ps, ok := im.prefixes(r, im.l.theirs); ok {
		im.theirs = append(im.theirs, ps...)
	}
}

// prefixes reads the subnets of a cell: "10.20.0.0/24, 10.21.0.0/24", "10.10.1.1",
// "10.20.0.0 255.255.255.0", one per line; words in parentheses are notes.
func (im *importer) prefixes(r, c int) ([]netip.Prefix, bool) {
	s := im.g.Cell(r, c)
	if s == "" {
		return nil, false
	}
	words := strings.FieldsFunc(stripParens(s), func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\n' || r == '\t' })
	var out []netip.Prefix
	for i := 0; i < len(words); i++ {
		w := words[i]
		if p, err := netip.ParsePrefix(w); err == nil && p.Addr().Is4() {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(w)
		if err != nil || !a.Is4() {
			im.problem(r, c, "%q is not an IPv4 subnet (want e.g. 10.20.0.0/24)", w)
			return nil, false
		}
		bits := 32
		if i+1 < len(words) {
			if n, ok := maskBits(words[i+1]); ok {
				bits, i = n, i+1
			}
		}
		out = append(out, netip.PrefixFrom(a, bits).Masked())
	}
	return out, len(out) > 0
}

// maskBits reads a dotted netmask "255.255.255.0" as a prefix length.
func maskBits(s string) (int, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, false
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for v&0x80000000 != 0 {
		v <<= 1
		n++
	}
	return n, v == 0
}

func stripParens(s string) string {
	var b strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func parseProtocol(s string) (uint8, error) {
	switch norm(s) {
	case "", "any", "all", "ip", "любой", "все":
		return 0, nil
	case "tcp":
		return 6, nil
	case "udp":
		return 17, nil
	case "icmp":
		return 1, nil
	}
	var n uint8
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("unknown protocol (want any, tcp, udp, icmp or a number)")
}

// agreed returns the value of a setting both sides must agree on, and its column: the
// partner's when both are filled (ours is reported if it differs), else whichever is there.
func (im *importer) agreed(v value, same func(a, b string) bool) (string, int) {
	switch {
	case v.hasOurs && v.hasTheir:
		if !same(v.ours, v.theirs) {
			im.problem(v.row, im.l.ours, "differs from the partner's %q (the partner's is used)", v.theirs)
		}
		return v.theirs, im.l.theirs
	case v.hasTheir:
		return v.theirs, im.l.theirs
	}
	return v.ours, im.l.ours
}

// list splits a cell naming several algorithms: "AES-256, 3DES", "AES-256 or 3DES".
func list(s string) []string {
	s = strings.NewReplacer(" or ", ",", " или ", ",", ";", ",", "\n", ",").Replace(s)
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// WriteYAML writes the connection as espgw YAML; problems, ignored rows and defaults are
// its header comment.
func (r *Result) WriteYAML(w io.Writer, source string) error {
	header := []string{"espgw configuration read from the parameter sheet " + source + " (espgw sheet import)."}
	add := func(title string, lines []string) {
		if len(lines) > 0 {
			header = append(header, title)
			for _, l := range lines {
				header = append(header, "  "+l)
			}
		}
	}
	add("Cells that could not be read:", problemLines(r.Problems))
	add("Rows left out:", problemLines(r.Ignored))
	add("Not in the sheet, espgw's default used:", r.Defaults)
	return emit.Write(w, header, []emit.Connection{r.Conn})
}

func problemLines(ps []Problem) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
