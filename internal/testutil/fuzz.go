package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// AddFileSeeds adds the contents of every file under testdata matching pattern to f's corpus
// (real inputs the fuzz target starts from); it fails if none matches, so the seeds cannot
// silently vanish.
func AddFileSeeds(f *testing.F, pattern string) {
	f.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(names) == 0 {
		f.Fatalf("no fuzz seeds match testdata/%s (%v)", pattern, err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}
