package sheet

import (
	"bytes"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// importAll runs Import and WriteYAML on g: neither may panic, and every problem names a
// cell of g's sheet.
func importAll(t *testing.T, g *Grid) {
	res := Import(g, Options{})
	for _, p := range append(res.Problems, res.Ignored...) {
		if len(p.Addr) < len(g.Name) || p.Addr[:len(g.Name)] != g.Name {
			t.Fatalf("problem %v does not name sheet %q", p, g.Name)
		}
	}
	if err := res.WriteYAML(&bytes.Buffer{}, "fuzz"); err != nil {
		t.Fatal(err)
	}
}

// FuzzReadCSV: any CSV either fails to read or imports without panicking.
func FuzzReadCSV(f *testing.F) {
	testutil.AddFileSeeds(f, "*.csv")
	f.Add([]byte("Parameter;Partner;Our side\n\n\"a\nb\";x;y\nPhase 2;;\nPFS;yes (group 2);\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ReadCSV(bytes.NewReader(data), "fuzz.csv")
		if err != nil {
			return
		}
		importAll(t, g)
	})
}

// FuzzReadXLSX: any bytes either fail to open as a workbook or import without panicking.
func FuzzReadXLSX(f *testing.F) {
	testutil.AddFileSeeds(f, "*.xlsx")
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ReadXLSX(bytes.NewReader(data))
		if err != nil {
			return
		}
		importAll(t, g)
	})
}
