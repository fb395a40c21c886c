// Package sheet reads and writes the partner's IPsec parameter sheet — the Excel (or CSV)
// table a bank or telco sends with its side filled in and ours to fill — as espgw
// connections. Export writes our side (XLSX, CSV or Markdown); Import reads this layout and
// the ones partners really send: English or Russian labels, synonyms for algorithms, groups
// and lifetimes, merged cells, notes columns, blank rows. Every cell Import cannot read is
// reported with its address.
package sheet

import (
	"fmt"
	"strings"

	"github.com/xuri/excelize/v2"
)

// Grid is one worksheet as text: Rows[r][c] is the cell at row r+1, column c+1, with a merged
// range's value copied into each of its cells.
type Grid struct {
	Name string // worksheet name (or CSV file name), the prefix of cell addresses
	Rows [][]string
}

// Cell is the trimmed text at row r, column c (0-based), "" outside the grid.
func (g *Grid) Cell(r, c int) string {
	if r < 0 || c < 0 || r >= len(g.Rows) || c >= len(g.Rows[r]) {
		return ""
	}
	return strings.TrimSpace(g.Rows[r][c])
}

// Addr is the address of row r, column c (0-based): "VPN!C14".
func (g *Grid) Addr(r, c int) string {
	name, err := excelize.CoordinatesToCellName(c+1, r+1)
	if err != nil {
		name = fmt.Sprintf("R%dC%d", r+1, c+1)
	}
	return g.Name + "!" + name
}

// Problem is a cell Import could not read, or a row it left out.
type Problem struct {
	Addr   string
	Value  string
	Reason string
}

func (p Problem) String() string { return fmt.Sprintf("%s: %q — %s", p.Addr, p.Value, p.Reason) }
