package sheet

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/charmap"
)

// Limits on what a sheet may hold: a parameter sheet is a page, not a database.
const (
	maxRows     = 2000
	maxCols     = 64
	maxUnzipped = 64 << 20
)

// ReadXLSX reads the worksheet of an Excel workbook that holds the parameters: the first one
// with a "Parameter" heading row, else the first one. Merged cells get their value in every
// cell they span.
func ReadXLSX(r io.Reader) (*Grid, error) {
	f, err := excelize.OpenReader(r, excelize.Options{UnzipSizeLimit: maxUnzipped, UnzipXMLSizeLimit: maxUnzipped / 4})
	if err != nil {
		return nil, fmt.Errorf("read workbook: %w", err)
	}
	defer f.Close()
	var first *Grid
	for _, name := range f.GetSheetList() {
		g, err := readSheet(f, name)
		if err != nil {
			return nil, err
		}
		if findLayout(g).header >= 0 {
			return g, nil
		}
		if first == nil {
			first = g
		}
	}
	if first == nil {
		return nil, errors.New("read workbook: no worksheet")
	}
	return first, nil
}

func readSheet(f *excelize.File, name string) (*Grid, error) {
	rows, err := f.GetRows(name)
	if err != nil {
		return nil, fmt.Errorf("read worksheet %q: %w", name, err)
	}
	g := &Grid{Name: name, Rows: clip(rows)}
	merged, err := f.GetMergeCells(name)
	if err != nil {
		return nil, fmt.Errorf("read worksheet %q: merged cells: %w", name, err)
	}
	for _, m := range merged {
		c1, r1, err1 := excelize.CellNameToCoordinates(m.GetStartAxis())
		c2, r2, err2 := excelize.CellNameToCoordinates(m.GetEndAxis())
		if err1 != nil || err2 != nil || r1 > r2 || c1 > c2 {
			continue
		}
		v := m.GetCellValue()
		for r := r1 - 1; r < min(r2, maxRows); r++ {
			for c := c1 - 1; c < min(c2, maxCols); c++ {
				g.set(r, c, v)
			}
		}
	}
	return g, nil
}

// set writes v at (r, c), growing the grid.
func (g *Grid) set(r, c int, v string) {
	for len(g.Rows) <= r {
		g.Rows = append(g.Rows, nil)
	}
	for len(g.Rows[r]) <= c {
		g.Rows[r] = append(g.Rows[r], "")
	}
	g.Rows[r][c] = v
}

// clip cuts rows to the limits.
func clip(rows [][]string) [][]string {
	rows = rows[:min(len(rows), maxRows)]
	for i, r := range rows {
		rows[i] = r[:min(len(r), maxCols)]
	}
	return rows
}

// ReadCSV reads a sheet saved as CSV (UTF-8 or Windows-1251), separated by commas or (as
// Excel does in many locales) semicolons; name prefixes the cell addresses.
func ReadCSV(r io.Reader, name string) (*Grid, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxUnzipped+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxUnzipped {
		return nil, fmt.Errorf("read %s: larger than %d bytes", name, maxUnzipped)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		// Excel with Russian settings saves CSV in Windows-1251.
		if data, err = charmap.Windows1251.NewDecoder().Bytes(data); err != nil {
			return nil, fmt.Errorf("read %s: neither UTF-8 nor Windows-1251: %w", name, err)
		}
	}
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	firstLine, _, _ := strings.Cut(string(data), "\n")
	if strings.Count(firstLine, ";") > strings.Count(firstLine, ",") {
		cr.Comma = ';'
	}
	// encoding/csv skips blank lines; a spreadsheet keeps them as empty rows, and the cell
	// addresses in reports must match what the user sees.
	var rows [][]string
	nextLine := 1 // the line the next row would start on without blank lines in between
	for len(rows) < maxRows {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		for ; nextLine < line && len(rows) < maxRows; nextLine++ {
			rows = append(rows, nil)
		}
		rows = append(rows, rec)
		nextLine = line + 1
		for _, f := range rec {
			nextLine += strings.Count(f, "\n")
		}
	}
	return &Grid{Name: name, Rows: clip(rows)}, nil
}
