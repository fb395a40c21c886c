package sheet

import (
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/espgw/espgw/model"

	"github.com/xuri/excelize/v2"

	"github.com/espgw/espgw/config/emit"
	"github.com/espgw/espgw/ike/proposal"
)

// rowKind says how a row of the exported sheet is drawn.
type rowKind uint8

const (
	rowTitle rowKind = iota
	rowBlank
	rowHeader      // column headings; the rows above it stay frozen
	rowSection     // bold heading across the table
	rowParam       // Parameter | partner | ours | notes
	rowTableHeader // headings of the tunnels table
	rowTunnel
)

type row struct {
	kind  rowKind
	cells []string
}

// Columns of the exported sheet (A-D; the tunnels table uses A-F).
const sheetName = "VPN"

// layout builds the sheet for connection c: general settings, phase 1, phase 2, tunnels.
func layoutOf(c model.Connection) ([]row, error) {
	if len(c.Tunnels) == 0 {
		return nil, fmt.Errorf("connection %s has no tunnels", c.Name)
	}
	t0 := c.Tunnels[0]
	for _, t := range c.Tunnels[1:] {
		if !slices.Equal(t.Proposals, t0.Proposals) || t.Lifetime != t0.Lifetime || t.LifeKilobytes != t0.LifeKilobytes {
			return nil, fmt.Errorf("tunnels %s and %s have different phase 2 settings: a sheet has one phase 2 section (export them as separate connections)", t0.Name, t.Name)
		}
	}
	phase1, err := phase1Rows(c.IKE)
	if err != nil {
		return nil, err
	}
	p2enc, p2int, pfs, err := espColumns(t0.Proposals)
	if err != nil {
		return nil, err
	}
	natNote, dpdNote := "UDP 4500 (RFC 3947)", "RFC 3706"
	if c.IKE.IsV2() {
		natNote, dpdNote = "UDP 4500 (RFC 7296 2.23)", "liveness check (RFC 7296 2.4)"
	}
	rows := []row{
		{rowTitle, []string{"IPsec VPN parameters: " + c.Name}},
		{rowBlank, nil},
		{rowHeader, []string{"Parameter", "Partner (" + c.Name + ")", "Our side", "Notes"}},
		{rowSection, []string{"General"}},
		{rowParam, []string{"Public IP address (peer IP)", c.RemoteAddress.String(), c.LocalAddress.String(), "Static addresses"}},
		{rowParam, []string{"IKE identity", c.RemoteID.String(), c.LocalID.String(), idNote(c)}},
		{rowSection, []string{"Phase 1 (IKE)"}},
	}
	rows = append(rows, phase1...)
	rows = append(rows, []row{
		both("Lifetime", seconds(c.IKE.Lifetime), emit.Duration(c.IKE.Lifetime)),
		both("NAT traversal (NAT-T)", nattText(c.IKE.NATTraversal), natNote),
		{rowParam, []string{"Dead peer detection (DPD)", "", dpdText(c.IKE), dpdNote}},
		{rowSection, []string{"Phase 2 (IPsec)"}},
		both("Protocol", "ESP, tunnel mode", ""),
		both("Encryption algorithm", p2enc, ""),
		both("Integrity algorithm", p2int, ""),
		both("PFS", pfs, ""),
		both("Lifetime", lifeText(t0), emit.Duration(t0.Lifetime)),
		{rowSection, []string{"Encryption domains (tunnels)"}},
		{rowTableHeader, []string{"Tunnel", "Partner subnet", "Our subnet", "Protocol", "Partner port", "Our port"}},
	}...)
	for _, t := range c.Tunnels {
		rows = append(rows, row{rowTunnel, []string{t.Name, model.Prefixes(t.RemoteSubnets), model.Prefixes(t.LocalSubnets), protoText(t.Protocol), portText(t.RemotePort), portText(t.LocalPort)}})
	}
	return rows, nil
}

func both(label, v, note string) row { return row{rowParam, []string{label, v, v, note}} }

// phase1Rows are the version, mode (IKEv1), authentication and algorithm rows of phase 1.
func phase1Rows(ike model.IKE) ([]row, error) {
	psk := both("Authentication method", "Pre-shared key", "The key is sent separately, never in this sheet")
	if !ike.IsV2() {
		enc, hash, group, err := ikeColumns(ike.Proposals)
		if err != nil {
			return nil, err
		}
		return []row{both("IKE version", "IKEv1", ""), both("Exchange mode", modeText(ike.Mode), ""), psk,
			both("Encryption algorithm", enc, ""), both("Hash algorithm", hash, ""), both("Diffie-Hellman group", group, "")}, nil
	}
	enc, integ, prf, group, err := ikev2Columns(ike.V2Proposals)
	if err != nil {
		return nil, err
	}
	rows := []row{both("IKE version", "IKEv2", "RFC 7296"), psk, both("Encryption algorithm", enc, ""), both("Integrity algorithm", integ, "")}
	if prf != "" {
		rows = append(rows, both("Pseudo-random function (PRF)", prf, ""))
	}
	return append(rows, both("Diffie-Hellman group", group, "")), nil
}

func idNote(c model.Connection) string {
	if c.LocalID.Kind == model.IDAddr && c.RemoteID.Kind == model.IDAddr {
		return "IP addresses"
	}
	return ""
}

func modeText(m model.Mode) string {
	if m == model.ModeAggressive {
		return "Aggressive mode"
	}
	return "Main mode"
}

func nattText(n model.NATTraversal) string {
	switch n {
	case model.NATTOff:
		return "No"
	case model.NATTForce:
		return "Force (always UDP 4500)"
	}
	return "Yes"
}

func dpdText(ike model.IKE) string {
	if ike.DPDDelay <= 0 {
		return "No"
	}
	return "Yes, " + seconds(ike.DPDDelay)
}

func seconds(d interface{ Seconds() float64 }) string { return fmt.Sprintf("%.0f s", d.Seconds()) }

func lifeText(t model.Tunnel) string {
	s := seconds(t.Lifetime)
	if t.LifeKilobytes > 0 {
		s += fmt.Sprintf(" / %d KB", t.LifeKilobytes)
	}
	return s
}

func protoText(p uint8) string {
	switch p {
	case 0:
		return "any"
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	}
	return fmt.Sprint(p)
}

func portText(p uint16) string {
	if p == 0 {
		return "any"
	}
	return fmt.Sprint(p)
}

func cipherText(e proposal.Encryption, bits int) string {
	switch e {
	case proposal.Enc3DES:
		return "3DES"
	case proposal.EncAESGCM16:
		return fmt.Sprintf("AES-GCM-%d (ICV 16)", bits)
	}
	return fmt.Sprintf("AES-%d", bits)
}

func hashText(h proposal.Hash, hmac bool) string {
	s := map[proposal.Hash]string{proposal.HashMD5: "MD5", proposal.HashSHA1: "SHA-1", proposal.HashSHA256: "SHA-256",
		proposal.HashSHA384: "SHA-384", proposal.HashSHA512: "SHA-512"}[h]
	if hmac {
		s = "HMAC-" + s
	}
	return s
}

func groupText(g uint16) string { return fmt.Sprintf("Group %d (%s)", g, proposal.GroupName(g)) }

// distinct returns the distinct values of f over ps, in order.
func distinct[P any, V comparable](ps []P, f func(P) V) []V {
	var out []V
	for _, p := range ps {
		if v := f(p); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// ikeColumns writes phase 1 proposals as three cells; that works only if the proposals are
// every combination of their ciphers, hashes and groups, which is how a sheet reads.
func ikeColumns(ps []proposal.IKE) (enc, hash, group string, err error) {
	type ciph struct {
		e proposal.Encryption
		b int
	}
	cs := distinct(ps, func(p proposal.IKE) ciph { return ciph{p.Encryption, p.KeyBits} })
	hs := distinct(ps, func(p proposal.IKE) proposal.Hash { return p.Hash })
	gs := distinct(ps, func(p proposal.IKE) uint16 { return p.Group })
	if len(cs)*len(hs)*len(gs) != len(ps) {
		return "", "", "", fmt.Errorf("phase 1 proposals %s are not every combination of their algorithms: a sheet cannot say that", proposal.FormatIKE(ps))
	}
	return join(cs, func(c ciph) string { return cipherText(c.e, c.b) }),
		join(hs, func(h proposal.Hash) string { return hashText(h, false) }),
		join(gs, groupText), nil
}

// ikev2Columns writes IKEv2 SA proposals as cells, each combination of their algorithms
// once; prf is "" when every proposal is CBC with the PRF of its integrity algorithm's hash,
// which is what a sheet without a PRF row means.
func ikev2Columns(ps []proposal.IKEv2) (enc, integrity, prf, group string, err error) {
	type ciph struct {
		e proposal.Encryption
		b int
	}
	cs := distinct(ps, func(p proposal.IKEv2) ciph { return ciph{p.Encryption, p.KeyBits} })
	hs := distinct(ps, func(p proposal.IKEv2) proposal.Hash { return p.Integrity })
	hs = slices.DeleteFunc(hs, func(h proposal.Hash) bool { return h == proposal.HashNone })
	prfs := distinct(ps, func(p proposal.IKEv2) proposal.Hash { return p.PRF })
	gs := distinct(ps, func(p proposal.IKEv2) uint16 { return p.Group })
	follows := !slices.ContainsFunc(ps, func(p proposal.IKEv2) bool { return p.PRF != p.Integrity })
	combos := 0
	for _, c := range cs {
		n := len(hs)
		if c.e == proposal.EncAESGCM16 {
			n = 1
		}
		if !follows {
			n *= len(prfs)
		}
		combos += n * len(gs)
	}
	if combos != len(ps) {
		return "", "", "", "", fmt.Errorf("IKEv2 proposals %s are not every combination of their algorithms: a sheet cannot say that", proposal.FormatIKEv2(ps))
	}
	integrity = join(hs, func(h proposal.Hash) string { return hashText(h, true) })
	if integrity == "" {
		integrity = "n/a (AES-GCM)"
	}
	if !follows {
		prf = join(prfs, func(h proposal.Hash) string { return "PRF-" + hashText(h, true) })
	}
	return join(cs, func(c ciph) string { return cipherText(c.e, c.b) }), integrity, prf, join(gs, groupText), nil
}

func espColumns(ps []proposal.ESP) (enc, integrity, pfs string, err error) {
	type ciph struct {
		e proposal.Encryption
		b int
	}
	cs := distinct(ps, func(p proposal.ESP) ciph { return ciph{p.Encryption, p.KeyBits} })
	hs := distinct(ps, func(p proposal.ESP) proposal.Hash { return p.Integrity })
	gs := distinct(ps, func(p proposal.ESP) uint16 { return p.Group })
	hs = slices.DeleteFunc(hs, func(h proposal.Hash) bool { return h == proposal.HashNone })
	combos := 0
	for _, c := range cs {
		if c.e == proposal.EncAESGCM16 {
			combos++
		} else {
			combos += len(hs)
		}
	}
	if len(gs) != 1 || combos != len(ps) {
		return "", "", "", fmt.Errorf("phase 2 proposals %s are not every combination of their algorithms with one PFS group: a sheet cannot say that", proposal.FormatESP(ps))
	}
	integrity = join(hs, func(h proposal.Hash) string { return hashText(h, true) })
	if integrity == "" {
		integrity = "n/a (AES-GCM)"
	}
	pfs = "No"
	if gs[0] != 0 {
		pfs = fmt.Sprintf("Yes (Group %d)", gs[0])
	}
	return join(cs, func(c ciph) string { return cipherText(c.e, c.b) }), integrity, pfs, nil
}

func join[T any](vs []T, f func(T) string) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = f(v)
	}
	return strings.Join(s, ", ")
}

// Formats Export writes.
var Formats = []string{"xlsx", "csv", "md"}

// Export writes the parameter sheet of c in format xlsx, csv or md. The pre-shared key is
// never written: the sheet says it is sent separately.
func Export(w io.Writer, c model.Connection, format string) error {
	rows, err := layoutOf(c)
	if err != nil {
		return err
	}
	switch format {
	case "xlsx":
		return writeXLSX(w, rows)
	case "csv":
		cw := csv.NewWriter(w)
		for _, r := range rows {
			if err := cw.Write(r.cells); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	case "md":
		return writeMarkdown(w, rows)
	}
	return fmt.Errorf("format %q: want xlsx, csv or md", format)
}

func writeMarkdown(w io.Writer, rows []row) error {
	var b strings.Builder
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, r := range rows {
		switch r.kind {
		case rowTitle:
			fmt.Fprintf(&b, "# %s\n", r.cells[0])
		case rowBlank:
		case rowSection:
			fmt.Fprintf(&b, "\n## %s\n\n", r.cells[0])
			if r.cells[0] != "Encryption domains (tunnels)" {
				fmt.Fprintf(&b, "| %s |\n|---|---|---|---|\n", strings.Join(rows[2].cells, " | "))
			}
		case rowHeader:
		case rowTableHeader:
			fmt.Fprintf(&b, "| %s |\n|%s\n", strings.Join(r.cells, " | "), strings.Repeat("---|", len(r.cells)))
		default:
			cs := make([]string, len(r.cells))
			for i, c := range r.cells {
				cs[i] = cell(c)
			}
			fmt.Fprintf(&b, "| %s |\n", strings.Join(cs, " | "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeXLSX draws the sheet: bold title and section headings, a frozen header row, column
// widths that fit the text, the tunnels as a bordered table.
func writeXLSX(w io.Writer, rows []row) error {
	f := excelize.NewFile()
	defer f.Close()
	if err := f.SetSheetName("Sheet1", sheetName); err != nil {
		return err
	}
	border := []excelize.Border{{Type: "left", Color: "A6A6A6", Style: 1}, {Type: "right", Color: "A6A6A6", Style: 1},
		{Type: "top", Color: "A6A6A6", Style: 1}, {Type: "bottom", Color: "A6A6A6", Style: 1}}
	styles := map[rowKind]*excelize.Style{
		rowTitle:       {Font: &excelize.Font{Bold: true, Size: 14}},
		rowHeader:      {Font: &excelize.Font{Bold: true}, Fill: excelize.Fill{Type: "pattern", Color: []string{"D9D9D9"}, Pattern: 1}, Border: border},
		rowSection:     {Font: &excelize.Font{Bold: true}, Fill: excelize.Fill{Type: "pattern", Color: []string{"DDEBF7"}, Pattern: 1}, Border: border},
		rowParam:       {Border: border, Alignment: &excelize.Alignment{Vertical: "top", WrapText: true}},
		rowTableHeader: {Font: &excelize.Font{Bold: true}, Fill: excelize.Fill{Type: "pattern", Color: []string{"F2F2F2"}, Pattern: 1}, Border: border},
		rowTunnel:      {Border: border},
	}
	ids := map[rowKind]int{}
	for k, s := range styles {
		id, err := f.NewStyle(s)
		if err != nil {
			return err
		}
		ids[k] = id
	}
	widths := make([]int, 6)
	headerRow := 0
	for i, r := range rows {
		n := i + 1
		cells := make([]any, len(r.cells))
		for j, c := range r.cells {
			cells[j] = c
			if r.kind != rowTitle && r.kind != rowSection {
				widths[j] = max(widths[j], utf8.RuneCountInString(c))
			}
		}
		if len(cells) > 0 {
			if err := f.SetSheetRow(sheetName, fmt.Sprintf("A%d", n), &cells); err != nil {
				return err
			}
		}
		last := "D"
		switch r.kind {
		case rowBlank:
			continue
		case rowTitle, rowSection:
			if err := f.MergeCell(sheetName, fmt.Sprintf("A%d", n), fmt.Sprintf("D%d", n)); err != nil {
				return err
			}
		case rowHeader:
			headerRow = n
		case rowTableHeader, rowTunnel:
			last = "F"
		}
		if err := f.SetCellStyle(sheetName, fmt.Sprintf("A%d", n), fmt.Sprintf("%s%d", last, n), ids[r.kind]); err != nil {
			return err
		}
	}
	for j, wd := range widths {
		col, _ := excelize.ColumnNumberToName(j + 1)
		if err := f.SetColWidth(sheetName, col, col, float64(min(max(wd+2, 10), 60))); err != nil {
			return err
		}
	}
	top, _ := excelize.CoordinatesToCellName(1, headerRow+1)
	if err := f.SetPanes(sheetName, &excelize.Panes{Freeze: true, YSplit: headerRow, TopLeftCell: top, ActivePane: "bottomLeft"}); err != nil {
		return err
	}
	_, err := f.WriteTo(w)
	return err
}
